"""Engine, write transactions (one per operation, retried when locked), schema and triggers."""
from __future__ import annotations

import contextlib
import contextvars
import os
import random
import threading
import time
import weakref
from typing import Callable, Iterator, Sequence, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.dialects import registry
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from quota.store import driver
from quota.errors import QuotaError, Reason, Refused

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: SQLite's own lock alone
    fcntl = None

DEFAULT_URL = "sqlite:///quota.db"
GENESIS = "0" * 64
T = TypeVar("T")


class NotInitialised(QuotaError):
    code = "not_initialised"


class BadDatabaseURL(QuotaError):
    code = "bad_database_url"


# sqlite+quota:// is quota.sqlite_dialect.SQLiteDialect, imported only when a SQLite engine is made
registry.register("sqlite.quota", "quota.store.sqlite_dialect", "SQLiteDialect")


BUSY_TIMEOUT_MS = 60000  # SQLite: the longest a writer waits in SQLite's busy handler for its write lock
LOCK_TIMEOUT_S = 5.0  # PostgreSQL: the longest a statement waits for a lock (QUOTA_LOCK_TIMEOUT, --lock-timeout)
LOCK_ATTEMPTS = 3  # a write that timed out waiting for the ledger's lock is tried this many times in all


class LedgerBusy(Refused):
    """The ledger's write lock stayed held by another writer through every attempt."""

    code = "ledger_busy"


def lock_timeout(value: float | str | None = None) -> float:
    """Seconds a PostgreSQL statement may wait for a lock: `value`, else $QUOTA_LOCK_TIMEOUT, else
    LOCK_TIMEOUT_S; 0 waits without limit."""
    if value is None:
        value = os.environ.get("QUOTA_LOCK_TIMEOUT") or LOCK_TIMEOUT_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 3600:  # NaN fails too
        raise Refused("bad_option", option="lock_timeout", value=str(value))
    return seconds


def make_engine(url: str = DEFAULT_URL, lock_timeout_s: float | str | None = None, pool_size: int | None = None
                ) -> Engine:
    """An engine for SQLite (WAL, BEGIN IMMEDIATE for writers) or PostgreSQL (psycopg; every statement
    waits at most `lock_timeout_s` for a lock, see `lock_timeout`, set once per connection); any other URL
    is refused (BadDatabaseURL) before anything is opened. `pool_size`: the connections kept open for reuse
    (a server: about one per request it serves at once; SQLAlchemy's default is 5, and a connection made
    beyond them is closed after use, so a busier server would connect again and again)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if not (url.startswith("sqlite:///") or url == "sqlite://" or url.startswith("postgresql+psycopg://")):
        raise BadDatabaseURL(url=url)
    pool = {"pool_size": pool_size, "max_overflow": pool_size // 4} if pool_size and url != "sqlite://" else {}
    if url.startswith("sqlite"):
        driver.sqlite_adapters()  # dates bound through the driver are stored as ISO text
        engine = create_engine(make_url(url).set(drivername="sqlite+quota"), **pool,
                               connect_args={"timeout": 60, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - driver hook
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (sqlite_dialect.SQLiteDialect.do_begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # a ledger: every commit is durable
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.close()
    else:
        # no pool_pre_ping: each command is a short process, and a ping costs a round trip per operation
        parsed = make_url(url)
        options = parsed.query.get("options", "")
        options = " ".join(options) if isinstance(options, tuple) else options
        millis = round(lock_timeout(lock_timeout_s) * 1000)
        # in the connection's startup packet: no statement, no round trip
        connect = {"options": f"{options} -c lock_timeout={millis}".strip()}
        engine = create_engine(parsed, **pool, connect_args=connect)
        _PG_CONNECT[engine] = connect
        driver.install(engine)
    return engine


_PG_CONNECT: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> what make_engine adds to its URL


def connect_params(engine: Engine) -> dict:
    """PostgreSQL: psycopg.connect's keyword arguments for a connection like the engine's own (its URL's, and
    the options make_engine adds), for a caller that connects without the engine (the web's async reads)."""
    _, params = engine.dialect.create_connect_args(engine.url)
    params = {k: v for k, v in params.items() if k != "context"}  # SQLAlchemy's type adapters: not for plain reads
    return {**params, **_PG_CONNECT.get(engine, {})}


def is_sqlite(conn_or_engine) -> bool:
    return conn_or_engine.dialect.name == "sqlite"


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError) and "locked" in str(exc).lower():
        return True
    orig = getattr(exc, "orig", None)
    code = getattr(orig, "sqlstate", None)
    return code in ("40001", "40P01", LOCK_NOT_AVAILABLE)  # serialization failure, deadlock, lock timeout


LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL: lock_timeout expired


_RETRIES: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("quota_retries", default=None)

DatabaseError = DBAPIError  # what a front end catches: cannot connect, permission denied, disk full...


def retries() -> list[str]:
    """The human-readable log of automatic retries in this context (a CLI run, a web request): reported by the
    front end, not swallowed. Each context starts with its own empty log."""
    log = _RETRIES.get()
    if log is None:
        log = []
        _RETRIES.set(log)
    return log


def describe(exc: DBAPIError) -> str:
    """A database error in one line: the driver's own message."""
    return str(exc.orig).strip() if exc.orig else str(exc)


def url_user(url: str) -> str | None:
    """The user name a database URL connects as, if it names one."""
    return make_url(url).username


def run_write(bind: Engine | Connection, fn: Callable[[Connection], T], attempts: int = 8, lock: bool = True,
              reads: Sequence[driver.Query] = ()) -> T:
    """Run `fn(conn)` in one write transaction; retry transient lock/serialization errors.

    `bind` is an Engine (a connection is checked out of its pool for the operation) or a Connection the
    caller holds and reuses across operations (it must not be in a transaction: each operation is its
    own). The ledger's write lock is taken first (lock_head; unless `lock` is false: writes outside
    the ledger, such as storing a plan), so ledger writers are serialised and balance checks see the
    latest committed state. `reads` are queries `fn` will make through driver.select, read
    ahead in the same round trip as the lock. Any exception rolls the whole transaction back.
    """
    sqlite = is_sqlite(bind)
    timeouts = 0
    for attempt in range(1, attempts + 1):
        try:
            if isinstance(bind, Connection):
                return _write_once(bind, fn, lock, reads, sqlite)
            # SQLite: the writers' lock file before a connection of the pool, so that a writer waiting for the
            # file holds none (its holder must get one: in an event loop, db.write_in_turn, a wait would block
            # the loop while the waiters wait for it)
            with writer_lock(bind) if sqlite else contextlib.nullcontext(), bind.connect() as conn:
                return _write_once(conn, fn, lock, reads, sqlite, file_taken=sqlite)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == LOCK_NOT_AVAILABLE:
                timeouts += 1
                if timeouts >= LOCK_ATTEMPTS or attempt == attempts:
                    waited = _waited(bind)
                    raise LedgerBusy(attempts=timeouts, lock_timeout=waited) from exc
            if attempt < attempts and (_transient(exc) or (not lock and isinstance(exc, IntegrityError))):
                retries().append(Reason("retry_attempt", attempt=attempt, kind=type(exc.orig).__name__,
                                        detail=(str(exc.orig).strip().splitlines() or [""])[0][:80]))
                time.sleep(random.uniform(0.01, 0.05) * attempt)
                continue
            raise
    raise AssertionError("unreachable")


def _waited(bind: Engine | Connection) -> str:
    """The lock timeout the writer's connection had ("5s"), asked only after it gave up."""
    try:
        if isinstance(bind, Connection):
            return str(bind.exec_driver_sql("SHOW lock_timeout").scalar())
        with bind.connect() as conn:
            return str(conn.exec_driver_sql("SHOW lock_timeout").scalar())
    except DBAPIError:  # pragma: no cover - the server went away meanwhile
        return "its lock timeout"


def _write_once(conn: Connection, fn: Callable[[Connection], T], lock: bool, reads: Sequence[driver.Query],
                sqlite: bool, file_taken: bool = False) -> T:
    if conn.in_transaction():
        raise Refused("in_transaction")
    token = driver.activate(conn)
    try:
        if sqlite:
            if file_taken:  # run_write waited for the lock file (had or not) before the connection
                return _sqlite_write_locked(conn, fn, lock, reads)
            return _sqlite_write(conn, fn, lock, reads)
        with conn.begin():
            if lock:  # the locked head is kept for ledger.post_many in this transaction
                driver.state(conn).head = lock_head(conn, reads)
            result = fn(conn)
            driver.flush(conn, commit=True)  # queued writes go out (and may fail) with the commit
            return result
    finally:
        driver.deactivate(conn, token)


WRITER_WAIT_S = 60.0  # the longest a writer waits for the lock file (as SQLite's busy_timeout); then SQLite decides
WRITER_LOCK_SUFFIX = "-writer.lock"  # SQLite: the writers' lock file beside the database (see writer_lock)
_WRITER = threading.local()  # whether this thread holds the writers' lock file (a nested write does not wait on it)
_PROCESS_LOCKS: dict[str, threading.Lock] = {}  # lock file path -> the lock this process's threads queue on first
_PROCESS_LOCKS_GUARD = threading.Lock()


