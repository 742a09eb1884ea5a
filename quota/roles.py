"""Least-privilege PostgreSQL roles: quota_auditor (read), quota_clerk (ledger work), quota_planner."""
from __future__ import annotations

from sqlalchemy import Engine, text

ROLES = ("quota_auditor", "quota_clerk", "quota_planner")
CLERK_INSERT = ("txn", "posting", "tally", "lot", "source", "import_batch", "project", "project_need", "operation",
                "balance", "balance_total")
CLERK_UPDATE = ("balance", "balance_total", "chain_head", "project", "plan")


def roles_sql(schema: str) -> list[str]:
    """The statements that create the roles (if missing) and grant them their rights on `schema`.

    Nobody gets DELETE or TRUNCATE, and UPDATE only on the maintained balances, the chain head,
    project states and plan application times; the ledger tables refuse UPDATE and DELETE
    through triggers for every role, owner included.
    """
    q = f'"{schema}"'
    stmts = []
    for role in ROLES:
        stmts.append(f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                     f"THEN CREATE ROLE {role} LOGIN; END IF; END $$")
    everyone = ", ".join(ROLES)
    stmts += [f"GRANT USAGE ON SCHEMA {q} TO {everyone}",
              f"GRANT SELECT ON ALL TABLES IN SCHEMA {q} TO {everyone}",
              # tables that later migrations add (run by this same owner) are readable too
              f"ALTER DEFAULT PRIVILEGES IN SCHEMA {q} GRANT SELECT ON TABLES TO {everyone}",
              f"GRANT INSERT ON {', '.join(f'{q}.{t}' for t in CLERK_INSERT)} TO quota_clerk",
              f"GRANT UPDATE ON {', '.join(f'{q}.{t}' for t in CLERK_UPDATE)} TO quota_clerk",
              f"GRANT INSERT ON {q}.plan, {q}.operation TO quota_planner",
              f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {q} TO quota_clerk, quota_planner"]
    return stmts


def current_schema(engine: Engine) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT current_schema()")).scalar_one()


def create_roles(engine: Engine) -> list[str]:
    """Create the roles and grants on the database's current schema; returns the SQL run."""
    if engine.dialect.name != "postgresql":
        raise ValueError("roles are a PostgreSQL feature; SQLite has no users")
    stmts = roles_sql(current_schema(engine))
    with engine.begin() as conn:
        for sql in stmts:
            conn.exec_driver_sql(sql.replace("%", "%%"))
    return stmts
