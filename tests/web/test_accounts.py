"""Accounts of the web workspace, on both engines: passwords (changed by their owner with the old one, reset by
an administrator), sessions kept on the server (one ended, or all: sign out everywhere), API tokens listed and
revoked (CLI and admin page), failed sign-ins throttled per client address as well as per account."""
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app
from quota.errors import NotFound, Refused
from quota.store import users
from tests.conftest import snapshot
from tests.web.support import PASSWORD, client, csrf, csrf_of, login, make_app, prepare, text_of

runner = CliRunner()
NEW = "a new long password"
NOW = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)


@pytest.fixture
def ws(db_url):
    engine = prepare(db_url)
    yield engine, make_app(engine)
    engine.dispose()


def cli(url, *args, input=None):
    return runner.invoke(cli_app, ["--db", url, *args], input=input)


# --------------------------------------------------------------------------- the library

def test_sessions_are_kept_on_the_server_and_end_one_by_one_or_all(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    first = users.open_session(engine, "wang", "10.0.0.1", "Firefox", now=NOW)
    second = users.open_session(engine, "wang", "10.0.0.2", "Chromium", now=NOW + dt.timedelta(minutes=1))
    assert users.session_user(engine, first, now=NOW) == users.User("wang", "clerk")
    listed = users.list_sessions(engine, "wang", now=NOW)["sessions"]
    assert [(s["client"], s["agent"]) for s in listed] == [("10.0.0.1", "Firefox"), ("10.0.0.2", "Chromium")]
    assert [s["id"] for s in listed] == [users.session_handle(first), users.session_handle(second)]
    assert all(first not in str(s) and second not in str(s) for s in listed)  # the list never holds a session
    assert users.end_sessions(engine, "wang", users.session_handle(first)) == {"name": "wang", "sessions_ended": 1}
    assert users.session_user(engine, first, now=NOW) is None
    assert users.session_user(engine, second, now=NOW) is not None
    with pytest.raises(NotFound):
        users.end_sessions(engine, "wang", users.session_handle(first))  # already ended
    with pytest.raises(NotFound):
        users.end_sessions(engine, "wang", "'; DROP TABLE web_session; --")
    users.open_session(engine, "wang", now=NOW)
    assert users.end_sessions(engine, "wang")["sessions_ended"] == 2  # sign out everywhere
    assert users.list_sessions(engine, "wang", now=NOW)["sessions"] == []


def test_a_session_lasts_a_working_day_and_ends_with_a_disabled_user(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    sid = users.open_session(engine, "wang", now=NOW)
    assert users.session_user(engine, sid, now=NOW + dt.timedelta(hours=users.SESSION_HOURS - 1)) is not None
    assert users.session_user(engine, sid, now=NOW + dt.timedelta(hours=users.SESSION_HOURS + 1)) is None
    # listed while it lasts (and with its end), not after: the list is of the sessions that still work
    assert [s["expires_at"] for s in users.list_sessions(engine, "wang", now=NOW)["sessions"]] == [
        (NOW + dt.timedelta(hours=users.SESSION_HOURS)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    assert users.list_sessions(engine, "wang", now=NOW + dt.timedelta(hours=users.SESSION_HOURS + 1))["sessions"] == []
    users.disable_user(engine, "wang")
    assert users.session_user(engine, sid, now=NOW) is None
    assert users.list_sessions(engine, "wang", now=NOW)["sessions"] == []


def test_a_password_is_changed_with_the_old_one_and_other_sessions_end(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    mine = users.open_session(engine, "wang")
    other = users.open_session(engine, "wang")
    before = snapshot(engine)
    for old, new, repeat, code in ((PASSWORD + "x", NEW, NEW, "wrong_password"),
                                   (PASSWORD, NEW, NEW + "x", "password_mismatch"),
                                   (PASSWORD, "short", "short", "weak_password")):
        with pytest.raises(Refused) as exc:
            users.change_password(engine, "wang", old, new, repeat=repeat, keep_session=mine)
        assert exc.value.code == code
    after = snapshot(engine)
    assert {k: v for k, v in after.items() if k != "web_user"} == {k: v for k, v in before.items() if k != "web_user"}
    assert users.authenticate(engine, "wang", PASSWORD).user is not None  # unchanged
    result = users.change_password(engine, "wang", PASSWORD, NEW, repeat=NEW, keep_session=mine)
    assert result == {"name": "wang", "sessions_ended": 1}
    assert users.session_user(engine, mine) is not None and users.session_user(engine, other) is None
    assert users.authenticate(engine, "wang", PASSWORD).user is None
    assert users.authenticate(engine, "wang", NEW).user.name == "wang"


def test_a_wrong_old_password_counts_as_a_failed_sign_in(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    for _ in range(users.LOCK_AFTER):
        with pytest.raises(Refused):
            users.change_password(engine, "wang", "guess", NEW)
    with pytest.raises(Refused) as exc:  # locked: even the right old password is refused for a while
        users.change_password(engine, "wang", PASSWORD, NEW)
    assert exc.value.facts["reason"] == "locked"


def test_an_administrator_resets_a_password_lifting_the_lock_and_ending_sessions(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    sid = users.open_session(engine, "wang")
    for _ in range(users.LOCK_AFTER):
        users.authenticate(engine, "wang", "guess")
    assert users.authenticate(engine, "wang", PASSWORD).reason == "locked"
    assert users.reset_password(engine, "wang", NEW) == {"name": "wang", "sessions_ended": 1}
    assert users.session_user(engine, sid) is None
    assert users.authenticate(engine, "wang", NEW).user.name == "wang"
    with pytest.raises(NotFound):
        users.reset_password(engine, "li", NEW)
    with pytest.raises(Refused):
        users.reset_password(engine, "wang", "short")


def test_tokens_are_listed_without_the_token_and_revoked_one_by_one(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    users.add_user(engine, "li", "planner", PASSWORD)
    a = users.new_token(engine, "wang", "nightly export")
    b = users.new_token(engine, "wang")
    c = users.new_token(engine, "li", "  ")
    listed = users.list_tokens(engine)["tokens"]
    assert sorted((k["name"], k["label"] or "") for k in listed) == [("li", ""), ("wang", ""), ("wang", "nightly export")]
    assert all(t["token"] not in json.dumps(listed) for t in (a, b, c))
    assert {k["id"] for k in users.list_tokens(engine, "wang")["tokens"]} == {a["id"], b["id"]}
    with pytest.raises(NotFound):
        users.revoke_token(engine, "li", a["id"])  # not li's
    assert users.revoke_token(engine, "wang", a["id"]) == {"name": "wang", "id": a["id"]}
    assert users.user_for_token(engine, a["token"]) is None
    assert users.user_for_token(engine, b["token"]).name == "wang"
    with pytest.raises(Refused):
        users.new_token(engine, "wang", "bad\x00label")


def test_failed_sign_ins_from_one_address_are_slowed_then_refused_for_a_while(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    here, there = "203.0.113.7", "198.51.100.1"
    # a guesser spreads guesses over many names (unknown ones included): the account counts never lock
    results = [users.authenticate(engine, f"name{i}", "guess", NOW, client=here)
               for i in range(users.ADDRESS_LOCK_AFTER - 1)]
    assert [r.delay_s for r in results[:users.ADDRESS_SLOW_AFTER - 1]] == [0.0] * (users.ADDRESS_SLOW_AFTER - 1)
    slowed = [r.delay_s for r in results[users.ADDRESS_SLOW_AFTER - 1:]]
    assert slowed[0] > 0 and slowed == sorted(slowed) and max(slowed) <= users.MAX_DELAY_S
    locked = users.authenticate(engine, "nameX", "guess", NOW, client=here)
    assert locked.reason == "address_locked" and locked.user is None
    # the address is refused, the right password included; another address is not
    later = NOW + dt.timedelta(minutes=5)
    assert users.authenticate(engine, "wang", PASSWORD, later, client=here).reason == "address_locked"
    assert users.authenticate(engine, "wang", PASSWORD, later, client=there).user.name == "wang"
    free = NOW + dt.timedelta(minutes=users.LOCK_MINUTES + 1)
    assert users.authenticate(engine, "wang", PASSWORD, free, client=here).user.name == "wang"


def test_an_addresses_failures_are_forgotten_after_the_window(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    for i in range(users.ADDRESS_SLOW_AFTER):
        users.authenticate(engine, f"n{i}", "guess", NOW, client="203.0.113.7")
    assert users.authenticate(engine, "n", "guess", NOW, client="203.0.113.7").delay_s > 0
    later = NOW + dt.timedelta(minutes=users.LOCK_MINUTES + 1)
    assert users.authenticate(engine, "n", "guess", later, client="203.0.113.7").delay_s == 0.0


# --------------------------------------------------------------------------- the CLI

def test_the_cli_sets_passwords_lists_and_revokes_tokens_and_signs_users_out(ws, db_url):
    engine, _ = ws
    sid = users.open_session(engine, "clerk")
    r = cli(db_url, "user", "password", "clerk", "--password-stdin", input=NEW + "\n")
    assert r.exit_code == 0, r.output
    assert "1" in r.output and users.session_user(engine, sid) is None
    assert users.authenticate(engine, "clerk", NEW).user is not None
    r = cli(db_url, "user", "token", "clerk", "--label", "nightly", "--json")
    made = json.loads(r.stdout)
    listed = json.loads(cli(db_url, "user", "tokens", "clerk", "--json").stdout)["tokens"]
    assert [(k["id"], k["label"]) for k in listed] == [(made["id"], "nightly")]
    assert made["token"] not in cli(db_url, "user", "tokens").stdout
    r = cli(db_url, "user", "revoke-token", "clerk", made["id"])
    assert r.exit_code == 0 and users.user_for_token(engine, made["token"]) is None
    r = cli(db_url, "user", "revoke-token", "clerk", made["id"], "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "not_found"
    users.open_session(engine, "planner")
    users.open_session(engine, "planner")
    r = cli(db_url, "user", "signout", "planner", "--json")
    assert json.loads(r.stdout) == {"name": "planner", "sessions_ended": 2}


# --------------------------------------------------------------------------- the workspace

def test_my_account_lists_my_sessions_and_ends_one_or_all(ws):
    engine, app = ws
    here, there = login(app, "clerk"), login(app, "clerk")
    page = here.get("/account").text
    assert page.count("data-session=") == 2 and "当前会话" in page
    for s in users.list_sessions(engine, "clerk")["sessions"]:  # each row shows when that session stops working
        assert f'<td class="expires">{s["expires_at"][:19].replace("T", " ")}</td>' in page
    other = [s["id"] for s in users.list_sessions(engine, "clerk")["sessions"]
             if s["id"] != users.session_handle(_sid(here))][0]
    r = here.post(f"/account/sessions/{other}/end", data={"csrf_token": csrf(here)})
    assert r.status_code == 303 and r.headers["location"] == "/account"
    assert there.get("/").status_code == 303  # that session ended: back to the sign-in form
    assert here.get("/").status_code == 200
    there = login(app, "clerk")
    r = here.post("/account/signout-everywhere", data={"csrf_token": csrf(here)})
    assert r.status_code == 303 and r.headers["location"] == "/login"
    assert here.get("/").status_code == 303 and there.get("/").status_code == 303
    assert users.list_sessions(engine, "clerk")["sessions"] == []


def test_signing_out_ends_the_session_on_the_server(ws):
    engine, app = ws
    c = login(app, "clerk")
    cookie = c.cookies.get("quota_session")
    c.post("/logout", data={"csrf_token": csrf(c)})
    assert users.list_sessions(engine, "clerk")["sessions"] == []
    replay = client(app)
    replay.cookies.set("quota_session", cookie)  # a copy of the cookie taken before signing out
    assert replay.get("/").status_code == 303


def _sid(c):
    from itsdangerous import URLSafeTimedSerializer
    return URLSafeTimedSerializer(users.session_secret(c.app.state.engine), salt="quota-session").loads(
        c.cookies.get("quota_session"))["s"]


def test_changing_my_password_keeps_this_session_and_ends_the_others(ws):
    engine, app = ws
    here, there = login(app, "auditor"), login(app, "auditor")
    r = here.post("/account/password", data={"old": "wrong password", "new": NEW, "repeat": NEW,
                                             "csrf_token": csrf(here)})
    assert r.status_code == 409 and "当前密码错误" in text_of(r.text)
    r = here.post("/account/password", data={"old": PASSWORD, "new": NEW, "repeat": NEW, "csrf_token": csrf(here)})
    assert r.status_code == 303
    assert "已结束其他 1 个会话" in text_of(here.get("/account").text)
    assert here.get("/").status_code == 200 and there.get("/").status_code == 303
    assert login(app, "auditor", NEW)


def test_the_admin_page_resets_passwords_signs_users_out_and_revokes_tokens(ws):
    engine, app = ws
    admin, clerk = login(app, "admin"), login(app, "clerk")
    r = admin.post("/admin/users/clerk/token", data={"label": "<b>nightly</b>", "csrf_token": csrf(admin)})
    assert r.status_code == 200
    token = users.list_tokens(engine, "clerk")["tokens"][0]
    page = admin.get("/admin").text
    assert f'data-token="{token["id"]}"' in page and "&lt;b&gt;nightly&lt;/b&gt;" in page
    secret = r.text.split("<code>")[1].split("</code>")[0]
    assert client(app).get("/api/v1/balance", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    r = admin.post(f"/admin/users/clerk/tokens/{token['id']}/revoke", data={"csrf_token": csrf(admin)})
    assert r.status_code == 303
    assert client(app).get("/api/v1/balance", headers={"Authorization": f"Bearer {secret}"}).status_code == 401
    r = admin.post("/admin/users/clerk/password", data={"password": NEW, "csrf_token": csrf(admin)})
    assert r.status_code == 303 and clerk.get("/").status_code == 303  # the clerk's session ended
    clerk = login(app, "clerk", NEW)
    r = admin.post("/admin/users/clerk/signout", data={"csrf_token": csrf(admin)})
    assert r.status_code == 303 and clerk.get("/").status_code == 303
    assert admin.get("/").status_code == 200


def test_failed_sign_ins_from_one_address_are_refused_for_a_while_in_the_browser(ws, monkeypatch):
    engine, _ = ws
    from web import app as webapp, pages
    app = webapp.create_app(engine, throttle=True)

    async def no_sleep(seconds):
        pass
    monkeypatch.setattr(pages.asyncio, "sleep", no_sleep)
    c = client(app)
    token = csrf_of(c.get("/login").text)
    codes = [c.post("/login", data={"username": f"guess{i}", "password": "guess", "csrf_token": token}).status_code
             for i in range(users.ADDRESS_LOCK_AFTER)]
    assert codes == [401] * (users.ADDRESS_LOCK_AFTER - 1) + [429]
    r = c.post("/login", data={"username": "clerk", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 429 and "地址" in text_of(r.text)
