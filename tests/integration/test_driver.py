"""The driver-level hot path: queued writes are read back, fail as SQLAlchemy errors, and roll back whole."""
import datetime as dt
import threading
import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from quota.store import db
from quota.store import driver
from quota.ledger import posting

OP = "INSERT INTO operation (key, command, request_hash, result, created_at) VALUES (?, 'test', '', ?, '')"


def results(engine):
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT key, result FROM operation WHERE command = 'test'")).all())


def test_a_transaction_reads_its_own_queued_writes(engine):
    def work(conn):
        driver.write(conn, (OP, ("k1", "x")))
        seen = driver.select(conn, ("SELECT result FROM operation WHERE key = ?", ("k1",)))[0][0][0]
        seen_by_sqlalchemy = conn.execute(text("SELECT result FROM operation WHERE key = 'k1'")).scalar_one()
        driver.write(conn, (OP, ("k2", "y")))
        return seen, seen_by_sqlalchemy
    assert db.run_write(engine, work) == ("x", "x")
    assert results(engine) == {"k1": "x", "k2": "y"}  # the last queued write went out with the commit


def test_a_failing_queued_write_raises_integrity_error_and_nothing_is_written(engine):
    def work(conn):
        driver.write(conn, (OP, ("k1", "x")))
        driver.write(conn, ("INSERT INTO balance (account, lot, kind, pollutant, zone, project_id, nonneg, amount_g, "
                            "last_date) VALUES ('lot:X', 'X', 'lot', 'COD', 'JT-YT', NULL, ?, -1, NULL)", (True,)))
        return "unreachable"
    with pytest.raises(IntegrityError):
        db.run_write(engine, work)
    assert results(engine) == {}  # the first write was rolled back with the second
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM balance WHERE account = 'lot:X'")).scalar_one() == 0


def test_a_writer_that_waited_for_the_lock_chains_onto_the_transaction_committed_meanwhile(engine):
    """The head is read after the write lock is taken: a writer that waited while another committed a
    transaction gets that transaction as its head (a stale head would fork the chain)."""
    version = db.run_write(engine, lambda conn: driver.state(conn).rulebook[0])
    leg = [posting.Leg("adjustment:X", "X", "COD", 5, "JT-YT"), posting.Leg("adjustment:Y", "X", "COD", -5, "JT-YT")]
    first_has_lock, seen = threading.Event(), {}

    def slow_writer(conn):
        first_has_lock.set()
        time.sleep(0.5)  # the second writer is waiting for the lock meanwhile
        return posting.post(conn, "adjust", dt.date(2026, 1, 1), leg, actor="a", rulebook=version)

    def second_writer(conn):
        seen["head"] = driver.state(conn).head
        return posting.post(conn, "adjust", dt.date(2026, 1, 1), leg, actor="b", rulebook=version)

    first = threading.Thread(target=lambda: seen.update(first=db.run_write(engine, slow_writer)))
    first.start()
    first_has_lock.wait(10)
    second = db.run_write(engine, second_writer)
    first.join()
    with engine.connect() as conn:
        first_hash = conn.execute(text("SELECT hash FROM txn WHERE seq = :s"), {"s": seen["first"]}).scalar_one()
        # the chain links (these synthetic adjustments between made-up accounts break the domain rules on purpose)
        assert [p for p in posting.verify(conn)[1] if p.column in ("seq", "prev_hash", "hash")] == []
    assert seen["head"] == (seen["first"], first_hash) and second == seen["first"] + 1
