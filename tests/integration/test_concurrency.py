"""Several processes reserve from one lot at the same moment: the lot is never overdrawn."""
import datetime as dt
import multiprocessing as mp

import pytest

from quota.audit import trace
from quota.ledger import balances
from quota.store import db
from quota.intake import project_files
from quota.intake import tallies
from tests.conftest import PROJECT_HEADER, TALLY_HEADER

WORKERS = 8


def _reserve(url: str, project_id: str, barrier, results) -> None:
    from quota.ledger import operations
    from quota.errors import Refused
    engine = db.make_engine(url)
    barrier.wait()
    try:
        r = operations.reserve(engine, project_id, actor=f"clerk-{project_id}", date=dt.date(2026, 1, 10))
        results.put((project_id, sum(d["amount_g"] for d in r["draws"])))
    except Refused:
        results.put((project_id, 0))
    except Exception as exc:  # anything else is a failure of the test
        results.put((project_id, f"{type(exc).__name__}: {exc}"))
    finally:
        engine.dispose()


@pytest.mark.slow
def test_processes_reserving_one_lot_never_overdraw_it(db_url, engine, write_csv):
    # one lot of 10 t COD; 8 projects each need 3 t: at most 3 can be served
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        "C1,S1,甲厂,closure,JT-YT,COD,10,,,t/a,2020,2025-01-01,m,x,R1"]), actor="clerk")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        f"P{i},项目{i},JT-DC,food,COD,3,t/a,1,,false," for i in range(WORKERS)]), actor="clerk")
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_reserve, args=(db_url, f"P{i}", barrier, results)) for i in range(WORKERS)]
    for p in procs:
        p.start()
    got = dict(results.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
    assert all(isinstance(v, int) for v in got.values()), got
    assert sorted(got.values()) == [0] * 5 + [3_000_000] * 3
    lot = balances.balance(engine, by="lot", as_of=None)["rows"][0]
    assert lot["available_g"] == 1_000_000 and lot["reserved_g"] == 9_000_000
    assert trace.verify(engine)[1] == []
