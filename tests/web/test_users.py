"""Users of the web workspace: the library (quota.store.users) and `quota user ...`, on both engines."""
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.store import users
from quota.errors import NotFound, Refused
from tests.conftest import DATA, ENGINES

runner = CliRunner()
PASSWORD = "correct horse battery"


def cli(url, *args, input=None):
    return runner.invoke(app, ["--db", url, *args], input=input)


@pytest.fixture
def url(db_url):
    assert cli(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    return db_url


def test_there_is_no_default_account(engine):
    assert users.list_users(engine) == {"users": []}
    for name in ("admin", "root", "quota", "clerk"):
        for password in ("admin", "password", "quota", ""):
            assert users.authenticate(engine, name, password).user is None


def test_user_add_list_disable_through_the_cli(url):
    r = cli(url, "user", "add", "Wang.Li", "--role", "clerk", "--password-stdin", input=PASSWORD + "\n")
    assert r.exit_code == 0, r.output
    assert "wang.li" in r.output  # names are kept in one form: lower case
    r = cli(url, "user", "add", "zhao", "--role", "auditor", input=f"{PASSWORD}\n{PASSWORD}\n")  # the prompt, twice
    assert r.exit_code == 0, r.output
    listed = json.loads(cli(url, "user", "list", "--json").stdout)["users"]
    assert [(u["name"], u["role"], u["disabled_at"]) for u in listed] == [("wang.li", "clerk", None),
                                                                          ("zhao", "auditor", None)]
    assert PASSWORD not in cli(url, "user", "list", "--json").stdout
    r = cli(url, "user", "disable", "WANG.LI")
    assert r.exit_code == 0, r.output
    listed = json.loads(cli(url, "user", "list", "--json").stdout)["users"]
    assert listed[0]["disabled_at"] is not None and listed[1]["disabled_at"] is None


@pytest.mark.parametrize("args, stdin, code", [
    (["nobody", "--role", "boss"], PASSWORD, "bad_role"),
    (["nobody", "--role", "clerk"], "short", "weak_password"),
    (["no body", "--role", "clerk"], PASSWORD, "bad_username"),
    (["<script>", "--role", "clerk"], PASSWORD, "bad_username"),
])
def test_bad_users_are_refused_and_nothing_is_written(url, args, stdin, code):
    r = cli(url, "user", "add", *args, "--password-stdin", "--json", input=stdin + "\n")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["error"]["code"] == code
    assert json.loads(cli(url, "user", "list", "--json").stdout) == {"users": []}


def test_a_name_is_taken_once_even_when_disabled(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    users.disable_user(engine, "wang")
    with pytest.raises(Refused) as exc:
        users.add_user(engine, "WANG", "admin", PASSWORD)
    assert exc.value.code == "user_exists"
    with pytest.raises(NotFound):
        users.disable_user(engine, "li")


@pytest.mark.default_argon2
def test_passwords_are_stored_as_argon2_hashes(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    from sqlalchemy import text
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT password_hash FROM web_user")).scalar_one()
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$") and PASSWORD not in stored  # the default costs
    assert users.authenticate(engine, "wang", PASSWORD).user == users.User("wang", "clerk")
    assert users.authenticate(engine, " Wang ", PASSWORD).user.name == "wang"
    assert users.authenticate(engine, "wang", PASSWORD + "x").user is None


def test_failed_logins_are_slowed_down_then_locked_out_then_let_in_again(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    delays = [users.authenticate(engine, "wang", "guess", now) for _ in range(users.LOCK_AFTER - 1)]
    assert [d.reason for d in delays] == ["bad_credentials"] * (users.LOCK_AFTER - 1)
    assert [d.delay_s for d in delays[:users.SLOW_AFTER - 1]] == [0.0] * (users.SLOW_AFTER - 1)
    slowed = [d.delay_s for d in delays[users.SLOW_AFTER - 1:]]
    assert slowed[0] > 0 and slowed == sorted(slowed) and max(slowed) <= users.MAX_DELAY_S
    locked = users.authenticate(engine, "wang", "guess", now)
    assert locked.reason == "locked" and locked.user is None
    # while locked, even the right password is refused
    assert users.authenticate(engine, "wang", PASSWORD, now + dt.timedelta(minutes=5)).reason == "locked"
    later = now + dt.timedelta(minutes=users.LOCK_MINUTES + 1)
    assert users.authenticate(engine, "wang", PASSWORD, later).user.name == "wang"
    # success reset the count: one more failure is not slowed
    assert users.authenticate(engine, "wang", "guess", later).delay_s == 0.0


def test_a_disabled_user_cannot_sign_in_and_loses_tokens(engine):
    users.add_user(engine, "wang", "clerk", PASSWORD)
    token = users.new_token(engine, "wang")["token"]
    assert users.user_for_token(engine, token) == users.User("wang", "clerk")
    assert users.user_for_token(engine, token + "x") is None
    sid = users.open_session(engine, "wang")
    assert users.session_user(engine, sid) == users.User("wang", "clerk")  # what the app asks of each request
    users.disable_user(engine, "wang")
    assert users.authenticate(engine, "wang", PASSWORD).reason == "disabled"
    assert users.user_for_token(engine, token) is None
    assert users.session_user(engine, sid) is None
    # a session row left behind (say, opened while the disable was committing) is still no session
    assert users.session_user(engine, users.open_session(engine, "wang")) is None
    assert [(u["name"], u["disabled_at"] is not None) for u in users.list_users(engine)["users"]] == [("wang", True)]
    with pytest.raises(Refused):
        users.new_token(engine, "wang")


def test_tokens_are_stored_hashed_and_printed_once(url):
    assert cli(url, "user", "add", "wang", "--role", "clerk", "--password-stdin", input=PASSWORD).exit_code == 0
    r = cli(url, "user", "token", "wang")
    assert r.exit_code == 0
    token = r.stdout.strip()
    assert token.startswith("qt_") and len(token) > 40
    from quota.store import db
    from sqlalchemy import text
    engine = db.make_engine(url)
    with engine.connect() as conn:
        assert token not in str(conn.execute(text("SELECT * FROM web_token")).all())
    assert users.user_for_token(engine, token).name == "wang"
    assert json.loads(cli(url, "user", "list", "--json").stdout)["users"][0]["tokens"] == 1
    engine.dispose()


def test_the_session_secret_is_made_once_and_kept(engine):
    first = users.session_secret(engine)
    assert len(first) == 64 and users.session_secret(engine) == first


def test_the_role_matrix_is_data_and_unknown_actions_are_refused():
    assert set().union(*users.ACTIONS.values()) == set(users.ROLES)
    assert not users.allowed("admin", "no_such_action") and not users.allowed(None, "read_balance")
    assert users.allowed("clerk", "reserve") and not users.allowed("auditor", "reserve")
    writes = {"import_projects", "reserve", "approve", "release", "cancel", "import_tallies", "run_plan",
              "apply_plan", "manage_users", "load_rules", "revoke", "expire"}
    assert not any(users.allowed("auditor", w) for w in writes)  # the auditor writes nothing


def test_serve_refuses_a_database_without_the_schema_before_listening(db_url):
    r = cli(db_url, "serve", "--port", "1")
    assert r.exit_code == 1 and "quota init" in r.output
    r = runner.invoke(app, ["serve", "--db", db_url, "--port", "1"])  # --db after the command too
    assert r.exit_code == 1 and "quota init" in r.output


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_database_roles_cannot_read_password_hashes_tokens_or_the_session_secret(engine):
    """`quota db roles` (run after migration 0014, and roles made before it, upgraded through it): the least-privilege
    roles read the ledger but none of the web tables."""
    from quota.store import roles
    from tests.integration.test_roles import as_role
    users.add_user(engine, "wang", "clerk", PASSWORD)
    users.session_secret(engine)
    roles.create_roles(engine)
    for role in roles.ROLES:
        other = as_role(engine, role)
        with other.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM rulebook").scalar() == 1  # reads the ledger
        for table in roles.WEB_TABLES:
            with other.connect() as conn, pytest.raises(Exception, match="permission denied"):
                conn.exec_driver_sql(f"SELECT * FROM {table}").all()
        other.dispose()
    from alembic import command
    from quota.store import migrate
    with engine.begin() as conn:  # roles granted before 0014 (with default privileges): the upgrade revokes
        command.downgrade(migrate._config(conn), "0012")
    roles.create_roles(engine)
    migrate.upgrade(engine)
    clerk = as_role(engine, "quota_clerk")
    with clerk.connect() as conn, pytest.raises(Exception, match="permission denied"):
        conn.exec_driver_sql("SELECT * FROM web_user").all()
    clerk.dispose()


def test_user_sessions_lists_the_live_sessions_as_the_library_does(url):
    from quota.store import db
    engine = db.make_engine(url)
    assert cli(url, "user", "add", "wang", "--role", "clerk", "--password-stdin", input=PASSWORD).exit_code == 0
    assert cli(url, "user", "add", "li", "--role", "clerk", "--password-stdin", input=PASSWORD).exit_code == 0
    now = dt.datetime.now(dt.timezone.utc)
    users.open_session(engine, "wang", "10.0.0.1", "[bold]Firefox[/bold]", now - dt.timedelta(hours=2))
    users.open_session(engine, "wang", "10.0.0.2", "Chrome", now - dt.timedelta(minutes=5))
    stale = users.open_session(engine, "wang", "10.0.0.3", "Old", now - dt.timedelta(hours=users.SESSION_HOURS + 1))
    users.open_session(engine, "li", "10.0.0.9", "Edge")  # another user's: not listed
    listed = users.list_sessions(engine, "wang")
    assert users.session_user(engine, stale) is None
    assert [(s["client"], s["agent"]) for s in listed["sessions"]] == [("10.0.0.1", "[bold]Firefox[/bold]"),
                                                                       ("10.0.0.2", "Chrome")]
    for s in listed["sessions"]:
        made = dt.datetime.fromisoformat(s["created_at"].replace("Z", "+00:00"))
        assert s["expires_at"] == (made + dt.timedelta(hours=users.SESSION_HOURS)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    r = cli(url, "user", "sessions", "WANG", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == listed
    r = cli(url, "user", "sessions", "wang")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.stdout.splitlines() if "10.0.0." in line]
    assert len(lines) == 2 and "10.0.0.3" not in r.stdout and "10.0.0.9" not in r.stdout
    for line, s in zip(lines, listed["sessions"]):
        assert s["id"] in line and s["client"] in line and s["expires_at"][:19] in line
    assert "[bold]Firefox[/bold]" in r.stdout  # a browser's name is printed as it is, not read as markup
    assert "Expires" in r.stdout and "到期" in cli(url, "--lang", "zh", "user", "sessions", "wang").stdout
    r = cli(url, "user", "sessions", "nobody")
    assert r.exit_code == 1 and "no user 'nobody'" in r.output
    r = cli(url, "--lang", "zh", "user", "sessions", "nobody")
    assert r.exit_code == 1 and "没有用户 'nobody'" in r.output
    r = runner.invoke(app, ["--db", url, "user", "sessions", "nobody"], env={"QUOTA_LANG": "zh"})
    assert r.exit_code == 1 and "没有用户 'nobody'" in r.output
    r = cli(url, "user", "sessions", "nobody", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"] == {
        "code": "not_found", "message": "no user 'nobody'", "what": "user", "value": "nobody"}
    with pytest.raises(NotFound):
        users.list_sessions(engine, "nobody")
    engine.dispose()
