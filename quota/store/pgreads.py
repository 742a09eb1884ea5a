"""One-statement reads from a worker's event loop on PostgreSQL, on psycopg's async connections.

The reads every request makes (the user of its session or token, the ledger's state that guards the read cache,
the last verification) are one statement each. Through the library's engine each must go to the thread pool and
back, which costs a worker more CPU than the statement itself (measured in docs/performance.md, Web workspace);
here the loop sends the statement and serves other requests until the answer comes. A request's statements
go out together in one round trip (`many`, psycopg's pipeline mode). The statements are the library's own
(`users.session_query`, `db.HEAD_SQL`, ...): nothing is decided here.

A small pool of autocommit connections per event loop (a server has one loop per worker; the test client starts
a loop per request, and a loop's connections are closed once it has closed). A connection that failed, or whose
statement was cut short (a client gone mid-request), is closed, never handed out again; one the server cut (a
restart) takes the loop's other idle ones with it, and the statement is sent once more on a new connection (a
read: nothing to undo), so a database that is back fails no request. Driver errors are raised
as the library's DatabaseError (the app answers 503, as for any database error).
"""
from __future__ import annotations

import asyncio
import collections
import threading
from typing import Sequence

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from quota.store import db

SIZE = 8  # connections a worker's loop keeps: a statement takes about 0.2 ms, so 8 serve far more than 32 clients


class _LoopPool:
    """The connections of one event loop: idle ones, how many exist, the requests waiting for one."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.idle: list[psycopg.AsyncConnection] = []
        self.count = 0
        self.waiters: collections.deque[asyncio.Future] = collections.deque()

    def drop_idle(self) -> None:
        """Close the idle connections (made before one found cut: as likely cut too), in the loop."""
        self.count -= len(self.idle)
        self.finish()

    def finish(self) -> None:
        """Close the idle connections without the loop (it may be closed already)."""
        for conn in self.idle:
            conn.pgconn.finish()
        self.idle.clear()


class AsyncReads:
    def __init__(self, engine: Engine, size: int = SIZE):
        self.params = db.connect_params(engine)
        self.size = size
        self._pools: dict[int, _LoopPool] = {}
        self._guard = threading.Lock()

    async def one(self, sql: str, params: Sequence = ()) -> tuple | None:
        """The first row of one SELECT (`?` placeholders), or None, outside any transaction (db.read_one's
        contract, from the event loop)."""
        return (await self.many([(sql, params)]))[0]

    async def many(self, statements: Sequence[tuple[str, Sequence]]) -> list[tuple | None]:
        """`one` for each (sql, params), sent in one round trip: psycopg's pipeline mode, where the server answers
        the statements in turn without waiting for the client between them (measured: three statements of a
        request took 0.35 ms of the worker's CPU one after the other, 0.18 ms pipelined)."""
        pool = self._pool()
        for again in (True, False):
            conn = await self._take(pool)
            ok = False
            try:
                rows = await (_first_row(conn, *statements[0]) if len(statements) == 1 else
                              _pipelined(conn, statements))
                ok = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                return rows
            except psycopg.Error as exc:
                if again and conn.broken:  # the server cut it (a restart): so too the others it kept
                    pool.drop_idle()
                    continue  # reads only: asked once more on a new connection
                raise DBAPIError.instance("; ".join(sql for sql, _ in statements),
                                          [tuple(p) for _, p in statements], exc, psycopg.Error) from exc
            finally:
                self._give(pool, conn, ok)
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """Close the current loop's idle connections (the server's shutdown)."""
        pool = self._pool()
        while pool.idle:
            pool.count -= 1  # no longer one of the loop's: a read after this makes a new one
            await pool.idle.pop().close()

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        with self._guard:
            pool = self._pools.get(id(loop))
            if pool is None or pool.loop is not loop:
                for key, old in list(self._pools.items()):  # connections of loops that have closed
                    if old.loop.is_closed() or key == id(loop):
                        old.finish()
                        del self._pools[key]
                pool = self._pools[id(loop)] = _LoopPool(loop)
            return pool

    async def _take(self, pool: _LoopPool) -> psycopg.AsyncConnection:
        if pool.idle:
            return pool.idle.pop()
        if pool.count >= self.size:
            waiter = pool.loop.create_future()
            pool.waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():  # handed one (or a place) as it was cancelled: passed on
                    self._give(pool, waiter.result(), True)
                raise
            if conn is not None:
                return conn
            # None from _give: a closed connection's place, still counted, kept for this request (a request that
            # asked in between found no room: counting it only here let the loop keep more than `size`)
        else:
            pool.count += 1  # a new connection, in room there was
        try:
            return await psycopg.AsyncConnection.connect(autocommit=True, **self.params)
        except BaseException as exc:
            self._give(pool, None, True)  # the place: to the next waiter, else free
            if isinstance(exc, psycopg.Error):
                raise DBAPIError.instance("connect", (), exc, psycopg.Error) from exc
            raise

    def _give(self, pool: _LoopPool, conn: psycopg.AsyncConnection | None, ok: bool) -> None:
        """Back to the pool, or to the first waiter; a connection not `ok` is closed and its place (None: still
        counted) goes to the first waiter, who makes a new one in it, else is freed."""
        if conn is not None and not ok:
            conn.pgconn.finish()
            conn = None
        while pool.waiters:
            waiter = pool.waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is not None:
            pool.idle.append(conn)
        else:
            pool.count -= 1


async def _first_row(conn: psycopg.AsyncConnection, sql: str, params: Sequence) -> list[tuple | None]:
    async with conn.cursor() as cur:
        await cur.execute(sql.replace("?", "%s"), tuple(params))
        return [await cur.fetchone()]


async def _pipelined(conn: psycopg.AsyncConnection, statements: Sequence[tuple[str, Sequence]]) -> list[tuple | None]:
    cursors = []
    try:
        async with conn.pipeline():  # the statements go out together; their answers are read as the block ends
            for sql, params in statements:
                cursors.append(conn.cursor())
                await cursors[-1].execute(sql.replace("?", "%s"), tuple(params))
        return [await cur.fetchone() for cur in cursors]
    finally:
        for cur in cursors:
            await cur.close()


def create(engine: Engine) -> AsyncReads | None:
    """The app's async reads: on PostgreSQL only (SQLite reads a local file in the loop's own thread)."""
    return None if db.is_sqlite(engine) else AsyncReads(engine)

