"""Reliability on SQLite and PostgreSQL: concurrent clerks, retried keys, SIGKILL mid-operation."""
import datetime as dt
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from quota.audit import trace
from quota.store import db
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import projects
from quota.intake import tallies
from tests.conftest import PROJECT_HEADER, TALLY_HEADER, snapshot

DAY = dt.date(2026, 3, 1)
WORKERS = 8
OPS = int(os.environ.get("QUOTA_STRESS_OPS", "25"))  # bench/reliability.py runs 200


def _worker(url: str, seed: int, n_projects: int, ops: int, barrier, results) -> None:
    from quota.store import db as qdb
    from quota.ledger import operations as quota_ops
    from quota.errors import NotFound, Refused
    rng = random.Random(seed)
    engine = qdb.make_engine(url)
    done = {"ok": 0, "refused": 0, "errors": []}
    barrier.wait()
    for _ in range(ops):
        pid = f"P{rng.randrange(n_projects):03d}"
        op = rng.choices(["reserve", "approve", "release", "cancel"], weights=[6, 3, 3, 0.3])[0]
        try:
            if op == "reserve":
                quota_ops.reserve(engine, pid, actor=f"w{seed}", date=DAY)
            elif op == "approve":
                quota_ops.approve(engine, pid, doc=f"D-{seed}", actor=f"w{seed}", date=DAY)
            elif op == "release":
                quota_ops.release(engine, pid, actor=f"w{seed}", date=DAY)
            else:
                quota_ops.cancel(engine, pid, actor=f"w{seed}", date=DAY)
            done["ok"] += 1
        except (Refused, NotFound):
            done["refused"] += 1
        except Exception as exc:  # anything else fails the test
            done["errors"].append(f"{op} {pid}: {type(exc).__name__}: {exc}")
    done["retries"] = list(qdb.retries())
    results.put(done)
    engine.dispose()


def _setup_contention(engine, write_csv, n_lots=8, n_projects=200):
    """Lots enough for about a quarter of the projects at once, so clerks compete for them."""
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        f"C{i},S{i},源{i},closure,JT-YT,COD,{10 + i},,,t/a,2020,2025-0{i + 1}-01,m,x,R{i}" for i in range(n_lots)]),
        actor="setup")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        f"P{i:03d},项目{i},JT-DC,food,COD,{1 + (i % 4) * 0.75},t/a,1,,false," for i in range(n_projects)]),
        actor="setup")


def _all_or_nothing(engine):
    """Every project's state agrees with its holdings: reserved/approved projects hold their whole
    requirement in the right account; others hold nothing."""
    rows = {p["project_id"]: p for p in projects.project_rows(engine)}
    with engine.connect() as conn:
        held = {}
        for account, amount in conn.execute(text("SELECT account, SUM(amount_g) FROM balance "
                                                 "WHERE kind IN ('reserved', 'allocated') GROUP BY account")):
            if amount:
                held[account] = int(amount)
    for pid, p in rows.items():
        need = sum(n["required_g"] for n in p["needs"])
        reserved = held.get(f"project:{pid}:reserved", 0)
        allocated = held.get(f"project:{pid}:allocated", 0)
        expect = {"reserved": (need, 0), "approved": (0, need)}.get(p["state"], (0, 0))
        assert (reserved, allocated) == expect, (pid, p["state"], reserved, allocated)


@pytest.mark.slow
def test_eight_clerks_on_overlapping_lots_never_break_the_ledger(db_url, engine, write_csv):
    _setup_contention(engine, write_csv)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(db_url, s, 200, OPS, barrier, results)) for s in range(WORKERS)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    errors = [e for o in outcomes for e in o["errors"]]
    print(f"\n{engine.dialect.name}: {WORKERS} x {OPS} operations: {sum(o['ok'] for o in outcomes)} done, "
          f"{sum(o['refused'] for o in outcomes)} refused, {sum(len(o['retries']) for o in outcomes)} automatic retries")
    assert errors == []
    assert sum(o["ok"] for o in outcomes) > 0
    assert sum(o["ok"] + o["refused"] for o in outcomes) == WORKERS * OPS
    summary, problems = trace.verify(engine)
    assert problems == []
    _all_or_nothing(engine)
    with engine.connect() as conn:
        txns = conn.execute(text("SELECT count(*) FROM txn WHERE kind NOT IN ('issue', 'register')")).scalar_one()
    assert txns == sum(o["ok"] for o in outcomes) - _cancels_without_txn(engine)


