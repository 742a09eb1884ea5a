"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, sample data, helpers."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text

from quota.store import db
from quota.rules import versions
from tests.databases import fresh_url, vacuum_catalog

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
ENGINES = ["sqlite", "postgresql"]
if os.environ.get("QUOTA_SKIP_PG") == "1":  # for a quick local run only; CI runs both
    ENGINES = ["sqlite"]

TALLY_HEADER = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,"
                "baseline_year,effective_date,method,assessor,report_no")
PROJECT_HEADER = "project_id,name,zone,industry,pollutant,increment,unit,priority,needed_by,must_fund,ratio"


@pytest.fixture(scope="session", autouse=True)
def _catalog_kept_small():
    """PostgreSQL's catalogs vacuumed before and after the run (tests/databases.py, vacuum_catalog)."""
    if "postgresql" in ENGINES:
        vacuum_catalog()
    yield
    if "postgresql" in ENGINES:
        vacuum_catalog()


@pytest.fixture(params=ENGINES)
def db_url(request, tmp_path):
    url, drop = fresh_url(request.param, tmp_path)
    yield url
    drop()


@pytest.fixture
def engine(db_url):
    eng = db.make_engine(db_url)
    versions.init(eng, str(DATA / "rules.toml"), "tester")
    yield eng
    eng.dispose()


@pytest.fixture
def pin_today(monkeypatch):
    """pin_today(date): the library's today (quota.clock.today) is `date`, for tests that let time pass (in this
    process: QUOTA_TODAY itself may only pin the clock back)."""
    import datetime as dt
    import types
    from quota import clock

    def pin(day):
        class Calendar(dt.date):  # the calendar says `day`; QUOTA_TODAY is still read (and checked) as in a process
            fromisoformat = staticmethod(dt.date.fromisoformat)

            @classmethod
            def today(cls):
                return day

        monkeypatch.setattr(clock, "dt", types.SimpleNamespace(date=Calendar))
    return pin


@pytest.fixture
def write_csv(tmp_path):
    """write_csv(name, header, rows) -> path of a CSV file in tmp_path."""
    def _write(name: str, header: str, rows: list[str]) -> str:
        path = tmp_path / name
        path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
        return str(path)
    return _write


def snapshot(engine) -> dict:
    """Every row of every table, sorted: to show that a refused operation wrote nothing."""
    from quota.store import schema
    out = {}
    with engine.connect() as conn:
        for m in schema.TABLES:
            name = m.__tablename__
            rows = conn.execute(text(f"SELECT * FROM {name}")).all()
            out[name] = sorted(tuple(str(v) for v in r) for r in rows)
    return out
