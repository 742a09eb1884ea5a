"""Driver-level SQL for the ledger's hot path: '?' statements straight to the DBAPI cursor; on PostgreSQL
reads go out together and writes are queued, each batch in one pipelined round trip."""
from __future__ import annotations

import datetime as dt
from contextvars import ContextVar, Token
from typing import Sequence

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

STATE = "quota_driver"
Query = tuple[str, Sequence]


def select(conn: Connection, *queries: Query) -> list[list[tuple]]:
    """The rows of each `(sql, params)` query, in order. Queued writes are sent first (in the same
    round trip on PostgreSQL), so a read always sees this transaction's own writes. Queries read ahead
    with `prefetch` (and not invalidated by a write since) are answered without a round trip."""
    st = state(conn)
    cache = st.prefetched
    if cache and all(_key(q) in cache for q in queries):
        return [cache.pop(_key(q)) for q in queries]
    pending, st.pending = st.pending, []
    return _run(conn, st, pending, list(queries))


class State:
    """What the driver keeps per database connection: its dialect, its DBAPI connection and (SQLite) one
    cursor; and per write transaction (cleared by `deactivate`) the queued writes, the rows read ahead, and the
    locked chain head and current rulebook version that db.lock_head read."""
    __slots__ = ("sqlite", "raw", "cur", "conn", "pending", "prefetched", "head", "rulebook")

    def __init__(self, conn: Connection):
        self.sqlite = conn.dialect.name == "sqlite"
        self.raw = conn.connection.driver_connection
        self.cur = self.raw.cursor() if self.sqlite else None
        self.conn: Connection | None = None  # the SQLAlchemy connection of the write transaction under way
        self.pending: list[Query] = []
        self.prefetched: dict | None = None
        self.head: tuple[int, str] | None = None
        self.rulebook: tuple[int, str] | None = None


# The State of the write transaction under way in this thread (or task): found without going through
# SQLAlchemy's connection info (three property lookups), which every statement of an operation would pay.
_ACTIVE: ContextVar[State | None] = ContextVar("quota_write_state", default=None)


def state(conn: Connection) -> State:
    """The driver's State of this connection, kept in the info of its DBAPI connection (which SQLAlchemy
    clears when it replaces that connection)."""
    st = _ACTIVE.get()
    if st is not None and st.conn is conn:
        return st
    info = conn.info
    st = info.get(STATE)
    if st is None:
        st = info[STATE] = State(conn)
    return st


def activate(conn: Connection) -> Token:
    """Mark `conn`'s State as the write transaction under way (db.run_write); undo with `deactivate`."""
    st = state(conn)
    st.conn = conn
    return _ACTIVE.set(st)


def deactivate(conn: Connection, token: Token) -> None:
    """The transaction has ended: forget its queued writes, read-ahead rows, head and rulebook."""
    st = state(conn)
    _ACTIVE.reset(token)
    st.conn, st.pending, st.prefetched, st.head, st.rulebook = None, [], None, None, None


def prefetch(conn: Connection, first: list[Query], ahead: Sequence[Query]) -> list[list[tuple]]:
    """Run `first` and return its rows; on PostgreSQL `ahead` goes out in the same round trip and its
    rows are kept for the `select` calls that ask for them (SQLite has no round trips to save)."""
    if not ahead or state(conn).sqlite:
        return select(conn, *first)
    rows = select(conn, *first, *ahead)
    state(conn).prefetched = {_key(q): r for q, r in zip(ahead, rows[len(first):])}
    return rows[:len(first)]


def _key(query: Query) -> tuple:
    return query[0], tuple(query[1])


def write(conn: Connection, *writes: Query) -> None:
    """Run writes `(sql, params)` in this transaction: at once on SQLite; on PostgreSQL queued until the
    next read, the next SQLAlchemy statement or `flush` (db.run_write flushes before it commits)."""
    st = state(conn)
    st.prefetched = None
    if st.sqlite:
        _run(conn, st, writes, [])
    else:
        st.pending.extend(writes)


def flush(conn: Connection, commit: bool = False) -> None:
    """Send the queued writes now (one round trip); a failure raises here, inside the transaction.
    With `commit` on PostgreSQL the COMMIT goes in the same round trip (the caller's own commit that
    follows is then a no-op)."""
    st = state(conn)
    if st.pending:
        pending, st.pending = st.pending, []
        _run(conn, st, pending, [], commit)


def install(engine: Engine) -> None:
    """Flush queued writes (and drop read-ahead rows) before any SQLAlchemy statement on the same
    connection (PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return

    @event.listens_for(engine, "before_execute")
    def _before(conn, *_args):  # pragma: no cover - driver hook
        st = conn.info.get(STATE)
        if st is not None:
            st.prefetched = None  # the statement may write
            if st.pending:
                flush(conn)


def sqlite_adapters() -> None:
    """Let sqlite3 store dates and datetimes as ISO text, as its default adapters did (they are deprecated
    from Python 3.12): registered once, they convert in the driver instead of row by row in Python."""
    import sqlite3
    sqlite3.register_adapter(dt.date, dt.date.isoformat)
    sqlite3.register_adapter(dt.datetime, dt.datetime.isoformat)


_VALUES: dict[tuple, str] = {}


def values(head: str, width: int, rows: list[tuple], tail: str = "") -> tuple[str, tuple]:
    """`head VALUES (?, ...), (?, ...) tail` for `rows` of `width` values, with the flattened parameters."""
    key = (head, width, len(rows), tail)
    sql = _VALUES.get(key)
    if sql is None:
        one = "(" + ", ".join(["?"] * width) + ")"
        sql = f"{head} VALUES {', '.join([one] * len(rows))} {tail}"
        if len(_VALUES) < 1000:
            _VALUES[key] = sql
    return sql, tuple([v for r in rows for v in r])


def _wrap(conn: Connection, sql: str, params, exc: Exception) -> DBAPIError:
    """The DBAPI error as SQLAlchemy raises it for its own statements (IntegrityError, OperationalError...)."""
    return DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect)


def _run(conn: Connection, st: State, writes: list[Query], reads: list[Query],
         commit: bool = False) -> list[list[tuple]]:
    sql, params = "", ()
    try:
        if st.sqlite:
            cur = st.cur
            for sql, params in writes:
                cur.execute(sql, params)
            return [cur.execute(sql, params).fetchall() for sql, params in reads]
        raw = st.raw
        if len(writes) + len(reads) == 1 and not commit:  # one statement: no pipeline to set up
            sql, params = (writes or reads)[0]
            cur = raw.cursor()
            cur.execute(sql.replace("?", "%s"), tuple(params))
            return [cur.fetchall()] if reads else []
        cursors = []  # one per statement, kept until the pipeline has synced
        with raw.pipeline():
            for sql, params in writes + reads:
                cursors.append(raw.cursor())
                cursors[-1].execute(sql.replace("?", "%s"), tuple(params))
            if commit:
                raw.commit()
        return [cur.fetchall() for cur in cursors[len(writes):]]
    except conn.dialect.loaded_dbapi.Error as exc:  # the same exception types as SQLAlchemy statements raise
        raise _wrap(conn, sql, params, exc) from exc
