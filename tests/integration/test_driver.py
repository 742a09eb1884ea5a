"""The driver-level hot path: queued writes are read back, fail as SQLAlchemy errors, and roll back whole."""
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from quota import db, driver


def head(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT seq, hash FROM chain_head WHERE id = 1")).one()


def test_a_transaction_reads_its_own_queued_writes(engine):
    def work(conn):
        driver.write(conn, ("UPDATE chain_head SET hash = ? WHERE id = 1", ("x" * 64,)))
        seen = driver.select(conn, ("SELECT hash FROM chain_head WHERE id = 1", ()))[0][0][0]
        seen_by_sqlalchemy = conn.execute(text("SELECT hash FROM chain_head WHERE id = 1")).scalar_one()
        driver.write(conn, ("UPDATE chain_head SET hash = ? WHERE id = 1", ("y" * 64,)))
        return seen, seen_by_sqlalchemy
    assert db.run_write(engine, work) == ("x" * 64, "x" * 64)
    assert head(engine)[1] == "y" * 64  # the last queued write went out with the commit


def test_a_failing_queued_write_raises_integrity_error_and_nothing_is_written(engine):
    before = head(engine)

    def work(conn):
        driver.write(conn, ("UPDATE chain_head SET seq = seq + 1 WHERE id = 1", ()))
        driver.write(conn, ("INSERT INTO balance (account, lot, kind, pollutant, zone, project_id, nonneg, amount_g, "
                            "last_date) VALUES ('lot:X', 'X', 'lot', 'COD', 'JT-YT', NULL, ?, -1, NULL)", (True,)))
        return "unreachable"
    with pytest.raises(IntegrityError):
        db.run_write(engine, work)
    assert head(engine) == before  # the first write was rolled back with the second
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM balance WHERE account = 'lot:X'")).scalar_one() == 0
