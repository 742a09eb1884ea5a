"""SQLite: every writer of the library takes the writers' lock file beside the database (db.writer_lock) before
BEGIN IMMEDIATE, whichever front end and process it runs in: the CLI, the library called directly, the web's
API. While another process holds that file, a write waits and writes nothing; it goes through once the file is
released. (PostgreSQL has no such file: its writers queue on the chain head's row.)"""
import os
import subprocess
import sys
import threading

from quota.ledger import balances, operations
from quota.store import db, users
from tests.conftest import ROOT
from tests.web.support import client, make_app, prepare

HOLD = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.readline()")
WAIT_S = 1.5  # how long a writer is given to (wrongly) get through while the file is held


def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'quota.db'}"


class Holder:
    """Another process holding the writers' lock file of a database until `release`."""

    def __init__(self, engine):
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, db.writer_lock_path(engine)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"

    def release(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def waits_for_the_file(engine, write) -> object:
    """Run `write()` while another process holds the lock file: it must not finish (nor write) until the file
    is released, then it must. Returns what `write` returned."""
    before = balances.balance(engine)
    holder = Holder(engine)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault("value", write()))
    try:
        worker.start()
        worker.join(WAIT_S)
        assert worker.is_alive(), "the write went through while another process held the writers' lock file"
        assert balances.balance(engine) == before
    finally:
        holder.release()
    worker.join(60)
    assert not worker.is_alive() and "value" in result
    assert balances.balance(engine) != before
    return result["value"]


def test_the_lock_file_lies_beside_the_database_and_only_there(tmp_path):
    engine = db.make_engine(sqlite_url(tmp_path))
    assert db.writer_lock_path(engine) == str(tmp_path / "quota.db") + db.WRITER_LOCK_SUFFIX
    assert db.writer_lock_path(db.make_engine("sqlite://")) is None
    engine.dispose()


