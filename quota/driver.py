"""Driver-level SQL for the ledger's hot path: '?' statements straight to the DBAPI cursor; on PostgreSQL
reads go out together and writes are queued, each batch in one pipelined round trip."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

PENDING = "quota_pending"
PREFETCHED = "quota_prefetched"
Query = tuple[str, Sequence]


def select(conn: Connection, *queries: Query) -> list[list[tuple]]:
    """The rows of each `(sql, params)` query, in order. Queued writes are sent first (in the same
    round trip on PostgreSQL), so a read always sees this transaction's own writes. Queries read ahead
    with `prefetch` (and not invalidated by a write since) are answered without a round trip."""
    cache = conn.info.get(PREFETCHED)
    if cache and all(_key(q) in cache for q in queries):
        return [cache.pop(_key(q)) for q in queries]
    return _run(conn, conn.info.pop(PENDING, []), list(queries))


def prefetch(conn: Connection, first: list[Query], ahead: list[Query]) -> list[list[tuple]]:
    """Run `first` and return its rows; on PostgreSQL `ahead` goes out in the same round trip and its
    rows are kept for the `select` calls that ask for them (SQLite has no round trips to save)."""
    if conn.dialect.name == "sqlite" or not ahead:
        return select(conn, *first)
    rows = select(conn, *first, *ahead)
    conn.info[PREFETCHED] = {_key(q): r for q, r in zip(ahead, rows[len(first):])}
    return rows[:len(first)]


def _key(query: Query) -> tuple:
    return query[0], tuple(query[1])


def write(conn: Connection, sql: str, params: Sequence = ()) -> None:
    """Run a write in this transaction: at once on SQLite; on PostgreSQL queued until the next read,
    the next SQLAlchemy statement or `flush` (db.run_write flushes before it commits)."""
    conn.info.pop(PREFETCHED, None)
    if conn.dialect.name == "sqlite":
        _run(conn, [(sql, params)], [])
    else:
        conn.info.setdefault(PENDING, []).append((sql, params))


def flush(conn: Connection, commit: bool = False) -> None:
    """Send the queued writes now (one round trip); a failure raises here, inside the transaction.
    With `commit` on PostgreSQL the COMMIT goes in the same round trip (the caller's own commit that
    follows is then a no-op)."""
    pending = conn.info.pop(PENDING, None)
    if pending:
        _run(conn, pending, [], commit)


def reset(conn: Connection) -> None:
    """Forget queued writes and read-ahead rows (the transaction has ended)."""
    conn.info.pop(PENDING, None)
    conn.info.pop(PREFETCHED, None)


def install(engine: Engine) -> None:
    """Flush queued writes (and drop read-ahead rows) before any SQLAlchemy statement on the same
    connection (PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return

    @event.listens_for(engine, "before_execute")
    def _before(conn, *_args):  # pragma: no cover - driver hook
        conn.info.pop(PREFETCHED, None)  # the statement may write
        if conn.info.get(PENDING):
            flush(conn)


def sqlite_adapters() -> None:
    """Let sqlite3 store dates and datetimes as ISO text, as its default adapters did (they are deprecated
    from Python 3.12): registered once, they convert in the driver instead of row by row in Python."""
    import sqlite3
    sqlite3.register_adapter(dt.date, dt.date.isoformat)
    sqlite3.register_adapter(dt.datetime, dt.datetime.isoformat)


def values(head: str, width: int, rows: list[tuple], tail: str = "") -> tuple[str, tuple]:
    """`head VALUES (?, ...), (?, ...) tail` for `rows` of `width` values, with the flattened parameters."""
    one = "(" + ", ".join(["?"] * width) + ")"
    return f"{head} VALUES {', '.join([one] * len(rows))} {tail}", tuple(v for r in rows for v in r)


def _run(conn: Connection, writes: list[Query], reads: list[Query], commit: bool = False) -> list[list[tuple]]:
    sqlite = conn.dialect.name == "sqlite"
    raw = conn.connection.driver_connection
    sql, params = "", ()
    try:
        if sqlite:
            cur = raw.cursor()
            for sql, params in writes:
                cur.execute(sql, params)
            out = []
            for sql, params in reads:
                out.append(cur.execute(sql, params).fetchall())
            return out
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
        raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc
