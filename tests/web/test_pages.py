"""The web workspace through the ASGI test client, on both engines: sign-in, sessions, CSRF, throttling,
reserve with preview and confirm, double submits, refusals in both languages, escaping, the API."""
import json
import re

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app as cli_app
from quota.planning import plans
from quota.store import users
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot
from tests.web.support import PASSWORD, client, csrf, csrf_of, key_of, login, make_app, prepare, text_of

runner = CliRunner()


@pytest.fixture
def ws(db_url):
    engine = prepare(db_url)
    yield engine, make_app(engine)
    engine.dispose()


def txns(engine, project, kind):
    with engine.connect() as conn:
        return conn.execute(text("SELECT actor FROM txn WHERE project_id = :p AND kind = :k"),
                            {"p": project, "k": kind}).scalars().all()


def test_the_root_redirects_to_the_login_form_without_a_session(ws):
    _, app = ws
    c = client(app)
    r = c.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/login"
    form = c.get("/login").text
    for field in ('name="username"', 'name="password"', 'name="csrf_token"'):
        assert field in form


def test_session_cookie_is_signed_httponly_strict_and_secure_over_tls(ws):
    engine, app = ws
    c = client(app)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token})
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Secure" not in cookie
    assert r.headers["content-security-policy"].startswith("default-src 'self'")
    tls = __import__("fastapi.testclient", fromlist=["TestClient"]).TestClient(
        app, base_url="https://testserver", follow_redirects=False)
    token = csrf_of(tls.get("/login").text)
    r = tls.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
    # a tampered cookie is no session
    forged = client(app)
    value = c.cookies.get("quota_session")
    forged.cookies.set("quota_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert forged.get("/").status_code == 303


def test_login_form_without_or_with_a_wrong_csrf_token_is_refused(ws):
    _, app = ws
    c = client(app)
    c.get("/login")
    assert c.post("/login", data={"username": "clerk", "password": PASSWORD}).status_code == 403
    assert c.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": "x"}).status_code == 403
    assert c.get("/").status_code == 303  # not signed in


def test_a_form_without_or_with_a_wrong_csrf_token_writes_nothing(ws):
    engine, app = ws
    c = login(app, "clerk")
    other = login(app, "clerk")  # another session's token is no good here either
    before = snapshot(engine)
    for token in (None, "", "wrong", csrf(other)):
        data = {"key": "web-csrf", "confirm": "1", **({"csrf_token": token} if token is not None else {})}
        r = c.post("/projects/P2026-01/reserve", data=data)
        assert r.status_code == 403, r.text
        assert "CSRF" in text_of(r.text)
    assert snapshot(engine) == before


def test_failed_logins_are_slowed_then_locked_in_the_browser_too(ws, monkeypatch):
    engine, _ = ws
    from web import app as webapp, pages
    app = webapp.create_app(engine, throttle=True)
    waits = []

    async def fake_sleep(seconds):  # no real waiting in tests: record what the server would wait
        waits.append(seconds)
    monkeypatch.setattr(pages.asyncio, "sleep", fake_sleep)
    c = client(app)
    token = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"username": "clerk", "password": "guess", "csrf_token": token}).status_code
             for _ in range(users.LOCK_AFTER)]
    assert codes == [401] * (users.LOCK_AFTER - 1) + [429]
    assert waits and waits == sorted(waits) and len(waits) >= users.LOCK_AFTER - users.SLOW_AFTER
    r = c.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and c.get("/").status_code == 303
    assert "锁定" in text_of(r.text) or "locked" in text_of(r.text)
    assert login(app, "planner")  # other users are not locked out


def test_reserve_previews_then_confirms_once_with_the_clerk_as_actor(ws):
    engine, app = ws
    c = login(app, "clerk")
    page = c.get("/projects/P2026-01").text
    token, key = csrf_of(page), key_of(page)
    before = snapshot(engine)
    preview = c.post("/projects/P2026-01/reserve", data={"csrf_token": token, "key": key})
    assert preview.status_code == 200
    assert snapshot(engine) == before  # the preview wrote nothing
    drawn = re.findall(r'<a href="/lots/([^"]+)">', preview.text.split('id="preview"')[1].split("</table>")[0])
    assert len(drawn) >= 4  # COD, NH3-N, TP, VOCS
    confirm = {"csrf_token": token, "key": key_of(preview.text), "confirm": "1"}
    assert confirm["key"] == key  # the confirmation carries the form's key
    first = c.post("/projects/P2026-01/reserve", data=confirm)
    assert first.status_code == 303 and first.headers["location"] == "/projects/P2026-01"
    shown = c.get("/projects/P2026-01").text
    assert "已预留 P2026-01" in text_of(shown)
    again = c.post("/projects/P2026-01/reserve", data=confirm)  # double click / reload of the POST
    assert again.status_code == 303
    assert "未写入新数据" in text_of(c.get("/projects/P2026-01").text)
    assert txns(engine, "P2026-01", "reserve") == ["clerk"]  # posted once, by the signed-in user
    with engine.connect() as conn:
        held = set(conn.execute(text("SELECT lot FROM balance WHERE account = 'project:P2026-01:reserved' "
                                     "AND amount_g > 0")).scalars())
    assert held == set(drawn)  # the preview showed the draws the reservation took


def test_approve_release_cancel_record_the_user(ws):
    engine, app = ws
    c = login(app, "clerk")
    for project in ("P2026-01", "P2026-03"):
        page = c.get(f"/projects/{project}").text
        c.post(f"/projects/{project}/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page), "confirm": "1"})
    page = c.get("/projects/P2026-01").text
    key = re.search(r'id="approve-form">.*?name="key" value="([^"]+)"', page, re.S).group(1)
    r = c.post("/projects/P2026-01/approve", data={"csrf_token": csrf_of(page), "key": key, "doc": "金环审[2026]12号"})
    assert r.status_code == 303
    assert "金环审[2026]12号" in c.get("/projects/P2026-01").text
    page = c.get("/projects/P2026-03").text
    key = re.search(r'action="/projects/P2026-03/release".*?name="key" value="([^"]+)"', page, re.S).group(1)
    assert c.post("/projects/P2026-03/release", data={"csrf_token": csrf_of(page), "key": key}).status_code == 303
    page = c.get("/projects/P2026-01").text
    key = re.search(r'action="/projects/P2026-01/cancel".*?name="key" value="([^"]+)"', page, re.S).group(1)
    assert c.post("/projects/P2026-01/cancel", data={"csrf_token": csrf_of(page), "key": key}).status_code == 303
    assert txns(engine, "P2026-01", "approve") == ["clerk"] and txns(engine, "P2026-01", "cancel") == ["clerk"]
    assert txns(engine, "P2026-03", "release") == ["clerk"]
    from quota.audit import trace as audit
    assert audit.verify(engine)[1] == []


@pytest.mark.parametrize("lang, headers, expected", [
    ("zh", {}, ["无法为 P2026-09 预留指标", "VOCS 在 JTS 缺口 0.4000 t/a", "按污染物与匹配区域的缺口"]),
    ("zh", {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}, ["无法为 P2026-09 预留指标"]),
    ("en", {"Accept-Language": "en-US,en;q=0.9"}, ["cannot reserve P2026-09", "VOCS short by 0.4000 t/a",
                                                    "Shortfall per pollutant and matching key"]),
])
def test_a_refusal_shows_the_shortfall_in_the_users_language(ws, lang, headers, expected):
    engine, app = ws
    c = login(app, "clerk")
    c.headers.update(headers)
    page = c.get("/projects/P2026-09").text
    before = snapshot(engine)
    r = c.post("/projects/P2026-09/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page)})
    assert r.status_code == 409
    shown = text_of(r.text)
    for phrase in expected:
        assert phrase in shown, shown[-800:]
    assert re.search(r"VOCS\s*</td><td>JTS</td><td class=\"n\">12\.0000</td><td class=\"n\">11\.6000</td>"
                     r"<td class=\"n\">0\.4000</td>", r.text)
    assert snapshot(engine) == before


def test_the_language_switch_and_the_browser_language(ws):
    _, app = ws
    c = login(app, "clerk")
    assert "总览" in c.get("/").text  # Chinese by default
    c.headers["Accept-Language"] = "en-GB,en"
    assert ">Overview<" in c.get("/").text
    r = c.get("/lang/zh?next=/lots")
    assert r.status_code == 303 and r.headers["location"] == "/lots"
    assert "指标批次" in c.get("/lots").text  # the switch wins over the browser
    assert c.get("/lang/en?next=//evil.example").headers["location"] == "/"  # no open redirect


def test_names_are_shown_as_text_never_as_markup(db_url, write_csv):
    engine = prepare(db_url)
    from quota.intake import project_files as projects, tallies
    evil = "<script>alert(1)</script>"
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        f"T-X1,S-X1,{evil},closure,JT-YT,COD,5.0,,,t/a,2024,2026-01-15,monitoring,\"<b>Lab</b>\",R-1"]), actor="t")
    projects.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        f"P-X1,{evil},JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false,"]), actor="t")
    app = make_app(engine)
    c = login(app, "clerk")
    from quota.ledger import balances
    serial = next(r["lot"] for r in balances.balance(engine, by="lot")["rows"] if r["tally_id"] == "T-X1")
    for path in ("/projects", "/projects/P-X1", f"/lots/{serial}"):
        body = c.get(path).text
        assert "<script>alert" not in body and "&lt;script&gt;alert(1)&lt;/script&gt;" in body, path
    page = c.get("/projects/P-X1").text
    c.post("/projects/P-X1/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page), "confirm": "1"})
    body = c.get("/projects/P-X1").text
    assert "<script>alert" not in body and body.count("&lt;script&gt;") >= 2  # the project and its source
    engine.dispose()


def test_a_disabled_users_session_ends_at_once(ws):
    engine, app = ws
    c = login(app, "clerk")
    assert c.get("/").status_code == 200
    users.disable_user(engine, "clerk")
    assert c.get("/").status_code == 303


def test_the_overview_numbers_are_the_balance_by_pollutant_and_key(ws, db_url):
    engine, app = ws
    c = login(app, "auditor")
    page = c.get("/").text
    rows = re.findall(r'<tr data-pollutant="([^"]+)" data-key="([^"]+)">.*?<td class="n">([^<]+)</td>'
                      r'<td class="n">([^<]+)</td><td class="n">([^<]+)</td>', page)
    from quota.report import html as report
    expected = [(r["pollutant"], r["key"], r["available"], r["reserved"], r["allocated"])
                for r in report.overview(engine)["rows"]]
    assert rows == expected and len(rows) > 3
    zone = json.loads(runner.invoke(cli_app, ["--db", db_url, "balance", "--json"]).stdout)["rows"]
    for pol in {r[0] for r in rows}:  # per pollutant, the keys add up to `quota balance`
        total = sum(r["available_g"] for r in report.overview(engine)["rows"] if r["pollutant"] == pol)
        assert total == next(z["available_g"] for z in zone if z["pollutant"] == pol)
    assert "<svg" in page and 'id="head"' in page


def test_lots_filter_paginate_and_show_movements(ws):
    engine, app = ws
    c = login(app, "clerk")
    page = c.get("/lots?pollutant=COD").text
    serials = re.findall(r'<tr><td><a href="/lots/([^"]+)">', page)
    assert serials and all(s.startswith("COD") for s in serials)
    lot = c.get(f"/lots/{serials[0]}").text
    assert 'id="movements"' in lot and "issue" in lot
    assert c.get("/lots/NO-SUCH").status_code == 404


def test_verify_from_the_workspace_is_shown_on_the_overview(ws):
    engine, app = ws
    c = login(app, "auditor")
    r = c.post("/audit/verify", data={"csrf_token": csrf(c)})
    assert r.status_code == 200 and 'id="verify-result"' in r.text
    assert "auditor" in text_of(c.get("/").text.split('id="verified"')[1])
    assert c.get("/audit/export.jsonl").text.count("\n") > 20


# --------------------------------------------------------------------------- the API

def api(app, engine, role):
    c = client(app)
    c.headers["Authorization"] = f"Bearer {users.new_token(engine, role)['token']}"
    return c


def test_the_api_returns_the_clis_json_shapes(ws, db_url):
    engine, app = ws
    c = api(app, engine, "auditor")
    for by in ("pollutant", "zone", "lot"):
        cli = json.loads(runner.invoke(cli_app, ["--db", db_url, "balance", "--by", by, "--json"]).stdout)
        assert c.get(f"/api/v1/balance?by={by}").json() == cli
    cli = json.loads(runner.invoke(cli_app, ["--db", db_url, "trace", "P2026-01", "--json"]).stdout)
    assert c.get("/api/v1/projects/P2026-01/trace").json() == cli
    assert c.get("/api/v1/verify").json()["ok"] is True
    assert "/api/v1/projects/{project_id}/reserve" in client(app).get("/api/v1/openapi.json").json()["paths"]


def test_api_writes_once_per_idempotency_key_and_refuse_as_data(ws):
    engine, app = ws
    c = api(app, engine, "clerk")
    assert client(app).post("/api/v1/projects/P2026-01/reserve").status_code == 401
    first = c.post("/api/v1/projects/P2026-01/reserve", headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200 and first.json()["replayed"] is False
    again = c.post("/api/v1/projects/P2026-01/reserve", headers={"Idempotency-Key": "k-1"})
    assert again.json() == {**first.json(), "replayed": True}
    assert txns(engine, "P2026-01", "reserve") == ["clerk"]
    short = c.post("/api/v1/projects/P2026-09/reserve")
    assert short.status_code == 409 and short.json()["error"]["code"] == "insufficient_quota"
    assert short.json()["error"]["short"][0]["pollutant"] == "VOCS"
    bad = c.post("/api/v1/projects/P2026-02/reserve", json={"expires": "31/12/2027"})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "bad_date"
    conflict = c.post("/api/v1/projects/P2026-02/reserve", headers={"Idempotency-Key": "k-1"})
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "key_conflict"
    assert c.post("/api/v1/projects/P2026-01/approve", json={}).status_code == 422
    r = c.post("/api/v1/projects/P2026-01/approve", json={"doc": "D-7"}, headers={"Idempotency-Key": "k-2"})
    assert r.status_code == 200 and txns(engine, "P2026-01", "approve") == ["clerk"]
    assert api(app, engine, "auditor").post("/api/v1/projects/P2026-03/reserve").status_code == 403


def test_import_shows_every_problem_then_imports_a_good_file_once(ws):
    engine, app = ws
    c = login(app, "clerk")
    token = csrf(c)
    bad = (PROJECT_HEADER + "\nP-N1,新项目,JT-YT,chemical,COD,abc,t/a,1,2027-06-30,false,\n"
           "P-N1,新项目,NOWHERE,chemical,COD,1.0,t/a,1,2027-06-30,false,\n").encode()
    before = snapshot(engine)
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("bad.csv", bad, "text/csv")})
    assert r.status_code == 422
    rows = re.findall(r'<tr class="problem"[^>]*><td class="n">(\d+)</td><td><mark>([^<]*)</mark></td>', r.text)
    assert ("2", "increment") in rows and any(row == "3" for row, _ in rows)
    assert 'name="upload"' not in r.text  # no confirmation for a file with problems
    assert snapshot(engine) == before
    good = (PROJECT_HEADER + "\nP-N1,新项目,JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false,\n").encode()
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("good.csv", good, "text/csv")})
    assert r.status_code == 200 and "P-N1" in r.text
    assert snapshot(engine) == before  # the dry run wrote nothing
    confirm = {"csrf_token": token, "key": key_of(r.text),
               "upload": re.search(r'name="upload" value="([0-9a-f]{32})"', r.text).group(1)}
    r = c.post("/import/projects/confirm", data=confirm)
    assert r.status_code == 303 and r.headers["location"] == "/projects"
    assert "P-N1" in c.get("/projects").text
    again = c.post("/import/projects/confirm", data=confirm)  # the upload is gone after its import: refused
    assert again.status_code == 422
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM project WHERE project_id = 'P-N1'")).scalar_one() == 1
        assert conn.execute(text("SELECT actor FROM txn WHERE kind = 'register' ORDER BY seq DESC")).first()[0] \
            == "clerk"
    planner = login(app, "planner")
    tallies = (TALLY_HEADER + "\nT-N1,S-N1,新关闭企业,closure,JT-YT,COD,2.0,,,t/a,2024,2026-01-15,monitoring,"
               "Lab,R-9\n").encode()
    r = planner.post("/import/tallies", data={"csrf_token": csrf(planner)},
                     files={"file": ("t.csv", tallies, "text/csv")})
    assert r.status_code == 200 and 'id="credited"' in r.text