def _process_lock(path: str) -> threading.Lock:
    """The lock this process's writers queue on before they try the lock file at `path`."""
    with _PROCESS_LOCKS_GUARD:
        return _PROCESS_LOCKS.setdefault(path, threading.Lock())


def writer_lock_path(engine: Engine) -> str | None:
    """SQLite: the path of the writers' lock file of the database, None in memory (or on PostgreSQL)."""
    path = engine.url.database if is_sqlite(engine) else None
    return None if not path or path == ":memory:" else path + WRITER_LOCK_SUFFIX


@contextlib.contextmanager
def writer_lock(engine: Engine) -> Iterator[None]:
    """SQLite: hold the writers' lock file (an exclusive flock, released by the kernel when its holder closes it
    or exits) around one write transaction. Every write of the library (run_write: the CLI, the web's workers,
    any process) takes it before BEGIN IMMEDIATE, trying again every 0.5 to 5 ms (_flock_until), where SQLite's
    busy handler alone has each waiter poll with sleeps of up to 100 ms. SQLite's own lock still decides (a
    writer outside the library only makes the lock holder wait in the busy handler, as before). A process's
    threads queue on a lock of the process first, so one of them at a time tries the file. The wait is bounded: after WRITER_WAIT_S (a holder
    stopped or stuck), the writer goes on to SQLite's own lock, which refuses it as busy as before the file
    existed. Without a writable directory or POSIX flock: SQLite's lock alone."""
    path = writer_lock_path(engine)
    if path is None or fcntl is None or getattr(_WRITER, "held", False):
        yield
        return
    deadline = time.monotonic() + WRITER_WAIT_S
    in_process = _process_lock(path)
    if not in_process.acquire(timeout=WRITER_WAIT_S):  # a thread of this process is stuck in its write
        yield  # SQLite's lock decides (its busy handler, then "locked": retried, then refused)
        return
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            fd = None
        if fd is None or not _flock_until(fd, deadline):
            yield
            return
        try:
            _WRITER.held = True
            yield
        finally:
            _WRITER.held = False
    finally:
        if fd is not None:
            os.close(fd)  # releases the file's lock
        in_process.release()


async def write_in_turn(engine: Engine, call: Callable[[], T]) -> tuple[bool, T | None]:
    """SQLite, for a server's event loop: wait for the writers' lock file without blocking the loop (the same
    tries as writer_lock, with asyncio's sleep between them), then make the write `call()` (a library operation)
    in the loop's own thread while holding it, so that the holder is not slowed by the other requests its
    process serves meanwhile (a write in the thread pool held the lock three times as long, waiting for the
    interpreter while the loop served reads). Returns (True, what `call()` returned), or (False, None) without
    calling when there is no lock file to take (PostgreSQL, an in-memory database) or it could not be had within
    WRITER_WAIT_S, or when a writer outside quota holds SQLite's own lock (InLoopBusy: the loop must not wait in
    SQLite's busy handler): the caller then makes the write the ordinary way (run_write's own wait, in a thread)."""
    import asyncio
    path = writer_lock_path(engine)
    if path is None or fcntl is None:
        return False, None
    deadline = time.monotonic() + WRITER_WAIT_S
    in_process = _process_lock(path)

    async def tries(attempt: Callable[[], bool]) -> bool:  # _flock_until's pauses, asyncio's sleep between them
        pause = 0.0005
        while not attempt():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.005)
        return True

    def flock_now() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    if not await tries(lambda: in_process.acquire(blocking=False)):
        return False, None
    fd = None
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False, None
        if not await tries(flock_now):
            return False, None
        _WRITER.held = _WRITER.in_loop = True  # no await from here to the end: no other request of this loop runs
        try:
            return True, call()
        except InLoopBusy:  # a writer outside quota holds SQLite's lock: run_write waits for it in a thread
            return False, None
        finally:
            _WRITER.held = _WRITER.in_loop = False
    finally:
        if fd is not None:
            os.close(fd)
        in_process.release()


def _flock_until(fd: int, deadline: float) -> bool:
    """Take the exclusive lock of `fd`, trying until `deadline` (time.monotonic): True when taken. The kernel's
    blocking wait cannot be given a time limit from a thread, so a waiter tries again after 0.5 ms, doubling up
    to 5 ms (SQLite's busy handler sleeps up to 100 ms); one thread of a process at a time waits here."""
    pause = 0.0005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, 0.005)


