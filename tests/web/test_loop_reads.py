"""The reads every request makes are answered in the worker's event loop (web/app.py read_row, cached_read; on
PostgreSQL through quota/store/pgreads.py): no thread hand-off on the overview's and the balance API's path between
writes, on both engines; and on PostgreSQL the loop's connections survive what can happen to them (a backend
killed, a statement cut short, more requests than connections, a new event loop)."""
import asyncio
import uuid

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy import text

from quota.ledger import balances
from quota.store import db, users
from tests.conftest import ENGINES
from tests.databases import fresh_url
from tests.web.support import bearer, client, login, make_app, prepare
from quota.store import pgreads
from web import app as webapp


def test_the_hot_reads_take_no_thread_hand_off_between_writes(db_url, monkeypatch):
    engine = prepare(db_url)
    app = make_app(engine)
    page = login(app, "clerk")
    api = client(app)
    api.headers.update(bearer(engine, "clerk"))
    first = page.get("/").text
    assert api.get("/api/v1/balance").json() == balances.balance(engine)  # both kept in the read cache

    def no_hand_off(*args, **kwargs):
        raise AssertionError("handed to the thread pool")

    monkeypatch.setattr(webapp, "run_in_threadpool", no_hand_off)
    assert page.get("/").text == first
    assert api.get("/api/v1/balance").json() == balances.balance(engine)
    assert client(app).get("/").status_code == 303  # a request without a session: to the sign-in page
    engine.dispose()


def test_the_overview_rendered_once_per_language(db_url):
    engine = prepare(db_url)
    app = make_app(engine)
    page = login(app, "clerk")
    zh = page.get("/").text
    page.cookies.set("quota_lang", "en")
    en = page.get("/").text
    assert "可用" in zh and "Available" not in zh.split('<table id="balance">')[1].split("</table>")[0]
    assert "<th>Available</th>" in en and "可用" not in en.split('<table id="balance">')[1].split("</table>")[0]
    page.cookies.set("quota_lang", "zh")
    assert page.get("/").text.replace(_csrf(zh), "") == zh.replace(_csrf(zh), "")
    engine.dispose()


def test_the_routes_reads_go_with_the_session_s_and_each_is_used_once(db_url, monkeypatch):
    """The overview's ledger state and last verification, and the balance API's ledger state, are sent with the
    user's statement in one call (one round trip on PostgreSQL); a verify run between two views is seen by the
    second (the rows ahead belong to one request); a request without a session reads nothing."""
    from quota.audit import trace
    engine = prepare(db_url)
    app = make_app(engine)
    page = login(app, "auditor")
    api = client(app)
    token = users.new_token(engine, "clerk")["token"]
    api.headers["Authorization"] = f"Bearer {token}"
    page.get("/"), api.get("/api/v1/balance")  # kept in the read cache
    sent = []
    real = webapp.read_rows

    async def counted(request, statements):
        sent.append([sql for sql, _ in statements])
        return await real(request, statements)

    monkeypatch.setattr(webapp, "read_rows", counted)
    before = page.get("/").text
    assert sent == [[users.session_query("x")[0], db.HEAD_SQL, trace.LAST_VERIFICATION_SQL]]
    sent.clear()
    assert api.get("/api/v1/balance").json() == balances.balance(engine)
    assert sent == [[users.token_query(token)[0], db.HEAD_SQL]]
    trace.verify_and_record(engine, actor="auditor-cli")
    sent.clear()
    after = page.get("/").text
    assert "auditor-cli" in after and "auditor-cli" not in before  # read with this request, not an earlier one
    assert len(sent) == 1
    sent.clear()
    assert client(app).get("/").status_code == 303 and sent == []
    engine.dispose()