def test_import_reads_a_gbk_csv_and_the_chosen_sheet_of_a_workbook_and_says_how(ws, tmp_path):
    engine, app = ws
    import openpyxl
    c = login(app, "clerk")
    token = csrf(c)
    row = "P-G1,新项目,JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false,"
    gbk = (PROJECT_HEADER + "\n" + row + "\n").encode("gbk")
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("gbk.csv", gbk, "text/csv")})
    assert r.status_code == 200 and 'id="read-encoding"' in r.text and "GB" in text_of(r.text).upper()
    book = openpyxl.Workbook()
    book.active.title = "说明"
    book.active.append(["this sheet has no project columns"])
    sheet = book.create_sheet("项目")
    sheet.append(PROJECT_HEADER.split(","))
    sheet.append(["P-X1", "表格项目", "JT-YT", "chemical", "COD", 1.5, "t/a", 1, "2027-06-30", "false", None])
    sheet = book.create_sheet("备选")
    sheet.append(PROJECT_HEADER.split(","))
    sheet.append(["P-X2", "备选项目", "JT-YT", "chemical", "COD", "abc", "t/a", 1, "2027-06-30", "false", None])
    book.save(tmp_path / "p.xlsx")
    data = (tmp_path / "p.xlsx").read_bytes()
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    before = snapshot(engine)
    r = c.post("/import/projects", data={"csrf_token": token, "sheet": "备选"}, files={"file": ("p.xlsx", data, xlsx)})
    assert r.status_code == 422 and 'data-column="increment"' in r.text and 'name="upload"' not in r.text
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("p.xlsx", data, xlsx)})
    assert r.status_code == 200 and "P-X1" in r.text and 'id="read-sheet"' in r.text and "项目" in r.text
    assert snapshot(engine) == before
    confirm = {"csrf_token": token, "key": key_of(r.text), "sheet": "",
               "upload": re.search(r'name="upload" value="([0-9a-f]{32})"', r.text).group(1)}
    assert c.post("/import/projects/confirm", data=confirm).status_code == 303
    assert "P-X1" in c.get("/projects").text and "P-X2" not in c.get("/projects").text