def _sqlite_write(conn: Connection, fn: Callable[[Connection], T], lock: bool, reads: Sequence[driver.Query]) -> T:
    with writer_lock(conn.engine):
        return _sqlite_write_locked(conn, fn, lock, reads)


def _sqlite_write_locked(conn: Connection, fn: Callable[[Connection], T], lock: bool,
                         reads: Sequence[driver.Query]) -> T:
    """SQLite: BEGIN IMMEDIATE (the writers' lock, waiting up to busy_timeout) and COMMIT or ROLLBACK
    through the driver. An operation that stays on the driver (reserve, approve, release, cancel) then
    skips SQLAlchemy's transaction objects; one that runs SQLAlchemy statements makes SQLAlchemy begin
    its own (SQLiteDialect.do_begin sees the transaction under way), which then commits or rolls back."""
    if getattr(_WRITER, "in_loop", False):
        _begin_without_waiting(conn)
    else:
        driver.write(conn, ("BEGIN IMMEDIATE", ()))
    try:
        if lock:  # the locked head is kept for ledger.post_many in this transaction
            driver.state(conn).head = lock_head(conn, reads)
        result = fn(conn)
        if conn.in_transaction():
            conn.commit()
        else:
            driver.write(conn, ("COMMIT", ()))
        return result
    except BaseException:
        if conn.in_transaction():
            conn.rollback()
        elif driver.state(conn).raw.in_transaction:
            driver.write(conn, ("ROLLBACK", ()))
        raise


class InLoopBusy(Exception):
    """write_in_turn: SQLite's own write lock is held by a writer outside quota (one that takes no lock file);
    the write is not waited for in the event loop but made in a thread."""