def test_views_that_miss_together_make_the_read_once(db_url, monkeypatch):
    """After a write every view in flight misses the read cache at once; in one loop they wait for one read
    instead of each making it, and when that read fails each makes its own."""
    engine = prepare(db_url)
    app = make_app(engine)
    auth = bearer(engine, "clerk")
    calls = []
    real = balances.balance

    def slow(engine, **kwargs):
        calls.append(kwargs)
        import time
        time.sleep(0.3)
        if fail and len(calls) == 1:
            raise db.DatabaseError("SELECT", (), Exception("the first read fails"))
        return real(engine, **kwargs)

    monkeypatch.setattr(balances, "balance", slow)

    async def burst(n):
        async with _one_loop(app, auth) as c:
            return await asyncio.gather(*(c.get("/api/v1/balance") for _ in range(n)))

    fail = False
    answers = asyncio.run(burst(8))
    assert [r.status_code for r in answers] == [200] * 8
    assert all(r.json() == real(engine) for r in answers)
    assert len(calls) == 1
    calls.clear()
    fail = True
    from quota.ledger import operations
    operations.reserve(engine, "P2026-01", actor="clerk")  # a write: the next views miss again
    answers = asyncio.run(burst(4))
    assert sorted(r.status_code for r in answers) == [200, 200, 200, 503]
    assert all(r.json() == real(engine) for r in answers if r.status_code == 200)
    # on PostgreSQL the three that waited each made the read once the first failed; on SQLite the first miss is
    # made in the loop itself (nothing waits), and the second is kept for the other two
    assert len(calls) == (2 if db.is_sqlite(engine) else 4)
    engine.dispose()


def _one_loop(app, headers: dict):
    """A client whose requests all run in the caller's event loop, as a server's worker serves them."""
    import httpx
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", headers=headers)


def _csrf(html: str) -> str:
    return html.split('name="csrf_token" value="')[1].split('"')[0]


# --------------------------------------------------------------------------- PostgreSQL: the loop's connections

pg = pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")


@pytest.fixture
def pg_engine(tmp_path):
    url, drop = fresh_url("postgresql", tmp_path)
    engine = prepare(url)
    yield engine
    engine.dispose()
    drop()


@pg
def test_a_killed_connection_is_not_handed_out_again(pg_engine):
    app = make_app(pg_engine)
    with client(app) as c:  # one event loop for every request, as in a server's worker
        c.headers.update(bearer(pg_engine, "clerk"))
        assert c.get("/api/v1/balance").status_code == 200
        reads = app.state.pg
        pids = _loop_pids(c, reads)
        assert pids
        with pg_engine.connect() as conn:  # the server side ends them (a restart, an administrator)
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        statuses = [c.get("/api/v1/balance").status_code for _ in range(4)]
        # a dead connection fails its statement once (503: database error, nothing written), then is gone
        assert set(statuses) <= {200, 503} and statuses[-2:] == [200, 200]
        assert c.get("/api/v1/balance").json() == balances.balance(pg_engine)


def _loop_pids(c, reads) -> list[int]:
    """The backend pids of the loop's idle connections (asked through each of them)."""
    async def ask():
        pool = reads._pool()
        return [conn.info.backend_pid for conn in pool.idle]
    return c.portal.call(ask)


@pg
def test_a_statement_cut_short_closes_its_connection_and_more_requests_than_connections_wait(pg_engine):
    reads = pgreads.AsyncReads(pg_engine, size=3)

    async def scenario():
        slow = asyncio.ensure_future(reads.one("SELECT pg_sleep(5)"))
        await asyncio.sleep(0.2)
        slow.cancel()  # a client gone mid-request
        with pytest.raises(asyncio.CancelledError):
            await slow
        pool = reads._pool()
        assert pool.count == 0 and not pool.idle  # closed, not kept with a statement still running
        rows = await asyncio.gather(*(reads.one("SELECT ?::int, pg_sleep(0.02)", (i,)) for i in range(20)))
        assert [r[0] for r in rows] == list(range(20))
        assert pool.count == 3 and len(pool.idle) == 3  # never more than `size` connections
        with pytest.raises(DBAPIError):
            await reads.one("SELECT no_such_column FROM txn")
        assert pool.count == 2  # the failed one closed
        assert (await reads.one("SELECT count(*) FROM web_user"))[0] == 4
        await reads.aclose()

    asyncio.run(scenario())


