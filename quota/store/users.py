"""People of the web workspace: users with a role, Argon2 password hashes, login throttling, API tokens, the
role matrix (which role may do what), and the workspace's own settings (the session secret, the last
verification).

The role matrix is data: ACTIONS maps every action a front end offers to the roles that may take it, and
`allowed(role, action)` is the one check. Users are never deleted (their names stay on the ledger as
actors); `disable_user` shuts them out, sessions and tokens included.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass

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
TOKEN_PREFIX = "qt_"
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
        return {"name": name, "disabled_at": when}

    return db.run_write(engine, work, lock=False, attempts=1)


def get_user(engine: Engine, name: str) -> User | None:
    """The enabled user of that name, or None (a session of a disabled or unknown user is no session)."""
    row = db.read_one(engine, "SELECT name, role FROM web_user WHERE name = ? AND disabled_at IS NULL", (name,))
    return User(row[0], row[1]) if row else None


_DUMMY: list[str] = []  # a hash to verify against for unknown names, so they take as long as known ones


def authenticate(engine: Engine, name: str, password: str, now: dt.datetime | None = None) -> Login:
    """Check a login. Failed attempts in a row are counted on the user (shared by every server worker): after
    SLOW_AFTER the answer is delayed (delay_s doubles, at most MAX_DELAY_S), after LOCK_AFTER the account
    refuses every login, the right password included, for LOCK_MINUTES. Success resets the count."""
    from argon2.exceptions import InvalidHashError, VerificationError
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        name = username(name)
    except Refused:
        return Login(None, "bad_credentials")
    with db.reading(engine) as conn:
        row = conn.execute(text("SELECT role, password_hash, disabled_at, failed_logins, locked_until FROM web_user "
                                "WHERE name = :n"), {"n": name}).first()
    hasher = _hasher()
    if row is None:
        if not _DUMMY:
            _DUMMY.append(hasher.hash(secrets.token_hex(16)))
        try:
            hasher.verify(_DUMMY[0], password)
        except VerificationError:
            pass
        return Login(None, "bad_credentials")
    role, digest, disabled_at, failed, locked_until = row[0], row[1], row[2], int(row[3] or 0), row[4]
    if locked_until and dt.datetime.fromisoformat(locked_until) > now:
        return Login(None, "locked", MAX_DELAY_S, locked_until)
    try:
        good = hasher.verify(digest, password)
    except (VerificationError, InvalidHashError):
        good = False
    if good and not disabled_at:
        if failed or locked_until:
            db.run_write(engine, lambda conn: conn.execute(text(
                "UPDATE web_user SET failed_logins = 0, locked_until = NULL WHERE name = :n"), {"n": name}),
                lock=False)
        return Login(User(name, role))
    if good:  # the right password of a disabled user: say so (it is not a guess)
        return Login(None, "disabled")

    def count(conn) -> tuple[int, str | None]:
        n = int(conn.execute(text("SELECT failed_logins FROM web_user WHERE name = :n"), {"n": name}).scalar_one()) + 1
        until = (now + dt.timedelta(minutes=LOCK_MINUTES)).isoformat() if n >= LOCK_AFTER else None
        conn.execute(text("UPDATE web_user SET failed_logins = :f, locked_until = :u WHERE name = :n"),
                     {"f": 0 if until else n, "u": until, "n": name})
        return n, until

    n, until = db.run_write(engine, count, lock=False)
    if until:
        return Login(None, "locked", MAX_DELAY_S, until)
    delay = min(2.0 ** (n - SLOW_AFTER), MAX_DELAY_S) if n >= SLOW_AFTER else 0.0
    return Login(None, "bad_credentials", delay)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(engine: Engine, name: str) -> dict:
    """A new API token for an enabled user: {"name", "token"}. Only its SHA-256 is stored; the token itself is
    shown this once (a 256-bit random value needs no slow hash)."""
    name = username(name)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)

    def work(conn) -> dict:
        row = conn.execute(text("SELECT disabled_at FROM web_user WHERE name = :n"), {"n": name}).first()
        if row is None:
            raise NotFound(what="user", value=name)
        if row[0]:
            raise Refused("user_disabled", name=name)
        conn.execute(text("INSERT INTO web_token (token_hash, name, created_at) VALUES (:h, :n, :t)"),
                     {"h": _token_hash(token), "n": name, "t": now_iso()})
        return {"name": name, "token": token}

    return db.run_write(engine, work, lock=False, attempts=1)


def user_for_token(engine: Engine, token: str) -> User | None:
    """The enabled user an API token belongs to, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        return None
    row = db.read_one(engine, "SELECT u.name, u.role FROM web_token t JOIN web_user u ON u.name = t.name "
                              "WHERE t.token_hash = ? AND u.disabled_at IS NULL", (_token_hash(token),))
    return User(row[0], row[1]) if row else None


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


def record_verification(engine: Engine, summary: dict, ok: bool, actor: str) -> dict:
    """Keep the outcome of the last `verify` run from the workspace (shown on the overview)."""
    value = {"at": now_iso(), "ok": ok, "actor": actor, "head": summary.get("head"),
             "transactions": summary.get("transactions")}

    def work(conn) -> dict:
        conn.execute(text("DELETE FROM web_setting WHERE key = 'last_verify'"))
        conn.execute(text("INSERT INTO web_setting (key, value) VALUES ('last_verify', :v)"),
                     {"v": json.dumps(value)})
        return value

    return db.run_write(engine, work, lock=False)


def last_verification(engine: Engine) -> dict | None:
    found = setting(engine, "last_verify")
    return json.loads(found) if found else None