def test_a_library_write_holds_the_lock_file_through_its_transaction(tmp_path):
    engine = prepare(sqlite_url(tmp_path))
    seen = []

    def probe(conn):  # inside the write transaction: another open file description cannot take the lock
        import fcntl
        fd = os.open(db.writer_lock_path(engine), os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seen.append("free")
        except BlockingIOError:
            seen.append("held")
        finally:
            os.close(fd)

    db.run_write(engine, probe, lock=False)
    assert seen == ["held"]
    engine.dispose()


def test_a_library_writer_waits_for_the_lock_file_held_by_another_process(tmp_path):
    engine = prepare(sqlite_url(tmp_path))
    r = waits_for_the_file(engine, lambda: operations.reserve(engine, "P2026-01", actor="clerk", key="w-1"))
    assert r["draws"]
    engine.dispose()


def test_an_api_writer_waits_for_the_lock_file_held_by_another_process(tmp_path):
    engine = prepare(sqlite_url(tmp_path))
    c = client(make_app(engine))
    c.headers["Authorization"] = f"Bearer {users.new_token(engine, 'clerk')['token']}"
    response = waits_for_the_file(engine, lambda: c.post("/api/v1/projects/P2026-01/reserve",
                                                         headers={"Idempotency-Key": "w-2"}))
    assert response.status_code == 200 and response.json()["draws"]
    engine.dispose()


def test_the_cli_waits_for_the_lock_file_held_by_another_process(tmp_path):
    url = sqlite_url(tmp_path)
    engine = prepare(url)

    def cli():
        return subprocess.run([sys.executable, "-m", "cli", "--db", url, "reserve", "P2026-01"],
                              cwd=ROOT, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    done = waits_for_the_file(engine, cli)
    assert done.returncode == 0, done.stderr
    engine.dispose()


def test_a_writer_waits_for_the_lock_file_only_so_long_then_sqlite_decides(tmp_path, monkeypatch):
    """A holder of the file that never lets go (a stopped process) does not stop the ledger for good: after
    WRITER_WAIT_S the writer goes on to SQLite's own lock, here free, and writes."""
    engine = prepare(sqlite_url(tmp_path))
    monkeypatch.setattr(db, "WRITER_WAIT_S", 0.3)
    holder = Holder(engine)
    result = {}
    worker = threading.Thread(target=lambda: result.setdefault(
        "value", operations.reserve(engine, "P2026-01", actor="clerk", key="w-3")))
    try:
        worker.start()
        worker.join(30)
        assert not worker.is_alive(), "the write waited on the lock file without end"
        assert result["value"]["draws"]
    finally:
        holder.release()
    engine.dispose()


# --------------------------------------------------------------------------- the web's writes in the event loop

def _api_in_one_loop(engine, scenario):
    """Run `scenario(c)` with an async client of the app on one event loop (as a server's worker has)."""
    import asyncio
    import httpx
    app = make_app(engine)
    token = users.new_token(engine, "clerk")["token"]

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     headers={"Authorization": f"Bearer {token}"}) as c:
            return await scenario(c)
    return asyncio.run(main())


def test_an_api_write_waits_for_the_lock_file_without_stopping_the_loops_reads(tmp_path):
    """While another process holds the file, an API reservation waits (db.write_in_turn, asyncio's sleep
    between tries), and the same loop goes on answering reads; once released, the reservation is made."""
    import asyncio
    engine = prepare(sqlite_url(tmp_path))
    before = balances.balance(engine)

    async def scenario(c):
        holder = Holder(engine)
        try:
            pending = asyncio.ensure_future(c.post("/api/v1/projects/P2026-01/reserve",
                                                   headers={"Idempotency-Key": "w-4"}))
            await asyncio.sleep(WAIT_S)
            assert not pending.done(), "the API write went through while another process held the lock file"
            read = await asyncio.wait_for(c.get("/api/v1/balance"), 5)  # the loop is not blocked by the wait
            assert read.status_code == 200 and read.json() == before
        finally:
            holder.release()
        return await asyncio.wait_for(pending, 30)

    response = _api_in_one_loop(engine, scenario)
    assert response.status_code == 200 and response.json()["draws"]
    assert balances.balance(engine) != before
    engine.dispose()


def test_an_api_write_is_made_in_the_loops_thread_on_sqlite_and_refusals_still_answer(tmp_path, monkeypatch):
    """The write itself runs in the event loop's thread once the file is had (no hand-off to the thread pool,
    whose threads competed with the loop for the interpreter while holding the lock); a refusal inside it is
    the API's usual answer, and a nested write does not wait on the file its own thread holds."""
    from web import api as web_api
    engine = prepare(sqlite_url(tmp_path))
    threads = []
    real = operations.reserve

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(web_api.quota_ops, "reserve", spy)

    async def scenario(c):
        ok = await c.post("/api/v1/projects/P2026-01/reserve", headers={"Idempotency-Key": "w-5"})
        again = await c.post("/api/v1/projects/P2026-01/reserve", headers={"Idempotency-Key": "w-5"})
        refused = await c.post("/api/v1/projects/NO-SUCH/reserve", headers={"Idempotency-Key": "w-6"})
        return ok, again, refused, threading.current_thread()

    ok, again, refused, loop_thread = _api_in_one_loop(engine, scenario)
    assert ok.status_code == 200 and again.json()["replayed"] and again.json()["txn"] == ok.json()["txn"]
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    assert threads == [loop_thread] * 3
    engine.dispose()


def test_an_api_write_that_cannot_have_the_file_in_time_is_made_the_ordinary_way(tmp_path, monkeypatch):
    """A holder that never lets go: after WRITER_WAIT_S the API write goes to the thread pool (run_write's own
    wait, then SQLite's lock, here free) rather than waiting without end."""
    import asyncio
    engine = prepare(sqlite_url(tmp_path))
    monkeypatch.setattr(db, "WRITER_WAIT_S", 0.3)

    async def scenario(c):
        holder = Holder(engine)
        try:
            return await asyncio.wait_for(c.post("/api/v1/projects/P2026-01/reserve",
                                                 headers={"Idempotency-Key": "w-7"}), 30)
        finally:
            holder.release()

    response = _api_in_one_loop(engine, scenario)
    assert response.status_code == 200 and response.json()["draws"]
    engine.dispose()


def test_a_writer_outside_quota_holding_sqlites_lock_does_not_stop_the_loop(tmp_path):
    """A writer that takes no lock file (the sqlite3 shell, say) holds SQLite's own write lock: the API's
    write does not wait for it in the event loop (SQLite's busy handler would hold every request of the worker)
    but in a thread, while the loop answers reads; once that writer is done, the reservation is made."""
    import asyncio
    import sqlite3
    engine = prepare(sqlite_url(tmp_path))
    before = balances.balance(engine)
    holding, done = threading.Event(), threading.Event()

    def outsider():  # in a thread of its own: it lets go when told, or after 4 s
        conn = sqlite3.connect(str(tmp_path / "quota.db"), isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
        holding.set()
        done.wait(4)
        conn.rollback()
        conn.close()

    holder = threading.Thread(target=outsider)

    async def scenario(c):  # the app's token is made by then: the outsider starts here
        loop = asyncio.get_running_loop()
        holder.start()
        assert await asyncio.to_thread(holding.wait, 10)
        try:
            pending = asyncio.ensure_future(c.post("/api/v1/projects/P2026-01/reserve",
                                                   headers={"Idempotency-Key": "w-8"}))
            await asyncio.sleep(0.5)
            started = loop.time()
            read = await asyncio.wait_for(c.get("/api/v1/balance"), 10)
            waited = loop.time() - started
            assert waited < 1.0, f"the read waited {waited:.1f} s behind the write"  # the loop was not held
            assert not pending.done(), "the API write went through while another writer held SQLite's lock"
            assert read.status_code == 200 and read.json() == before
        finally:
            done.set()
        return await asyncio.wait_for(pending, 30)

    response = _api_in_one_loop(engine, scenario)
    holder.join(10)
    assert response.status_code == 200 and response.json()["draws"]
    engine.dispose()


def test_writers_waiting_for_the_file_hold_none_of_the_pools_connections(tmp_path):
    """A write in the event loop holds the lock file while it takes a connection of the engine's pool (in the
    loop's thread). Writers of the thread pool (the pages' POSTs) waiting for that file must not hold the pool's
    connections meanwhile: with every connection held by such a waiter, the loop blocked in the pool's checkout
    (every request of the worker with it) until the pool's timeout, while the waiters waited for the loop."""
    import asyncio
    import time
    prepare(sqlite_url(tmp_path)).dispose()
    engine = db.make_engine(sqlite_url(tmp_path), pool_size=1)  # one connection, no overflow: a busy server's 40
    engine.pool._timeout = 3.0
    made = []

    def in_loop():
        waiter = threading.Thread(target=lambda: made.append(db.run_write(engine, lambda c: "thread", lock=False)))
        waiter.start()  # a page's write in the thread pool: it must wait for the file this thread holds
        time.sleep(0.3)
        started = time.monotonic()
        value = db.run_write(engine, lambda c: "loop", lock=False)
        return value, time.monotonic() - started, waiter

    done, (value, took, waiter) = asyncio.run(db.write_in_turn(engine, in_loop))
    waiter.join(30)
    assert done and value == "loop" and made == ["thread"]
    assert took < 1.0, f"the write holding the file waited {took:.1f} s for a connection of the pool"
    engine.dispose()