def _begin_without_waiting(conn: Connection) -> None:
    """BEGIN IMMEDIATE for a write in an event loop (write_in_turn): with the lock file held, SQLite's lock is
    free unless a writer outside quota holds it, and then the loop must not sit in SQLite's busy handler (up to
    busy_timeout, every request of the worker waiting): InLoopBusy at once, nothing begun."""
    driver.write(conn, ("PRAGMA busy_timeout=0", ()))
    try:
        driver.write(conn, ("BEGIN IMMEDIATE", ()))
    except OperationalError as exc:
        if _transient(exc):
            raise InLoopBusy() from exc
        raise
    finally:
        driver.write(conn, (f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}", ()))


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        with conn.begin():
            yield conn


def read_one(engine: Engine, sql: str, params: Sequence = ()) -> tuple | None:
    """The first row of one SELECT (`?` placeholders), or None, outside any transaction: a statement is its
    own snapshot, so a one-statement read needs no BEGIN and COMMIT around it (on PostgreSQL three round
    trips become one; on SQLite, two statements and SQLAlchemy's connection and result objects go). For the
    reads a long-running server makes on every request (the user of a session or token, the ledger's state).
    Driver errors are raised as DatabaseError, as through SQLAlchemy."""
    sqlite = is_sqlite(engine)
    raw = engine.raw_connection()  # from the pool: no connection is opened per call
    try:
        dbapi = raw.driver_connection
        if not sqlite:
            dbapi.autocommit = True  # psycopg: a client-side flag, no round trip (the pool hands out idle connections)
        try:
            cur = dbapi.cursor()
            try:
                cur.execute(sql if sqlite else sql.replace("?", "%s"), tuple(params))
                return cur.fetchone()
            finally:
                cur.close()
        except engine.dialect.loaded_dbapi.Error as exc:
            raw.invalidate()  # whatever went wrong, the connection is not handed out again
            raise DBAPIError.instance(sql, params, exc, engine.dialect.loaded_dbapi.Error) from exc
        finally:
            if not sqlite and raw.is_valid:
                dbapi.autocommit = False
    finally:
        raw.close()


def lock_head(conn: Connection, reads: Sequence[driver.Query] = ()) -> tuple[int, str]:
    """Take the ledger's write lock and return the chain's head (seq, hash) — its last transaction, or
    (0, GENESIS) — with the current rulebook's (version, sha256) kept in the driver state
    (rulebooks.current). SQLite: run_write's BEGIN IMMEDIATE is the lock, and one statement reads both.
    PostgreSQL: the chain_head row is locked FOR UPDATE, then the head is read by a second statement in the
    same round trip; a statement's snapshot is taken when it starts, so the second sees what the previous
    lock holder committed (the first, which waited for the lock, would not)."""
    first = [(HEAD_SQL, ())] if driver.state(conn).sqlite else [(LOCK_SQL, ()), (HEAD_SQL, ())]
    try:
        found = driver.prefetch(conn, first, reads)
    except DBAPIError as exc:
        message = str(exc.orig).lower()
        if "no such table" in message or "does not exist" in message:
            raise NotInitialised(reason="no_schema") from exc
        raise
    if not found[0]:
        raise NotInitialised(reason="no_schema")
    seq, digest, version, sha = found[-1][0]
    if version is not None:
        driver.state(conn).rulebook = (int(version), sha)
    return (int(seq), str(digest)) if seq is not None else (0, GENESIS)


LOCK_SQL = "SELECT id FROM chain_head WHERE id = 1 FOR UPDATE"
# the chain's head (its last transaction, if any) and the current rulebook version (if any), in one row; as
# scalar subqueries, each a probe of the last primary key (SQLite materialises a LEFT JOINed subquery first)
HEAD_SQL = ("SELECT (SELECT seq FROM txn ORDER BY seq DESC LIMIT 1), (SELECT hash FROM txn ORDER BY seq DESC LIMIT 1), "
            "(SELECT version FROM rulebook ORDER BY version DESC LIMIT 1), "
            "(SELECT sha256 FROM rulebook ORDER BY version DESC LIMIT 1)")


def chain_head(conn: Connection) -> tuple[int, str]:
    """(seq, hash) of the chain's last transaction, or (0, GENESIS) for an empty ledger (no lock taken)."""
    seq, digest, _, _ = conn.exec_driver_sql(HEAD_SQL).one()
    return (int(seq), str(digest)) if seq is not None else (0, GENESIS)


def insert_many(conn: Connection, table: str, columns: list[str], rows: list[tuple]) -> None:
    """Bulk INSERT of positional rows straight through the driver's executemany (no per-row
    SQLAlchemy parameter processing): the fast path for imports and batched postings."""
    if not rows:
        return
    if not is_sqlite(conn) and len(rows) >= 1000:  # PostgreSQL: COPY, in this transaction, beats executemany
        driver.flush(conn)  # COPY goes straight to the driver: queued writes first
        with conn.connection.dbapi_connection.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(r)
        return
    conn.exec_driver_sql(*values_statement(conn, f"INSERT INTO {table} ({', '.join(columns)})", len(columns), rows))


def values_statement(conn: Connection, head: str, width: int, rows: list[tuple], tail: str = "") -> tuple:
    """(sql, params) for `head VALUES (...), (...) tail`: small batches as one multi-row statement
    (one round trip), large ones through executemany."""
    if len(rows) <= 50:
        sql, params = driver.values(head, width, rows, tail)
    else:
        sql, params = driver.values(head, width, rows[:1], tail)[0], rows
    return (sql if is_sqlite(conn) else sql.replace("?", "%s")), params


def update_many(conn: Connection, sql_qmark: str, rows: list[tuple]) -> None:
    """Bulk UPDATE with '?' placeholders (rewritten for psycopg) through the driver."""
    if rows:
        conn.exec_driver_sql(sql_qmark if is_sqlite(conn) else sql_qmark.replace("?", "%s"), rows)


def schema_exists(engine: Engine) -> bool:
    return inspect(engine).has_table("chain_head")


_SQLITE_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {t}_no_{op} BEFORE {op} ON {t}
BEGIN SELECT RAISE(ABORT, 'quota ledger is append-only: {op} on {t} refused'); END
"""
_PG_FUNCTION = """
CREATE OR REPLACE FUNCTION quota_append_only() RETURNS trigger AS $$
BEGIN
  RAISE EXCEPTION 'quota ledger is append-only: %% on %% refused', TG_OP, TG_TABLE_NAME;
END $$ LANGUAGE plpgsql
"""
_PG_TRIGGER = """
CREATE TRIGGER {t}_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON {t}
FOR EACH STATEMENT EXECUTE FUNCTION quota_append_only()
"""


APPEND_ONLY = ["txn", "posting", "tally", "lot", "rulebook", "source"]


def install_triggers(conn: Connection, tables: list[str] | None = None) -> None:
    """Refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL) on the ledger tables, for everyone."""
    if is_sqlite(conn):
        for t in tables or APPEND_ONLY:
            for op in ("UPDATE", "DELETE"):
                conn.exec_driver_sql(_SQLITE_TRIGGER.format(t=t, op=op))
        return
    conn.exec_driver_sql(_PG_FUNCTION)
    for t in tables or APPEND_ONLY:
        exists = conn.execute(text("SELECT 1 FROM pg_trigger WHERE tgname = :n AND tgrelid = to_regclass(:t)"),
                              {"n": f"{t}_append_only", "t": t}).first()
        if not exists:
            conn.exec_driver_sql(_PG_TRIGGER.format(t=t))
