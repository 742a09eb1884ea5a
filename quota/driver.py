"""Driver-level SQL for the ledger's hot path: '?' statements straight to the DBAPI cursor; on PostgreSQL
reads go out together and writes are queued, each batch in one pipelined round trip."""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError

PENDING = "quota_pending"
Query = tuple[str, Sequence]


def select(conn: Connection, *queries: Query) -> list[list[tuple]]:
    """The rows of each `(sql, params)` query, in order. Queued writes are sent first (in the same
    round trip on PostgreSQL), so a read always sees this transaction's own writes."""
    return _run(conn, conn.info.pop(PENDING, []), list(queries))


def write(conn: Connection, sql: str, params: Sequence = ()) -> None:
    """Run a write in this transaction: at once on SQLite; on PostgreSQL queued until the next read,
    the next SQLAlchemy statement or `flush` (db.run_write flushes before it commits)."""
    if conn.dialect.name == "sqlite":
        _run(conn, [(sql, params)], [])
    else:
        conn.info.setdefault(PENDING, []).append((sql, params))


def flush(conn: Connection) -> None:
    """Send the queued writes now (one round trip); a failure raises here, inside the transaction."""
    pending = conn.info.pop(PENDING, None)
    if pending:
        _run(conn, pending, [])


def discard(conn: Connection) -> None:
    """Forget queued writes (the transaction is being rolled back)."""
    conn.info.pop(PENDING, None)


def install(engine: Engine) -> None:
    """Flush queued writes before any SQLAlchemy statement on the same connection (PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        return

    @event.listens_for(engine, "before_execute")
    def _before(conn, *_args):  # pragma: no cover - driver hook
        if conn.info.get(PENDING):
            flush(conn)


def _params(sqlite: bool, params: Sequence) -> tuple:
    if sqlite:  # dates as ISO text (sqlite3's default date adapter is deprecated)
        return tuple(v.isoformat() if isinstance(v, dt.date) else v for v in params)
    return tuple(params)


def _run(conn: Connection, writes: list[Query], reads: list[Query]) -> list[list[tuple]]:
    sqlite = conn.dialect.name == "sqlite"
    raw = conn.connection.driver_connection
    sql, params = "", ()
    try:
        if sqlite:
            cur = raw.cursor()
            for sql, params in writes:
                cur.execute(sql, _params(True, params))
            out = []
            for sql, params in reads:
                out.append(cur.execute(sql, _params(True, params)).fetchall())
            return out
        cursors = []
        with raw.pipeline():
            for sql, params in writes:
                raw.cursor().execute(sql.replace("?", "%s"), tuple(params))
            for sql, params in reads:
                cur = raw.cursor()
                cur.execute(sql.replace("?", "%s"), tuple(params))
                cursors.append(cur)
        return [cur.fetchall() for cur in cursors]
    except conn.dialect.loaded_dbapi.Error as exc:  # the same exception types as SQLAlchemy statements raise
        raise DBAPIError.instance(sql, params, exc, conn.dialect.loaded_dbapi.Error,
                                  dialect=conn.dialect) from exc
