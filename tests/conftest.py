"""Shared fixtures: a fresh database per test on SQLite and on PostgreSQL, sample data, helpers."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from quota import db, rulebooks

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
PG_BASE = os.environ.get("QUOTA_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")
ENGINES = ["sqlite", "postgresql"]
if os.environ.get("QUOTA_SKIP_PG") == "1":  # for a quick local run only; CI runs both
    ENGINES = ["sqlite"]

TALLY_HEADER = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,"
                "baseline_year,effective_date,method,assessor,report_no")
PROJECT_HEADER = "project_id,name,zone,industry,pollutant,increment,unit,priority,needed_by,must_fund,ratio"


def fresh_url(kind: str, tmp_path: Path) -> tuple[str, callable]:
    """A URL of an empty database and a function that drops it afterwards."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'quota-test.db'}", lambda: None
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    return f"{PG_BASE}?options=-csearch_path%3D{schema}", drop


@pytest.fixture(params=ENGINES)
def db_url(request, tmp_path):
    url, drop = fresh_url(request.param, tmp_path)
    yield url
    drop()


@pytest.fixture
def engine(db_url):
    eng = db.make_engine(db_url)
    rulebooks.init(eng, str(DATA / "rules.toml"), "tester")
    yield eng
    eng.dispose()


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
    from quota import model
    out = {}
    with engine.connect() as conn:
        for m in model.TABLES:
            name = m.__tablename__
            rows = conn.execute(text(f"SELECT * FROM {name}")).all()
            out[name] = sorted(tuple(str(v) for v in r) for r in rows)
    return out
