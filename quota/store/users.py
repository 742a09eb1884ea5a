"""People of the web workspace: users with a role, Argon2 password hashes, login throttling, API tokens, the
role matrix (which role may do what), and the workspace's own settings (the session secret).

Sessions are kept on the server (web_session, by the SHA-256 of the cookie's random id), so a user can end
one of theirs or all of them, and a password change or reset ends the others. Failed sign-ins are counted
per account and per client address (web_throttle), both shared by every server worker.

The role matrix is data: ACTIONS maps every action a front end offers to the roles that may take it, and
`allowed(role, action)` is the one check. Users are never deleted (their names stay on the ledger as
actors); `disable_user` shuts them out, sessions and tokens included.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
import unicodedata
from dataclasses import dataclass
from typing import Sequence

from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from quota.errors import NotFound, Refused
from quota.ledger.posting import now_iso
from quota.store import db

ROLES = ("clerk", "planner", "auditor", "admin")
_READERS = frozenset(ROLES)  # every role reads balances, lots, projects and source statements
_OVERSIGHT = frozenset({"planner", "auditor", "admin"})

# action -> the roles that may take it (the README's role table; admin reads everything, writes only its own)
ACTIONS: dict[str, frozenset[str]] = {
    "read_balance": _READERS,
    "read_lots": _READERS,
    "read_projects": _READERS,
    "read_statement": _READERS,
    "import_projects": frozenset({"clerk"}),
    "reserve": frozenset({"clerk"}),
    "approve": frozenset({"clerk"}),
    "release": frozenset({"clerk"}),
    "cancel": frozenset({"clerk"}),
    "import_tallies": frozenset({"planner"}),
    "read_plans": _OVERSIGHT,
    "run_plan": frozenset({"planner"}),
    "apply_plan": frozenset({"planner"}),
    "read_history": frozenset({"auditor", "admin"}),
    "verify": frozenset({"auditor", "admin"}),
    "export": frozenset({"auditor", "admin"}),
    "own_account": _READERS,  # change one's own password, see and end one's own sessions (not a ledger write)
    "manage_users": frozenset({"admin"}),
    "load_rules": frozenset({"admin"}),
    "revoke": frozenset({"admin"}),
    "expire": frozenset({"admin"}),
}

MIN_PASSWORD = 10  # characters
SLOW_AFTER = 3  # failed logins in a row before each further attempt is slowed down
LOCK_AFTER = 10  # failed logins in a row before the account refuses every login for LOCK_MINUTES
LOCK_MINUTES = 15
MAX_DELAY_S = 8.0
ADDRESS_SLOW_AFTER = 5  # failed sign-ins from one client address (any names) before its answers are slowed down
ADDRESS_LOCK_AFTER = 30  # ... within LOCK_MINUTES, before that address is refused for LOCK_MINUTES
SESSION_HOURS = 12  # a session lasts a working day (the cookie's max-age says the same)
TOKEN_PREFIX = "qt_"
_HANDLE = re.compile(r"[0-9a-f]{12}")  # the public id of a session or token: the start of its SHA-256
_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass(frozen=True)
class User:
    name: str
    role: str
    disabled: bool = False


@dataclass(frozen=True)
class Login:
    """The outcome of a login attempt: `user` when it succeeded; else `reason` (bad_credentials, locked,
    disabled) and `delay_s`, how long the front end should wait before answering (slowing guessing down)."""
    user: User | None
    reason: str = "ok"
    delay_s: float = 0.0
    locked_until: str | None = None


def allowed(role: str | None, action: str) -> bool:
    """May a user of `role` take `action`? Unknown actions are refused (a front end's typo shuts the door)."""
    return role is not None and role in ACTIONS.get(action, ())


def username(name: object) -> str:
    """A login name in its one form: NFKC, trimmed, lower case, letters a-z, digits and . _ - (it is recorded
    as the actor of every transaction the user posts)."""
    value = unicodedata.normalize("NFKC", str(name)).strip().lower()
    if not _NAME.fullmatch(value):
        raise Refused("bad_username", name=str(name))
    return value


def _role(role: str) -> str:
    value = str(role).strip().lower()
    if value not in ROLES:
        raise Refused("bad_role", role=str(role), known=list(ROLES))
    return value


ARGON2: dict = {}  # PasswordHasher parameters; empty: argon2-cffi's defaults (RFC 9106 low-memory profile)


def _hasher():
    from argon2 import PasswordHasher  # imported by the commands that need it only
    return PasswordHasher(**ARGON2)


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Refused("weak_password", length=len(password), min=MIN_PASSWORD)
    return _hasher().hash(password)


def add_user(engine: Engine, name: str, role: str, password: str) -> dict:
    """Create a user; refused when the name exists (even disabled), the role is unknown or the password short."""
    name, role = username(name), _role(role)
    digest = hash_password(password)

    def work(conn) -> dict:
        if conn.execute(text("SELECT 1 FROM web_user WHERE name = :n"), {"n": name}).first():
            raise Refused("user_exists", name=name)
        conn.execute(text("INSERT INTO web_user (name, role, password_hash, created_at, failed_logins) "
                          "VALUES (:n, :r, :h, :t, 0)"), {"n": name, "r": role, "h": digest, "t": now_iso()})
        return {"name": name, "role": role}

    return db.run_write(engine, work, lock=False, attempts=1)


def list_users(engine: Engine) -> dict:
    """{"users": [{name, role, created_at, disabled_at, tokens}]}, by name; never a hash."""
    with db.reading(engine) as conn:
        rows = conn.execute(text(
            "SELECT u.name, u.role, u.created_at, u.disabled_at, (SELECT COUNT(*) FROM web_token t "
            "WHERE t.name = u.name) FROM web_user u ORDER BY u.name")).all()
    return {"users": [{"name": r[0], "role": r[1], "created_at": r[2], "disabled_at": r[3], "tokens": int(r[4])}
                      for r in rows]}


def disable_user(engine: Engine, name: str) -> dict:
    """Shut a user out for good: logins, open sessions and API tokens stop working (the tokens are dropped)."""
    name = username(name)

    def work(conn) -> dict:
        row = conn.execute(text("SELECT disabled_at FROM web_user WHERE name = :n"), {"n": name}).first()
        if row is None:
            raise NotFound(what="user", value=name)
        when = row[0] or now_iso()
        conn.execute(text("UPDATE web_user SET disabled_at = :t WHERE name = :n"), {"t": when, "n": name})
        conn.execute(text("DELETE FROM web_token WHERE name = :n"), {"n": name})
        conn.execute(text("DELETE FROM web_session WHERE name = :n"), {"n": name})
        return {"name": name, "disabled_at": when}

    return db.run_write(engine, work, lock=False, attempts=1)


_DUMMY: list[str] = []  # a hash to verify against for unknown names, so they take as long as known ones


def _stamp(when: dt.datetime) -> str:
    """A UTC time in the booking-time form (now_iso): such strings compare in time order."""
    return when.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _live_since(now: dt.datetime) -> str:
    """The oldest sign-in time (a _stamp) of a session still live at `now`: it lasts SESSION_HOURS."""
    return _stamp(now - dt.timedelta(hours=SESSION_HOURS))


def _client(client: str | None) -> str | None:
    value = str(client or "").strip()[:100]
    return value or None


def _address_lock(engine: Engine, client: str, now: dt.datetime) -> str | None:
    with db.reading(engine) as conn:
        until = conn.execute(text("SELECT locked_until FROM web_throttle WHERE client = :c"), {"c": client}).scalar()
    return until if until and until > _stamp(now) else None


def _address_failed(engine: Engine, client: str, now: dt.datetime) -> tuple[float, str | None]:
    """Count a failed sign-in from `client` in the current window (LOCK_MINUTES from its first failure):
    (the delay its answers get, the time its lock ends when this failure locked it)."""
    stamp = _stamp(now)
    window = _stamp(now - dt.timedelta(minutes=LOCK_MINUTES))

    def work(conn) -> tuple[int, str | None]:
        row = conn.execute(text("SELECT failures, window_start FROM web_throttle WHERE client = :c"),
                           {"c": client}).first()
        n = 1 if row is None or row[1] < window else int(row[0]) + 1
        start = stamp if row is None or row[1] < window else row[1]
        until = _stamp(now + dt.timedelta(minutes=LOCK_MINUTES)) if n >= ADDRESS_LOCK_AFTER else None
        params = {"c": client, "f": 0 if until else n, "w": stamp if until else start, "u": until}
        if row is None:
            conn.execute(text("INSERT INTO web_throttle (client, failures, window_start, locked_until) "
                              "VALUES (:c, :f, :w, :u)"), params)
        else:
            conn.execute(text("UPDATE web_throttle SET failures = :f, window_start = :w, locked_until = :u "
                              "WHERE client = :c"), params)
        return n, until

    n, until = db.run_write(engine, work, lock=False)
    if until:
        return MAX_DELAY_S, until
    return (min(2.0 ** (n - ADDRESS_SLOW_AFTER), MAX_DELAY_S) if n >= ADDRESS_SLOW_AFTER else 0.0), None


def authenticate(engine: Engine, name: str, password: str, now: dt.datetime | None = None,
                 client: str | None = None) -> Login:
    """Check a login. Failed attempts are counted on the user and on the client address (both shared by every
    server worker). On the user, in a row: after SLOW_AFTER the answer is delayed (delay_s doubles, at most
    MAX_DELAY_S), after LOCK_AFTER the account refuses every login, the right password included, for
    LOCK_MINUTES; success resets the count. On the address (any name, known or not, within LOCK_MINUTES):
    after ADDRESS_SLOW_AFTER the answers are delayed, after ADDRESS_LOCK_AFTER the address is refused
    (reason "address_locked") for LOCK_MINUTES; a success does not reset it (a guesser with an account of
    their own cannot wipe the count)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    client = _client(client)
    if client:
        until = _address_lock(engine, client, now)
        if until:
            return Login(None, "address_locked", MAX_DELAY_S, until)
    login = _check_account(engine, name, password, now)
    if login.user is not None or login.reason == "disabled" or not client:
        return login
    delay, until = _address_failed(engine, client, now)
    if until:
        return Login(None, "address_locked", MAX_DELAY_S, until)
    return Login(None, login.reason, max(delay, login.delay_s), login.locked_until)


def _check_account(engine: Engine, name: str, password: str, now: dt.datetime) -> Login:
    """The account's part of `authenticate` (the password, the account's count and lock-out)."""
    from argon2.exceptions import InvalidHashError, VerificationError
    try:
        name = username(name)
    except Refused:
        return Login(None, "bad_credentials")
    hasher = _hasher()

    def claim(conn):
        row = conn.execute(text("SELECT role, password_hash, disabled_at, failed_logins, locked_until FROM web_user "
                                "WHERE name = :n" + ("" if db.is_sqlite(conn) else " FOR UPDATE")), {"n": name}).first()
        if row is None:
            return None
        locked_until = row[4]
        if locked_until and dt.datetime.fromisoformat(locked_until) > now:
            return row, 0, locked_until
        n = int(row[3] or 0) + 1
        until = (now + dt.timedelta(minutes=LOCK_MINUTES)).isoformat() if n >= LOCK_AFTER else None
        conn.execute(text("UPDATE web_user SET failed_logins = :f, locked_until = :u WHERE name = :n"),
                     {"f": 0 if until else n, "u": until, "n": name})
        return row, n, until

    claimed = db.run_write(engine, claim, lock=False)
    if claimed is None:
        if not _DUMMY:
            _DUMMY.append(hasher.hash(secrets.token_hex(16)))
        try:
            hasher.verify(_DUMMY[0], password)
        except VerificationError:
            pass
        return Login(None, "bad_credentials")
    (role, digest, disabled_at, _, _), n, until = claimed
    if n == 0:  # locked before this attempt: the password is not even checked
        return Login(None, "locked", MAX_DELAY_S, until)
    try:
        good = hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        good = False
    if good:  # not a guess: the count (and a lock this attempt set) is undone
        db.run_write(engine, lambda conn: conn.execute(text(
            "UPDATE web_user SET failed_logins = 0, locked_until = NULL WHERE name = :n"), {"n": name}), lock=False)
        return Login(User(name, role)) if not disabled_at else Login(None, "disabled")
    if until:
        return Login(None, "locked", MAX_DELAY_S, until)
    delay = min(2.0 ** (n - SLOW_AFTER), MAX_DELAY_S) if n >= SLOW_AFTER else 0.0
    return Login(None, "bad_credentials", delay)


# --------------------------------------------------------------------------- passwords

def change_password(engine: Engine, name: str, old: str, new: str, repeat: str | None = None,
                    keep_session: str | None = None, client: str | None = None) -> dict:
    """A user changes their own password: the old one must be right (a wrong one counts as a failed sign-in,
    throttled and locked out alike), `repeat` (when given: a form's second field) must equal `new`; every
    other session of theirs ends (`keep_session`, the cookie id of the session asking, stays).
    {"name", "sessions_ended"}."""
    name = username(name)
    if repeat is not None and repeat != new:
        raise Refused("password_mismatch", name=name)
    digest = hash_password(new)
    login = authenticate(engine, name, old, client=client)
    if login.user is None or login.user.name != name:
        raise Refused("wrong_password", name=name, reason=login.reason)
    return _set_password(engine, name, digest, keep_session)


def reset_password(engine: Engine, name: str, new: str) -> dict:
    """An administrator sets a user's password (`quota user password NAME`, the admin page): the lock-out is
    lifted and every session of the user ends. {"name", "sessions_ended"}."""
    return _set_password(engine, username(name), hash_password(new), None)


def _set_password(engine: Engine, name: str, digest: str, keep_session: str | None) -> dict:
    def work(conn) -> dict:
        if conn.execute(text("SELECT 1 FROM web_user WHERE name = :n"), {"n": name}).first() is None:
            raise NotFound(what="user", value=name)
        conn.execute(text("UPDATE web_user SET password_hash = :h, failed_logins = 0, locked_until = NULL "
                          "WHERE name = :n"), {"h": digest, "n": name})
        ended = conn.execute(text("DELETE FROM web_session WHERE name = :n AND sid_hash <> :k"),
                             {"n": name, "k": _token_hash(keep_session) if keep_session else ""}).rowcount
        return {"name": name, "sessions_ended": int(ended)}

    return db.run_write(engine, work, lock=False, attempts=1)


# --------------------------------------------------------------------------- sessions

def open_session(engine: Engine, name: str, client: str | None = None, agent: str | None = None,
                 now: dt.datetime | None = None) -> str:
    """A new session of a signed-in user: returns its random id (for the signed cookie); the server keeps
    its SHA-256 with the time, client address and browser. Sessions older than SESSION_HOURS are dropped."""
    now = now or dt.datetime.now(dt.timezone.utc)
    sid = secrets.token_urlsafe(32)

    def work(conn) -> None:
        conn.execute(text("DELETE FROM web_session WHERE created_at < :c"),
                     {"c": _live_since(now)})
        # of an enabled user only: one disabled between its password check and this write gets no session
        conn.execute(text("INSERT INTO web_session (sid_hash, name, created_at, client, agent) "
                          "SELECT :h, name, :t, :c, :a FROM web_user WHERE name = :n AND disabled_at IS NULL"),
                     {"h": _token_hash(sid), "n": username(name), "t": _stamp(now), "c": _client(client) or "",
                      "a": str(agent or "")[:200]})

    db.run_write(engine, work, lock=False)
    return sid


def session_query(sid: str, now: dt.datetime | None = None) -> tuple[str, tuple] | None:
    """The one statement (`?` placeholders, parameters) that finds the enabled user of a live session, or None
    when `sid` cannot be one. Its row is read by `user_of`; `session_user` runs it, and the web's event loop
    runs the same statement on its own connections (quota/store/pgreads.py)."""
    if not sid or len(sid) > 100:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    return ("SELECT u.name, u.role FROM web_session s JOIN web_user u ON u.name = s.name "
            "WHERE s.sid_hash = ? AND s.created_at >= ? AND u.disabled_at IS NULL", (_token_hash(sid), _live_since(now)))


def user_of(row: Sequence | None) -> User | None:
    """The user a row of `session_query` or `token_query` names, or None for no row."""
    return User(row[0], row[1]) if row else None


def session_user(engine: Engine, sid: str, now: dt.datetime | None = None) -> User | None:
    """The enabled user of a live session, or None (ended, older than SESSION_HOURS, user disabled)."""
    query = session_query(sid, now)
    return user_of(db.read_one(engine, *query)) if query else None


def session_handle(sid: str) -> str:
    """The public id of a session (shown in lists; it does not let anyone use the session)."""
    return _token_hash(sid)[:12]


def list_sessions(engine: Engine, name: str, now: dt.datetime | None = None) -> dict:
    """The user's live sessions (those `session_user` would accept), oldest first: {"name", "sessions":
    [{id, created_at, expires_at, client, agent}]}. Sessions last SESSION_HOURS from sign-in, however busy, so
    `expires_at` follows from `created_at`; no "last seen" is kept (it would be a write on every request).
    NotFound for an unknown user."""
    name = username(name)
    now = now or dt.datetime.now(dt.timezone.utc)
    with db.reading(engine) as conn:
        user = conn.execute(text("SELECT disabled_at FROM web_user WHERE name = :n"), {"n": name}).first()
        if user is None:
            raise NotFound(what="user", value=name)
        rows = [] if user[0] is not None else conn.execute(  # a disabled user's sessions do not work
            text("SELECT sid_hash, created_at, client, agent FROM web_session WHERE name = :n "
                 "AND created_at >= :c ORDER BY created_at, sid_hash"),
            {"n": name, "c": _live_since(now)}).all()
    return {"name": name, "sessions": [
        {"id": r[0][:12], "created_at": r[1], "expires_at": _expiry(r[1]), "client": r[2], "agent": r[3]}
        for r in rows]}


def _expiry(created_at: str) -> str:
    """When a session made at `created_at` (a _stamp) stops being accepted."""
    made = dt.datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
    return _stamp(made + dt.timedelta(hours=SESSION_HOURS))


def end_sessions(engine: Engine, name: str, session_id: str | None = None) -> dict:
    """End one session of a user (by its id from list_sessions; NotFound when it is not theirs) or, without
    `session_id`, all of them (sign out everywhere). {"name", "sessions_ended"}."""
    name = username(name)
    if session_id is not None and not _HANDLE.fullmatch(session_id):
        raise NotFound(what="session", value=str(session_id)[:40])

    def work(conn) -> dict:
        if session_id is None:
            ended = conn.execute(text("DELETE FROM web_session WHERE name = :n"), {"n": name}).rowcount
        else:
            ended = conn.execute(text("DELETE FROM web_session WHERE name = :n AND sid_hash LIKE :p"),
                                 {"n": name, "p": session_id + "%"}).rowcount
            if not ended:
                raise NotFound(what="session", value=session_id)
        return {"name": name, "sessions_ended": int(ended)}

    return db.run_write(engine, work, lock=False, attempts=1)


def end_session(engine: Engine, sid: str) -> None:
    """Sign out: the session of this cookie id ends (nothing happens for an unknown id)."""
    if sid and len(sid) <= 100:
        db.run_write(engine, lambda conn: conn.execute(text("DELETE FROM web_session WHERE sid_hash = :h"),
                                                       {"h": _token_hash(sid)}), lock=False)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(engine: Engine, name: str, label: str | None = None) -> dict:
    """A new API token for an enabled user: {"name", "id", "label", "token"}. Only its SHA-256 is stored (the
    id is its first 12 hex digits); the token itself is shown this once (a 256-bit random value needs no
    slow hash). `label` says what it is for (a script, a machine)."""
    name = username(name)
    label = _label(label)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)

    def work(conn) -> dict:
        row = conn.execute(text("SELECT disabled_at FROM web_user WHERE name = :n"), {"n": name}).first()
        if row is None:
            raise NotFound(what="user", value=name)
        if row[0]:
            raise Refused("user_disabled", name=name)
        conn.execute(text("INSERT INTO web_token (token_hash, name, created_at, label) VALUES (:h, :n, :t, :l)"),
                     {"h": _token_hash(token), "n": name, "t": now_iso(), "l": label})
        return {"name": name, "id": _token_hash(token)[:12], "label": label, "token": token}

    return db.run_write(engine, work, lock=False, attempts=1)


def _label(label: str | None) -> str | None:
    """What a token is for: free text (no control characters), at most 100 characters; empty is none."""
    from quota import identity
    try:
        return identity.free_text(unicodedata.normalize("NFKC", str(label or "")), "label", max_len=100) or None
    except identity.BadId as exc:
        raise Refused("bad_text", what="label", value=exc.text, reason=exc.code, **exc.facts) from None


def list_tokens(engine: Engine, name: str | None = None) -> dict:
    """{"tokens": [{id, name, label, created_at}]}: every API token (or a user's), by user and age; never
    the token or its hash."""
    name = username(name) if name is not None else None
    with db.reading(engine) as conn:
        rows = conn.execute(text("SELECT token_hash, name, label, created_at FROM web_token "
                                 + ("WHERE name = :n " if name else "") + "ORDER BY name, created_at, token_hash"),
                            {"n": name}).all()
    return {"tokens": [{"id": r[0][:12], "name": r[1], "label": r[2], "created_at": r[3]} for r in rows]}


def revoke_token(engine: Engine, name: str, token_id: str) -> dict:
    """Revoke one API token of a user by its id (list_tokens): it stops working at once. {"name", "id"}."""
    name = username(name)
    if not _HANDLE.fullmatch(str(token_id)):
        raise NotFound(what="API token", value=str(token_id)[:40])

    def work(conn) -> dict:
        gone = conn.execute(text("DELETE FROM web_token WHERE name = :n AND token_hash LIKE :p"),
                            {"n": name, "p": token_id + "%"}).rowcount
        if not gone:
            raise NotFound(what="API token", value=token_id)
        return {"name": name, "id": token_id}

    return db.run_write(engine, work, lock=False, attempts=1)


def token_query(token: str) -> tuple[str, tuple] | None:
    """The one statement that finds the enabled user of an API token (read by `user_of`), or None when `token`
    cannot be one."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    return ("SELECT u.name, u.role FROM web_token t JOIN web_user u ON u.name = t.name "
            "WHERE t.token_hash = ? AND u.disabled_at IS NULL", (_token_hash(token),))


def user_for_token(engine: Engine, token: str) -> User | None:
    """The enabled user an API token belongs to, or None."""
    query = token_query(token)
    return user_of(db.read_one(engine, *query)) if query else None


# --------------------------------------------------------------------------- settings

def setting(engine: Engine, key: str) -> str | None:
    row = db.read_one(engine, "SELECT value FROM web_setting WHERE key = ?", (key,))
    return row[0] if row else None


def session_secret(engine: Engine) -> str:
    """The key that signs session cookies: made at the first start of the server and kept in the database (so
    every worker and every restart shares it, and it never sits in a source tree). Concurrent first starts
    agree: the first insert wins and the others read it."""
    found = setting(engine, "session_secret")
    if found:
        return found

    def work(conn) -> str:
        row = conn.execute(text("SELECT value FROM web_setting WHERE key = 'session_secret'")).scalar()
        if row:
            return row
        value = secrets.token_hex(32)
        conn.execute(text("INSERT INTO web_setting (key, value) VALUES ('session_secret', :v)"), {"v": value})
        return value

    try:
        return db.run_write(engine, work, lock=False)
    except IntegrityError:  # pragma: no cover - another worker won every retry
        return setting(engine, "session_secret") or ""
