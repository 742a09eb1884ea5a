"""Least-privilege PostgreSQL roles: quota_auditor (read), quota_clerk (ledger work), quota_planner (plans).

Grants say which tables and columns each role may write; the triggers of migration 0012 say what it may
write there: a role that does not own the ledger may post only the clerk's transaction kinds
(CLERK_KINDS) and never to or from `issued:`/`adjustment:` accounts, and the idempotency table records
the database user that wrote each key.
"""
from __future__ import annotations

from sqlalchemy import Engine, text

from quota.errors import Refused

ROLES = ("quota_auditor", "quota_clerk", "quota_planner")
# the transaction kinds a role that does not own the ledger may post (the owner posts every kind: issue,
# revoke, expire, adjust...); migration 0012's quota_txn_guard trigger enforces the same list
CLERK_KINDS = ("reserve", "approve", "release", "cancel", "register")
OPERATION_COLUMNS = ("key", "command", "request_hash", "result", "created_at")  # not db_user: the database sets it
PLAN_COLUMNS = ("plan_id", "created_at", "actor", "as_of", "status", "rulebook_version", "head_seq",
                "scenario_name", "scenario", "result")  # not applied_at: `plan apply` sets it
# table -> the columns a role may write (None: every column)
CLERK_INSERT: dict[str, tuple[str, ...] | None] = {
    "txn": None, "posting": None, "balance": None, "balance_total": None,  # reserve, approve, release, cancel
    "import_batch": None, "project": None, "project_need": None,  # project import
    "operation": OPERATION_COLUMNS,  # --key
}
CLERK_UPDATE: dict[str, tuple[str, ...]] = {
    "balance": ("amount_g", "last_date"),  # the maintained balance of a pair; never its zone, kind or pollutant
    "balance_total": ("amount_g",),
    "project": ("state", "reserved_until", "doc"),
    "plan": ("applied_at",),
    # SELECT ... FOR UPDATE needs UPDATE on some column; the append-only trigger refuses any actual UPDATE
    "chain_head": ("id",),
}
WEB_TABLES = ("web_user", "web_token", "web_setting")  # password hashes, token hashes, the session secret
PLANNER_INSERT: dict[str, tuple[str, ...] | None] = {"plan": PLAN_COLUMNS}


def _grant(privilege: str, tables: dict[str, tuple[str, ...] | None], q: str, role: str) -> list[str]:
    out = []
    for table, columns in tables.items():
        cols = f" ({', '.join(columns)})" if columns else ""
        out.append(f"GRANT {privilege}{cols} ON {q}.{table} TO {role}")
    return out


def grants_sql(schema: str) -> list[str]:
    """The roles' rights on `schema`, from nothing: every earlier grant of theirs there is revoked first
    (column grants with their tables), so running this again, or after an upgrade, leaves exactly these."""
    q = f'"{schema}"'
    everyone = ", ".join(ROLES)
    return [f"REVOKE ALL ON ALL TABLES IN SCHEMA {q} FROM {everyone}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {q} FROM {everyone}",
            f"GRANT USAGE ON SCHEMA {q} TO {everyone}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA {q} TO {everyone}",
            # tables that later migrations add (run by this same owner) are readable too
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q} GRANT SELECT ON TABLES TO {everyone}",
            # the web workspace's users, tokens and session secret are the server's alone (migration 0014)
            # (when they exist: an upgrade re-grants at migration 0012, before they do)
            *(f"DO $$ BEGIN IF to_regclass('{q}.{t}') IS NOT NULL THEN REVOKE ALL ON {q}.{t} FROM {everyone}; "
              f"END IF; END $$" for t in WEB_TABLES),
            *_grant("INSERT", CLERK_INSERT, q, "quota_clerk"),
            *_grant("UPDATE", CLERK_UPDATE, q, "quota_clerk"),
            *_grant("INSERT", PLANNER_INSERT, q, "quota_planner"),
            f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {q} TO quota_clerk"]


def roles_sql(schema: str) -> list[str]:
    """The statements that create the roles (if missing) and grant them their rights on `schema`.

    Nobody gets DELETE or TRUNCATE, and UPDATE only on the columns the commands update (maintained
    balances, project states, plan application times) and on the chain head's lock row, which a trigger
    keeps unchanged; the ledger tables refuse UPDATE and DELETE through triggers for every role, owner
    included.
    """
    stmts = []
    for role in ROLES:
        stmts.append(f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                     f"THEN CREATE ROLE {role} LOGIN; END IF; END $$")
    return stmts + grants_sql(schema)


def current_schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT current_schema()")).scalar_one()


# who is connected, whether it may create roles, and the schema's tables it does not own (GRANT by a
# non-owner only warns "no privileges were granted", so this is checked first)
_CALLER_SQL = """
SELECT current_user, current_schema(),
       (SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user),
       (SELECT count(*) FROM pg_roles WHERE rolname IN ('quota_auditor', 'quota_clerk', 'quota_planner')),
       (SELECT count(*) FROM pg_class c WHERE c.relnamespace = to_regnamespace(current_schema())
          AND c.relkind IN ('r', 'p', 'S') AND c.relname = 'chain_head'),
       (SELECT string_agg(c.relname, ', ' ORDER BY c.relname) FROM pg_class c
          WHERE c.relnamespace = to_regnamespace(current_schema()) AND c.relkind IN ('r', 'p', 'S')
          AND NOT pg_has_role(current_user, c.relowner, 'USAGE'))
"""


def check_caller(engine: Engine) -> str:
    """The schema to grant on; Refused unless the connected user owns every table and sequence of it
    (or is a superuser) and can create the roles that do not exist yet."""
    with engine.connect() as conn:
        user, schema, can_create, existing, initialised, not_owned = conn.execute(text(_CALLER_SQL)).one()
    if not initialised:
        raise Refused("not_found", schema=schema)
    if not_owned:
        raise Refused("cannot_grant", user=user, schema=schema, not_owned=not_owned.split(", "))
    if existing < len(ROLES) and not can_create:
        raise Refused("cannot_grant", user=user, schema=schema, roles=list(ROLES))
    return schema


def create_roles(engine: Engine) -> list[str]:
    """Create the roles and grants on the database's current schema; returns the SQL run. Refused when the
    connected user cannot grant there (check_caller)."""
    if engine.dialect.name != "postgresql":
        raise Refused("not_postgresql")
    stmts = roles_sql(check_caller(engine))
    with engine.begin() as conn:
        for sql in stmts:
            conn.exec_driver_sql(sql.replace("%", "%%"))
    return stmts


def roles_granted(conn) -> bool:
    """Whether `quota db roles` has been run on the connection's current schema (PostgreSQL)."""
    return bool(conn.exec_driver_sql(
        "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'quota_clerk') "
        "THEN has_schema_privilege('quota_clerk', current_schema(), 'USAGE') ELSE false END").scalar())