@pg
def test_each_event_loop_has_its_own_connections_and_a_closed_loops_are_closed(pg_engine):
    reads = pgreads.AsyncReads(pg_engine)

    async def ask():
        return (await reads.one(db.HEAD_SQL)), reads._pool()

    first, old = asyncio.run(ask())
    assert first == tuple(db.read_one(pg_engine, db.HEAD_SQL))
    kept = list(old.idle)
    assert kept and not any(conn.closed for conn in kept)
    second, new = asyncio.run(ask())  # the test client starts a loop per request
    assert second == first and new is not old
    assert all(conn.closed for conn in kept)  # the closed loop's connections were closed with it
    asyncio.run(reads.aclose())


@pg
def test_a_loop_that_goes_on_after_aclose_can_still_read(pg_engine):
    """aclose (the app's shutdown) closes the loop's idle connections; they no longer count against the pool's
    size, so the same loop reading again (an app's lifespan run again on one loop) is not left waiting for
    connections that no longer exist."""
    reads = pgreads.AsyncReads(pg_engine, size=2)

    async def scenario():
        await asyncio.gather(*(reads.one("SELECT pg_sleep(0.05)") for _ in range(2)))
        await reads.aclose()
        pool = reads._pool()
        assert pool.count == 0 and not pool.idle
        rows = await asyncio.wait_for(asyncio.gather(*(reads.one("SELECT ?::int", (i,)) for i in range(3))), 10)
        assert [r[0] for r in rows] == [0, 1, 2]
        await reads.aclose()

    asyncio.run(scenario())


@pg
def test_after_the_database_restarts_no_request_fails_on_the_loops_dead_connections(pg_engine):
    """Every connection a loop kept is cut when the server restarts (here: all its backends terminated). A
    one-statement read that meets a dead one is read again on a new connection, and the loop's other idle
    ones (made before, as dead) are closed with it: no request answers 503 for a database that is back (each
    dead connection failed one request, up to SIZE in a row per worker)."""
    app = make_app(pg_engine)
    with client(app) as c:  # one event loop, as in a server's worker
        c.headers.update(bearer(pg_engine, "clerk"))
        reads = app.state.pg

        async def fill():
            await asyncio.gather(*(reads.one("SELECT pg_sleep(0.05)") for _ in range(4)))
        c.portal.call(fill)
        pids = _loop_pids(c, reads)
        assert len(pids) == 4
        with pg_engine.connect() as conn:
            for pid in pids:
                conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        statuses = [c.get("/api/v1/balance").status_code for _ in range(6)]
        assert statuses == [200] * 6
        assert c.get("/api/v1/balance").json() == balances.balance(pg_engine)


@pg
def test_statements_sent_together_answer_in_turn_and_a_failure_or_a_cut_closes_their_connection(pg_engine):
    reads = pgreads.AsyncReads(pg_engine, size=2)

    async def scenario():
        rows = await reads.many([("SELECT ?::int", (1,)), (db.HEAD_SQL, ()), ("SELECT 1 WHERE false", ())])
        assert rows == [(1,), tuple(db.read_one(pg_engine, db.HEAD_SQL)), None]
        pool = reads._pool()
        assert pool.count == 1 and len(pool.idle) == 1
        with pytest.raises(DBAPIError):  # the second fails: the statements after it are not answered either
            await reads.many([("SELECT ?::int", (1,)), ("SELECT no_such_column FROM txn", ()), ("SELECT 2", ())])
        assert pool.count == 0 and not pool.idle
        slow = asyncio.ensure_future(reads.many([("SELECT 1", ()), ("SELECT pg_sleep(5)", ())]))
        await asyncio.sleep(0.2)
        slow.cancel()  # a client gone mid-request
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert pool.count == 0 and not pool.idle
        assert await asyncio.wait_for(reads.many([("SELECT 3", ()), ("SELECT 4", ())]), 5) == [(3,), (4,)]
        await reads.aclose()

    asyncio.run(scenario())


