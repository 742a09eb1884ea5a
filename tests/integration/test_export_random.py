"""bean-check and the JSONL verifier on hypothesis-generated ledgers (SQLite and PostgreSQL)."""
import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.audit import beancount_export
from quota.store import db
from quota.audit import jsonl
from quota.intake import project_files
from quota.ledger import operations
from quota.rules import versions
from quota.intake import tallies
from quota.errors import Refused
from tests.conftest import DATA, ENGINES, PROJECT_HEADER, TALLY_HEADER
from tests.databases import fresh_url
from tests.integration.test_export import bean_check

POLS = [("COD", "JT-YT", "t/a"), ("NOX", "JT-ZL", "t/a"), ("PB", "JT-XB", "kg/a"), ("VOCS", "JT-DC", "t/a")]

ledgers = st.tuples(
    st.lists(st.tuples(st.sampled_from(POLS), st.integers(1, 50_000), st.integers(0, 1500)), min_size=1, max_size=8),
    st.lists(st.tuples(st.sampled_from(POLS), st.integers(1, 30_000), st.sampled_from(
        ["reserve", "approve", "cancel", "release"])), max_size=8),
    st.integers(0, 800))


@pytest.mark.parametrize("kind", ENGINES)
def test_random_ledgers_pass_bean_check_and_verify(kind, pin_today):
    pin_today(dt.date(2099, 12, 31))  # the generated ledgers let time pass
    @settings(max_examples=6 if kind == "postgresql" else 10, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(ledgers)
    def run(spec):
        lots, ops, expire_after = spec
        tmp = Path(tempfile.mkdtemp())
        url, drop = fresh_url(kind, tmp)
        engine = db.make_engine(url)
        try:
            versions.init(engine, str(DATA / "rules.toml"), "gen")
            day = dt.date(2026, 1, 1)
            rows = [f"T{i},S{i},源{i},closure,{z},{p},{milli / 1000:.3f},,,{u},,{day - dt.timedelta(days=age)},m,a,R{i}"
                    for i, ((p, z, u), milli, age) in enumerate(lots)]
            (tmp / "t.csv").write_text(TALLY_HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
            tallies.import_tallies(engine, str(tmp / "t.csv"), actor="gen")
            prows = [f"P{i},项目{i},{z},x,{p},{milli / 1000:.3f},{u},1,,false," for i, ((p, z, u), milli, _) in
                     enumerate(ops)]
            if prows:
                (tmp / "p.csv").write_text(PROJECT_HEADER + "\n" + "\n".join(prows) + "\n", encoding="utf-8")
                project_files.import_projects(engine, str(tmp / "p.csv"), actor="gen")
            for i, (_, _, op) in enumerate(ops):
                try:
                    operations.reserve(engine, f"P{i}", actor="gen", date=day)
                    if op == "approve":
                        operations.approve(engine, f"P{i}", doc=f"D{i}", actor="gen", date=day)
                    elif op == "cancel":
                        operations.cancel(engine, f"P{i}", actor="gen", date=day)
                    elif op == "release":
                        operations.release(engine, f"P{i}", actor="gen", date=day)
                except Refused:
                    pass
            operations.expire(engine, day + dt.timedelta(days=expire_after), actor="gen")
            path = tmp / "l.beancount"
            with open(path, "w", encoding="utf-8") as fh:
                beancount_export.write_beancount(engine, fh, today=day + dt.timedelta(days=expire_after))
            check = bean_check(path)
            assert check.returncode == 0, check.stdout + check.stderr
            with open(tmp / "l.jsonl", "w", encoding="utf-8") as fh:
                jsonl.write_jsonl(engine, fh)
            assert jsonl.verify_export(str(tmp / "l.jsonl"))[1] == []
        finally:
            engine.dispose()
            drop()

    run()