def test_confirm_writes_nothing_when_the_file_has_a_problem_by_then(ws, write_csv):
    engine, app = ws
    c = login(app, "clerk")
    token = csrf(c)
    good = (PROJECT_HEADER + "\nP-C1,新项目,JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false,\n").encode()
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("good.csv", good, "text/csv")})
    assert r.status_code == 200
    confirm = {"csrf_token": token, "key": key_of(r.text),
               "upload": re.search(r'name="upload" value="([0-9a-f]{32})"', r.text).group(1)}
    from quota.intake import project_files
    project_files.import_projects(engine, write_csv("same.csv", PROJECT_HEADER,
                                                    ["P-C1,新项目,JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false,"]),
                                  actor="someone else")  # meanwhile P-C1 was imported
    before = snapshot(engine)
    r = c.post("/import/projects/confirm", data=confirm)
    assert r.status_code == 422 and 'class="problem"' in r.text and "P-C1" in text_of(r.text)
    assert snapshot(engine) == before


def test_the_public_registry_is_off_unless_asked_and_shows_no_actor(ws):
    engine, app = ws
    assert client(app).get("/public").status_code == 404
    c = login(app, "clerk")
    page = c.get("/projects/P2026-01").text
    c.post("/projects/P2026-01/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page), "confirm": "1"})
    page = c.get("/projects/P2026-01").text
    key = re.search(r'id="approve-form">.*?name="key" value="([^"]+)"', page, re.S).group(1)
    c.post("/projects/P2026-01/approve", data={"csrf_token": csrf_of(page), "key": key, "doc": "金环审[2026]12号"})
    public = client(make_app(engine, public=True))
    r = public.get("/public")  # no sign-in
    assert r.status_code == 200
    assert "金环审[2026]12号" in r.text and "P2026-01" in r.text and 'id="lots"' in r.text
    assert "clerk" not in text_of(r.text) and "P2026-02" not in r.text  # no actor, no pipeline
    assert public.get("/").status_code == 303  # everything else still needs a sign-in


def test_the_public_registry_is_paged_and_the_pages_add_up(ws, monkeypatch):
    engine, _ = ws
    from quota.audit import trace
    from quota.ledger import operations
    for pid in ("P2026-01", "P2026-03", "P2026-05"):
        operations.reserve(engine, pid, actor="clerk")
        operations.approve(engine, pid, doc=f"D-{pid}", actor="clerk")
    whole = trace.public_registry(engine, 1, 1000)
    assert whole["pages"] == 1 and len(whole["approved"]) == whole["approved_total"] == 3
    pages = [trace.public_registry(engine, n, 2) for n in range(1, whole["pages"] + 30)]
    assert pages[0]["pages"] == -(-whole["lots_total"] // 2)
    assert [x for p in pages for x in p["lots"]] == whole["lots"]
    assert [x for p in pages for x in p["approved"]] == whole["approved"]
    monkeypatch.setattr(trace, "PUBLIC_PER_PAGE", 2)
    monkeypatch.setattr(trace.public_registry, "__defaults__", (1, 2))
    public = client(make_app(engine, public=True))
    first, second = public.get("/public").text, public.get("/public?page=2").text
    assert 'href="/public?page=2"' in first and 'href="/public?page=1"' in second
    lots = lambda html: re.findall(r"<tr><td>([^<]+)</td>", html.split('id="lots"')[1])
    assert lots(first) == [x["lot"] for x in pages[0]["lots"]] and lots(second) == [x["lot"] for x in pages[1]["lots"]]
    assert public.get("/public?page=0").status_code == 422


def test_downloads_statement_plan_and_exports(ws):
    engine, app = ws
    from quota.planning import plans
    plans.run_plan(engine, time_limit=5)
    auditor = login(app, "auditor")
    for path, start in (("/projects/P2026-01/statement.md", b"#"), ("/projects/P2026-01/statement.xlsx", b"PK"),
                        ("/plans/PLAN-0001/plan.xlsx", b"PK"), ("/audit/export.xlsx", b"PK"),
                        ("/audit/export.csv.zip", b"PK"), ("/audit/export.beancount", b"")):
        r = auditor.get(path)
        assert r.status_code == 200 and r.content.startswith(start) and "attachment" in r.headers[
            "content-disposition"], path
    import io
    import zipfile
    names = zipfile.ZipFile(io.BytesIO(auditor.get("/audit/export.csv.zip").content)).namelist()
    assert "manifest.json" in names and "postings.csv" in names
    assert auditor.get("/audit/export.exe").status_code == 404


def test_a_planner_runs_a_scenario_and_a_plan_and_applies_it_once(ws):
    engine, app = ws
    from tests.conftest import DATA
    planner = login(app, "planner")
    token = csrf(planner)
    r = planner.post("/plans", data={"csrf_token": token, "time_limit": "5", "key": "web-scenario"},
                     files={"scenario": ("scenario.toml", (DATA / "scenario.toml").read_bytes(), "text/plain")})
    assert r.status_code == 303
    scenario = planner.get(r.headers["location"]).text
    assert 'id="candidates"' in scenario and "<svg" in scenario and 'id="apply"' in scenario
    form = {"csrf_token": token, "time_limit": "5", "key": key_of(planner.get("/plans").text)}
    r = planner.post("/plans", data=form)
    plan_id = r.headers["location"].rsplit("/", 1)[1]
    again = planner.post("/plans", data=form)  # a double submit of the same form: one plan, shown again
    assert again.headers["location"] == r.headers["location"]
    assert [p["plan_id"] for p in plans.list_plans(engine)["plans"]] == ["PLAN-0001", plan_id]
    page = planner.get(f"/plans/{plan_id}").text
    assert 'id="funded"' in page and 'id="binding"' in page
    form = {"csrf_token": token, "key": key_of(page)}
    r = planner.post(f"/plans/{plan_id.lower()}/apply", data=form)  # a look-alike address: the same plan
    assert r.status_code == 303 and r.headers["location"] == f"/plans/{plan_id}"  # named as the ledger names it
    assert plan_id in planner.get(r.headers["location"]).text.split('id="flash">')[1].split("</p>")[0]
    assert planner.post(f"/plans/{plan_id}/apply", data=form).status_code == 303  # the same key: replayed
    with engine.connect() as conn:
        actors = conn.execute(text("SELECT DISTINCT actor FROM txn WHERE kind = 'reserve'")).scalars().all()
    assert actors == ["planner"]
    scenario_id = "PLAN-0001"
    r = planner.post(f"/plans/{scenario_id}/apply", data={"csrf_token": token, "key": "web-other"})
    assert r.status_code == 409  # a scenario plan is never applied


def test_the_plan_page_shows_where_the_quota_comes_from_and_the_outlook_is_the_clis(ws, db_url):
    engine, app = ws
    planner = login(app, "planner")
    plan = plans.run_plan(engine, time_limit=5)
    page = planner.get(f"/plans/{plan['plan_id']}").text
    flow = page.split('id="flow"')[1].split("</div>")[0]
    lot = plan["funded"][0]["draws"][0]["lot"]
    with engine.connect() as conn:
        source = conn.execute(text("SELECT s.source_id FROM lot l JOIN tally t ON t.tally_id = l.tally_id JOIN source s "
                                   "ON s.source_id = t.source_id WHERE l.serial = :l"), {"l": lot}).scalar_one()
    assert "<svg" in flow and source in flow and plan["funded"][0]["project_id"] in flow
    r = planner.get("/outlook?years=2")
    assert r.status_code == 200 and "<svg" in r.text
    cli = json.loads(runner.invoke(cli_app, ["--db", db_url, "plan", "outlook", "--years", "2", "--json"]).stdout)
    shown = text_of(r.text.split('id="outlook"')[1])
    assert all(g["key"] in shown for g in cli["groups"]) and [str(y) for y in cli["years"]][0] in shown
    assert planner.get("/outlook?years=11").status_code == 422


def test_the_overviews_expiring_lots_today_match_the_replay_of_every_lot(ws):
    engine, app = ws
    c = login(app, "clerk")
    page = c.get("/projects/P2026-01").text
    c.post("/projects/P2026-01/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page), "confirm": "1"})
    import datetime as dt
    from quota import clock
    from quota.report import html as report
    fast = report.overview(engine)["expiring"]
    today = clock.today()
    replayed = report.overview(engine, as_of=today)["expiring"]  # the as-of path replays every lot
    assert fast == replayed
    later = report.overview(engine, as_of=today - dt.timedelta(days=400))["expiring"]
    assert later != fast or not fast


def test_lots_are_filtered_and_paged_by_the_library_and_the_pages_add_up(ws, monkeypatch):
    engine, app = ws
    import datetime as dt
    from quota.ledger import balances
    every = balances.balance(engine, by="lot")["rows"]
    page = balances.lot_page(engine, state="active", expires_before=dt.date(2028, 1, 1), offset=0, limit=1000)
    expected = [r for r in every if r["state"] == "active" and r["expires"] and r["expires"] < "2028-01-01"]
    assert page["rows"] == expected and page["total"] == len(expected) and 0 < len(expected) < len(every)
    halves = [balances.lot_page(engine, offset=o, limit=5)["rows"] for o in range(0, len(every), 5)]
    assert [r for h in halves for r in h] == every
    from web import pages
    monkeypatch.setattr(pages, "LOTS_PER_PAGE", 5)
    c = login(app, "clerk")
    shown = []
    for n in range(1, -(-len(every) // 5) + 1):
        shown += re.findall(r'<tr><td><a href="/lots/([^"]+)">', c.get(f"/lots?page={n}").text)
    assert shown == [r["lot"] for r in every]
    filtered = c.get("/lots?state=active&expires_before=2028-01-01").text
    assert re.findall(r'<tr><td><a href="/lots/([^"]+)">', filtered) == [r["lot"] for r in expected][:5]


def test_a_malformed_form_field_is_refused_in_the_users_language_and_every_lot_state_is_named(ws):
    """FastAPI's own validation text ("Input should be a valid number...") is quoted inside a sentence of the
    user's language, naming the field; the lots filter names every state in Chinese (exhausted was English)."""
    engine, app = ws
    planner = login(app, "planner")
    before = snapshot(engine)
    r = planner.post("/plans", data={"csrf_token": csrf(planner), "time_limit": "abc", "key": "web-bad"})
    assert r.status_code == 422
    shown = text_of(r.text)
    assert "请求无效（time_limit）：“" in shown
    assert shown.index("Input should be") > shown.index("“")  # the library's words only inside the quotes
    assert {k: v for k, v in snapshot(engine).items() if k not in ("web_session", "web_throttle")} == \
        {k: v for k, v in before.items() if k not in ("web_session", "web_throttle")}
    lots = text_of(planner.get("/lots").text)
    assert all(word in lots for word in ("有效", "已用尽", "已过期", "已注销", "已被替代")) and "exhausted" not in lots
    planner.get("/lang/en?next=/lots")
    r = planner.post("/plans", data={"csrf_token": csrf(planner), "time_limit": "abc", "key": "web-bad-2"})
    assert r.status_code == 422 and "the request is not valid (time_limit): " in text_of(r.text)


def _marked_cells(html: str) -> set[tuple[str, str]]:
    """(row, column) of each cell the preview marks, from the rows of table#preview."""
    table = html.split('id="preview"')[1].split("</table>")[0]
    marked = set()
    for row, cells in re.findall(r'<tr data-row="(\d+)">(.*?)</tr>', table, re.S):
        for cell in re.findall(r"<td[^>]*>", cells):
            if "bad" in cell:
                column = re.search(r'data-column="([^"]*)"', cell)
                marked.add((row, column.group(1) if column else "#"))
                assert 'title="' in cell and 'title=""' not in cell, cell  # the message is on the cell
    return marked


def test_a_refused_import_previews_its_rows_with_each_problem_cell_marked(ws, tmp_path):
    import openpyxl
    engine, app = ws
    c = login(app, "clerk")
    token = csrf(c)
    rows = [f"P-V{i},项目{i},JT-YT,chemical,COD,1.0,t/a,1,2027-06-30,false," for i in range(1, 251)]  # lines 2-251
    rows[3] = rows[3].replace(",1.0,", ",abc,")                           # line 5: increment
    rows[238] = rows[238].replace("JT-YT", "NOWHERE")                     # line 240: zone
    rows[244] = rows[244].replace(",1.0,", ",<script>alert(1)</script>,")  # line 246: increment, markup in it
    bad = (PROJECT_HEADER + "\n" + "\n".join(rows) + "\n").encode()
    before = snapshot(engine)
    r = c.post("/import/projects", data={"csrf_token": token}, files={"file": ("bad.csv", bad, "text/csv")})
    assert r.status_code == 422 and snapshot(engine) == before
    listed = set(re.findall(r'<tr class="problem" data-row="(\d+)" data-column="([^"]*)"', r.text))
    assert listed == {("5", "increment"), ("240", "zone"), ("246", "increment")}
    assert _marked_cells(r.text) == listed  # the right cell of the right row, and no other
    shown = re.findall(r'<tr data-row="(\d+)">', r.text.split('id="preview"')[1])
    assert shown == [str(n) for n in range(2, 202)] + ["240", "246"]  # the first 200 rows and the rows with problems
    left_out = re.search(r'id="preview-left-out">([^<]*)<', r.text).group(1)
    assert re.findall(r"\d+", left_out) == ["250", "48", "200", "1000"]  # of 250, 48 not shown (Chinese: the default)
    english = c.post("/import/projects", data={"csrf_token": token}, headers={"Accept-Language": "en"},
                     files={"file": ("bad.csv", bad, "text/csv")}).text
    assert "48 of the 250 rows are not shown" in english
    assert "<script>alert(1)</script>" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    cell = re.search(r'<tr data-row="5">.*?<td data-column="increment" class="bad" title="([^"]+)">abc</td>', r.text)
    assert cell and cell.group(1) in r.text.split('id="problems"')[1].split("</table>")[0]  # the list's message
    # a workbook with a title row above its (Chinese) header: the sheet's own row numbers and headers
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["2026年新增项目"])
    sheet.append(["项目编号", "项目名称", "区域", "污染物", "新增排放量", "单位"])
    sheet.append(["P-W1", "甲", "JT-YT", "COD", 1.0, "t/a"])            # row 3
    sheet.append(["P-W2", "<b>乙</b>", "JT-YT", "XYZ", 2.0, "t/a"])     # row 4: pollutant
    sheet.append(["P-W3", "丙", "JT-YT", "COD", 3.0, "t/a"])            # row 5
    book.save(tmp_path / "p.xlsx")
    xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    r = c.post("/import/projects", data={"csrf_token": token},
               files={"file": ("p.xlsx", (tmp_path / "p.xlsx").read_bytes(), xlsx)})
    assert r.status_code == 422
    listed = set(re.findall(r'<tr class="problem" data-row="(\d+)" data-column="([^"]*)"', r.text))
    assert listed == {("4", "pollutant")} and _marked_cells(r.text) == listed
    header = r.text.split('id="preview"')[1].split("</tr>")[0]
    assert re.findall(r"<th>([^<]*)</th>", header)[1:] == ["项目编号", "项目名称", "区域", "污染物", "新增排放量", "单位"]
    assert re.findall(r'<tr data-row="(\d+)">', r.text.split('id="preview"')[1]) == ["3", "4", "5"]
    assert "&lt;b&gt;乙&lt;/b&gt;" in r.text and 'id="preview-left-out"' not in r.text
    planner = login(app, "planner")  # tallies too: two problems on one row, each on its cell, both listed
    r = planner.post("/import/tallies", data={"csrf_token": csrf(planner)},
                     files={"file": ("bad-tallies.csv", (DATA / "bad-tallies.csv").read_bytes(), "text/csv")})
    assert r.status_code == 422
    listed = set(re.findall(r'<tr class="problem" data-row="(\d+)" data-column="([^"]*)"', r.text))
    assert {("2", "post"), ("3", "effective_date"), ("3", "post")} <= listed and _marked_cells(r.text) == listed


def test_a_file_refused_as_a_whole_has_no_preview(ws):
    engine, app = ws
    c = login(app, "clerk")
    r = c.post("/import/projects", data={"csrf_token": csrf(c)},
               files={"file": ("bad.csv", b"project_id,nonsense\nP-1,x\n", "text/csv")})
    assert r.status_code == 422 and 'id="problems"' in r.text and 'id="preview"' not in r.text


def test_a_second_outlook_view_at_the_same_ledger_state_is_not_solved_again(ws, monkeypatch):
    from quota.ledger import operations
    from quota.planning import milp
    engine, app = ws
    solves = []
    real = milp.solve

    def counted(*args, **kwargs):
        solves.append(kwargs.get("time_limit"))
        return real(*args, **kwargs)

    monkeypatch.setattr(milp, "solve", counted)
    planner = login(app, "planner")
    first = planner.get("/outlook?years=2")
    assert first.status_code == 200 and solves == [5.0]  # one solve for the whole horizon, at the page's limit
    again = planner.get("/outlook?years=2")
    assert again.status_code == 200 and solves == [5.0] and again.text == first.text  # from the cache
    assert login(app, "clerk").get("/outlook?years=2").status_code == 403 and len(solves) == 1
    assert planner.get("/outlook?years=3").status_code == 200 and len(solves) == 2  # another view: solved
    assert planner.get("/outlook?years=2&as_of=2026-06-01").status_code == 200 and len(solves) == 3
    operations.reserve(engine, "P2026-01", actor="tester")  # a write moves the ledger's head: solved anew
    after = planner.get("/outlook?years=2")
    assert after.status_code == 200 and len(solves) == 4
    assert planner.get("/outlook?years=2").text == after.text and len(solves) == 4


def test_the_preview_of_a_file_with_a_problem_on_every_row_stays_bounded(ws):
    """Every row of a large file refused: every problem is listed, but the preview shows the first 200 rows and
    the first 1,000 rows with a problem below them, not every row of the file (a 50 MB file of bad rows made a
    page of hundreds of megabytes)."""
    from quota.intake import tables
    engine, app = ws
    c = login(app, "clerk")
    n = tables.PREVIEW_ROWS + tables.PREVIEW_MARKED + 100
    rows = [f"P-B{i},项目{i},JT-YT,chemical,COD,abc,t/a,1,2027-06-30,false," for i in range(1, n + 1)]  # lines 2..
    r = c.post("/import/projects", data={"csrf_token": csrf(c)}, headers={"Accept-Language": "en"},
               files={"file": ("bad.csv", (PROJECT_HEADER + "\n" + "\n".join(rows) + "\n").encode(), "text/csv")})
    assert r.status_code == 422 and r.text.count('<tr class="problem"') == n  # the list: every problem
    shown = re.findall(r'<tr data-row="(\d+)">', r.text.split('id="preview"')[1])
    assert shown == [str(line) for line in range(2, n + 2 - 100)]  # lines 2.. of the first 1,200 rows
    assert "100 of the 1300 rows are not shown (shown: the first 200, and below them the first 1000 rows" in r.text


def test_an_outlook_the_time_limit_cut_short_is_not_kept(ws, monkeypatch):
    """A solve stopped by its time limit (status feasible: the best found so far, on a busy server) is shown but
    not kept: the next view solves again (a proved answer is then kept), rather than the cut-short one being
    shown until the next write."""
    import dataclasses
    from quota.planning import milp, outlook
    engine, app = ws
    solves, real, cut = [], milp.solve, [True]

    def timed_out(*args, **kwargs):
        sol, *rest = real(*args, **kwargs)
        solves.append(sol.status)
        return (dataclasses.replace(sol, status="feasible") if cut[0] else sol, *rest)

    monkeypatch.setattr(milp, "solve", timed_out)
    planner = login(app, "planner")
    assert planner.get("/outlook?years=2").status_code == 200 and len(solves) == 1
    assert planner.get("/outlook?years=2").status_code == 200 and len(solves) == 2  # solved again
    cut[0] = False
    assert planner.get("/outlook?years=2").status_code == 200 and len(solves) == 3
    assert planner.get("/outlook?years=2").status_code == 200 and len(solves) == 3  # proved: kept
    assert outlook.settled({"plan": {"status": "optimal"}}) and not outlook.settled({"plan": {"status": "feasible"}})