@pg
def test_a_closed_connections_place_goes_to_the_request_waiting_for_it_and_no_other(pg_engine):
    """A connection closed (its statement failed, its request went away, the server cut it) leaves its place to
    the first request waiting; a request that asks in between must wait too, or the loop keeps more than
    `size` connections (measured before: size 1 kept 2; size 3 grew to 8 after a few backends were killed under
    load, and stayed there)."""
    reads = pgreads.AsyncReads(pg_engine, size=1)

    async def scenario():
        async def fails_then_reads_again():
            with pytest.raises(DBAPIError):  # the place of the closed connection is handed to `waiting`...
                await reads.one("SELECT 1 / (SELECT 0 FROM pg_sleep(0.2))")
            return await reads.one("SELECT 2")  # ...and this one, asking before `waiting` ran, must not take it

        first = asyncio.ensure_future(fails_then_reads_again())
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(reads.one("SELECT 3"))
        assert await asyncio.wait_for(asyncio.gather(first, waiting), 10) == [(2,), (3,)]
        pool = reads._pool()
        assert pool.count == len(pool.idle) == 1
        await reads.aclose()

    asyncio.run(scenario())


@pg
def test_backends_killed_under_load_leave_the_pool_at_its_size(pg_engine):
    reads = pgreads.AsyncReads(pg_engine, size=3)
    mark = f"killed_{uuid.uuid4().hex}"  # this test's statements only (the server is shared)

    def kill_sleepers():
        with pg_engine.connect() as conn:
            return conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
                                     "pg_backend_pid() AND position(:m in query) > 0"), {"m": mark}).all()

    async def scenario():
        pool = reads._pool()
        for _ in range(3):
            tasks = [asyncio.ensure_future(reads.many([("SELECT ?::int", (i,)), (f"SELECT pg_sleep(0.3) AS {mark}", ())]))
                     for i in range(12)]
            await asyncio.sleep(0.1)
            assert await asyncio.to_thread(kill_sleepers)
            rows = await asyncio.wait_for(asyncio.gather(*tasks), 30)
            assert [r[0] for r in rows] == [(i,) for i in range(12)]  # each killed read was sent again
            assert pool.count == len(pool.idle) <= 3
        await reads.aclose()

    asyncio.run(scenario())


def test_a_view_does_not_wait_for_a_read_made_on_another_day(db_url, monkeypatch, pin_today):
    """The read cache keeps a read by the ledger's state and the library's today (a lot lapses at midnight with
    no write); so must the reads in flight: a view asked after midnight does not take the answer of a read begun
    before it (before: it was answered with the day before's balance, a lapsed lot still available)."""
    import datetime as dt
    import time
    from quota import clock
    engine = prepare(db_url)
    app = make_app(engine)
    auth = bearer(engine, "clerk")
    days = []
    real = balances.balance

    def slow(engine, **kwargs):
        days.append(clock.today())
        time.sleep(0.3)
        return real(engine, **kwargs)

    monkeypatch.setattr(balances, "balance", slow)
    pin_today(dt.date(2026, 11, 30))

    async def across_midnight():
        async with _one_loop(app, auth) as c:
            before = asyncio.ensure_future(c.get("/api/v1/balance"))
            await asyncio.sleep(0.1)
            pin_today(dt.date(2026, 12, 1))
            return await asyncio.gather(before, c.get("/api/v1/balance"))

    answers = asyncio.run(across_midnight())
    assert [r.status_code for r in answers] == [200, 200]
    assert days == [dt.date(2026, 11, 30), dt.date(2026, 12, 1)]  # the second made its own read, on its day
    engine.dispose()