def _cancels_without_txn(engine) -> int:
    """Cancelling a pipeline project holding nothing changes its state but posts no transaction."""
    with engine.connect() as conn:
        cancelled = {r[0] for r in conn.execute(text("SELECT project_id FROM project WHERE state = 'cancelled'"))}
        with_txn = {r[0] for r in conn.execute(text("SELECT DISTINCT project_id FROM txn WHERE kind = 'cancel'"))}
    return len(cancelled - with_txn)


def _same_key(url: str, barrier, results) -> None:
    from quota.store import db as qdb
    from quota.ledger import operations as quota_ops
    engine = qdb.make_engine(url)
    barrier.wait()
    r = quota_ops.reserve(engine, "P000", actor="retry", date=DAY, key="clerk-7:req-42")
    results.put((r["txn"], r["replayed"]))
    engine.dispose()


@pytest.mark.slow
def test_a_retried_key_has_exactly_one_effect_even_when_sent_twice_at_once(db_url, engine, write_csv):
    _setup_contention(engine, write_csv)
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_same_key, args=(db_url, barrier, results)) for _ in range(3)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len({t for t, _ in got}) == 1 and sorted(r for _, r in got) == [False, True, True]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM txn WHERE kind = 'reserve'")).scalar_one() == 1


def _quota(*args, url):
    exe = Path(sys.executable).with_name("quota")
    return subprocess.Popen([str(exe), "--db", url, "--actor", "crash", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)


def _kill_at_random(args, url, rng, timeout=120):
    proc = _quota(*args, url=url)
    time.sleep(rng.uniform(0.3, 2.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=timeout)
    return proc.returncode


@pytest.mark.slow
def test_sigkill_in_a_large_import_and_in_a_plan_apply_leaves_the_database_as_it_was(db_url, engine, tmp_path,
                                                                                     write_csv):
    rng = random.Random(7)
    killed_mid_way = 0
    for attempt in range(2):  # each attempt its own file, so a completed first import does not block the second
        big = write_csv(f"big{attempt}.csv", TALLY_HEADER, [
            f"K{attempt}-{i},S{attempt}-{i},源{i},closure,JT-YT,COD,{1 + i % 7}.5,,,t/a,2020,2025-01-01,m,x,R{i}"
            for i in range(20_000)])
        before = snapshot(engine)
        rc = _kill_at_random(["tally", "import", big], db_url, rng)
        after = snapshot(engine)
        # all or nothing: unchanged, or (killed after its commit) the whole file imported
        if after == before:
            killed_mid_way += rc == -signal.SIGKILL
        else:
            assert len(after["lot"]) == len(before["lot"]) + 20_000
        assert trace.verify(engine)[1] == []
    assert killed_mid_way >= 1, "the import finished before it could be killed; make it bigger"
    # a plan apply over many projects, killed mid-way
    small = write_csv("lots.csv", TALLY_HEADER, [
        f"L{i},T{i},源{i},closure,JT-YT,COD,2,,,t/a,2020,2025-01-01,m,x,R{i}" for i in range(300)])
    tallies.import_tallies(engine, small, actor="setup")
    project_files.import_projects(engine, write_csv("pp.csv", PROJECT_HEADER, [
        f"Q{i:03d},项目{i},JT-DC,food,COD,1.5,t/a,1,,false," for i in range(300)]), actor="setup")
    plan = plans.run_plan(engine, as_of=DAY)
    before = snapshot(engine)
    rc = _kill_at_random(["plan", "apply", plan["plan_id"], "--date", DAY.isoformat()], db_url,
                         random.Random(3))
    after = snapshot(engine)
    # all or nothing: unchanged, or (finished, or killed after its commit) every funded project reserved
    if after != before:
        assert len(after["txn"]) == len(before["txn"]) + len(plan["funded"])
    assert trace.verify(engine)[1] == []


def test_transient_errors_are_retried_and_reported_others_are_not(engine):
    from sqlalchemy.exc import OperationalError
    db.retries().clear()
    calls = []

    def flaky(conn):
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("UPDATE chain_head", {}, Exception("database is locked"))
        return "done"

    assert db.run_write(engine, flaky) == "done" and len(calls) == 3
    assert len(db.retries()) == 2 and "database is locked" in db.retries()[0]

    def broken(conn):
        calls.append(1)
        raise OperationalError("SELECT", {}, Exception("no such column: x"))

    calls.clear()
    with pytest.raises(OperationalError):
        db.run_write(engine, broken)
    assert len(calls) == 1  # not transient: no retry
    db.retries().clear()
