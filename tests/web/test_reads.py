"""The workspace keeps balances by the ledger's state (quota/store/readcache.py): on both engines, a write is
seen by the next read, whoever made it (the API, the library from another engine as `quota` in another
process would, a new rulebook), and a read between writes is answered from the cache."""
import re

from quota.ledger import balances, operations
from quota.report import html as report
from quota.rules import versions as rulebooks
from quota.store import db, users
from tests.conftest import DATA
from tests.web.support import client, login, make_app, prepare


def api(app, engine):
    c = client(app)
    c.headers["Authorization"] = f"Bearer {users.new_token(engine, 'clerk')['token']}"
    return c


def reserved(rows: list[dict]) -> dict:
    return {r["pollutant"]: r["reserved_g"] for r in rows}


def overview_rows(html: str) -> list[tuple]:
    return re.findall(r'<tr data-pollutant="([^"]+)" data-key="([^"]+)">.*?<td class="n">([^<]+)</td>'
                      r'<td class="n">([^<]+)</td><td class="n">([^<]+)</td>', html)


def expected_overview(engine) -> list[tuple]:
    return [(r["pollutant"], r["key"], r["available"], r["reserved"], r["allocated"])
            for r in report.overview(engine)["rows"]]


def test_a_write_is_seen_by_the_next_read_of_the_api_and_the_overview(db_url):
    engine = prepare(db_url)
    other = db.make_engine(db_url)  # another writer: the CLI in another process, another server worker
    try:
        app = make_app(engine)
        c, page = api(app, engine), login(app, "clerk")
        before = c.get("/api/v1/balance").json()
        assert c.get("/api/v1/balance").json() == before and overview_rows(page.get("/").text)
        hits = app.state.reads.hits
        page.get("/")
        assert app.state.reads.hits == hits + 1  # between writes, the cache answers

        assert c.post("/api/v1/projects/P2026-01/reserve", headers={"Idempotency-Key": "r-1"}).status_code == 200
        after_api = c.get("/api/v1/balance").json()
        assert after_api == balances.balance(engine) and reserved(after_api["rows"]) != reserved(before["rows"])
        assert overview_rows(page.get("/").text) == expected_overview(engine)

        shown = overview_rows(page.get("/").text)
        operations.reserve(other, "P2026-02", actor="clerk", key="r-2")  # not through this app
        assert c.get("/api/v1/balance").json() == balances.balance(engine) != after_api
        assert overview_rows(page.get("/").text) == expected_overview(engine) != shown

        operations.release(other, "P2026-01", actor="clerk", key="r-3")
        assert overview_rows(page.get("/").text) == expected_overview(engine)
        assert c.get("/api/v1/balance?by=zone").json() == balances.balance(engine, by="zone")
    finally:
        other.dispose()
        engine.dispose()


def test_a_new_rulebook_is_seen_by_the_next_read(db_url, tmp_path):
    engine = prepare(db_url)
    try:
        app = make_app(engine)
        c = api(app, engine)
        unit = {r["pollutant"]: r["unit"] for r in c.get("/api/v1/balance").json()["rows"]}
        assert unit["COD"] == "t/a"
        rules = (DATA / "rules.toml").read_text(encoding="utf-8")
        changed = rules.replace('unit = "t/a"', 'unit = "kg/a"', 1)
        assert changed != rules
        (tmp_path / "rules.toml").write_text(changed, encoding="utf-8")
        rulebooks.load(engine, str(tmp_path / "rules.toml"), "admin")  # no ledger transaction
        assert c.get("/api/v1/balance").json() == balances.balance(engine)
        assert {r["pollutant"]: r["unit"] for r in c.get("/api/v1/balance").json()["rows"]} == {**unit, "COD": "kg/a"}
    finally:
        engine.dispose()


def test_a_refusal_is_not_kept(db_url):
    engine = prepare(db_url)
    try:
        app = make_app(engine)
        c = api(app, engine)
        for _ in range(2):
            r = c.get("/api/v1/balance?pollutant=NOPE")
            assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_code"
        assert app.state.reads.misses == 0
    finally:
        engine.dispose()


def test_a_verify_run_elsewhere_is_seen_by_the_next_overview_though_no_balance_changed(db_url):
    """The overview's "last verified" is kept in the cache with its balances: a `verify` run by another process
    (no ledger write) moves the cache's state, so the next overview shows it."""
    from quota.audit import trace as audit
    engine = prepare(db_url)
    other = db.make_engine(db_url)
    try:
        app = make_app(engine)
        page = login(app, "clerk")

        def verified() -> str:
            return page.get("/").text.split('id="verified">')[1].split("</p>")[0]
        never = verified()
        assert verified() == never  # answered from the cache
        audit.verify_and_record(other, actor="auditor-elsewhere")
        shown = verified()
        assert shown != never and "auditor-elsewhere" in shown
        audit.verify_and_record(other, actor="auditor-again")
        assert "auditor-again" in verified()
    finally:
        other.dispose()
