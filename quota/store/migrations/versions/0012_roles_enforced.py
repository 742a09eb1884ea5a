"""the database enforces who may post what: transaction kinds and posting accounts for roles that do not own
the ledger, the chain head's lock row unchangeable, stored plans only marked applied, and each idempotency
key recorded with the database user that wrote it

PostgreSQL only (SQLite has no users), except the chain head's append-only triggers and the operation
table's db_user column, which SQLite gets too (its db_user stays empty).

- txn: BEFORE INSERT, only for a kind other than the clerk's (reserve, approve, release, cancel,
  register): refused unless the inserting user has the privileges of the table's owner (the owner, a
  member of the owning role, or a superuser). A clerk's own kinds never call the function, so the hot
  path pays nothing.
- posting: BEFORE INSERT, only for a posting that is not a reservation's or approval's shape (a project
  account, or a lot's own account going down): for a user without the owner's privileges, only a
  release, cancel or approve may put grams back (positive) on a lot's own account or on expired:,
  revoked: or superseded:. So a clerk cannot post to or from issued: or adjustment:, cannot take
  grams out of expired: or revoked:, and cannot invent quota in any kind of transaction.
- plan: BEFORE UPDATE, for a user without the owner's privileges: the only change is setting applied_at,
  once (the clerk's column grant already limits it to applied_at).
- chain_head: append-only like the ledger tables (writers only lock it, FOR UPDATE, for which the clerk
  holds UPDATE on its id column).
- operation.db_user: defaults to CURRENT_USER; the clerk may not insert that column, so an idempotency
  row always names the user that wrote it, and idempotency.run refuses another user's row.

The functions resolve names with search_path pg_catalog, pg_temp, and read txn through the trigger's own
schema, so a user's temporary tables or search_path cannot stand in for the ledger's.

Revision ID: 0012
Revises: 0011
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_OWNER = "pg_has_role(current_user, (SELECT c.relowner FROM pg_class c WHERE c.oid = TG_RELID), 'USAGE')"

PG_UP = [
    "ALTER TABLE operation ALTER COLUMN db_user SET DEFAULT CURRENT_USER",
    f"""CREATE OR REPLACE FUNCTION quota_txn_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF {_OWNER} THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'permission denied: % may not post a % transaction (only the ledger''s owner may)',
    current_user, NEW.kind USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER txn_kind_guard BEFORE INSERT ON txn FOR EACH ROW
WHEN (NEW.kind NOT IN ('reserve', 'approve', 'release', 'cancel', 'register'))
EXECUTE FUNCTION quota_txn_guard()""",
    f"""CREATE OR REPLACE FUNCTION quota_posting_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  k text;
BEGIN
  IF {_OWNER} THEN
    RETURN NEW;
  END IF;
  EXECUTE format('SELECT kind FROM %I.txn WHERE seq = $1', TG_TABLE_SCHEMA) INTO k USING NEW.txn_seq;
  IF k IN ('release', 'cancel', 'approve') AND NEW.amount_g > 0
     AND (NEW.account = 'lot:' || NEW.lot OR split_part(NEW.account, ':', 1) IN ('expired', 'revoked', 'superseded'))
  THEN
    RETURN NEW;
  END IF;
  RAISE EXCEPTION 'permission denied: % may not post % g to % (lot %) in a % transaction (only the ledger''s owner may)',
    current_user, NEW.amount_g, NEW.account, NEW.lot, coalesce(k, 'missing') USING ERRCODE = 'insufficient_privilege';
END $$""",
    """CREATE TRIGGER posting_account_guard BEFORE INSERT ON posting FOR EACH ROW
WHEN (NOT (NEW.account LIKE 'project:%' OR (NEW.account = 'lot:' || NEW.lot AND NEW.amount_g < 0)))
EXECUTE FUNCTION quota_posting_guard()""",
    f"""CREATE OR REPLACE FUNCTION quota_plan_guard() RETURNS trigger LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  IF {_OWNER} THEN
    RETURN NEW;
  END IF;
  IF OLD.applied_at IS NOT NULL OR NEW.applied_at IS NULL
     OR to_jsonb(NEW) - 'applied_at' IS DISTINCT FROM to_jsonb(OLD) - 'applied_at' THEN
    RAISE EXCEPTION 'a stored plan is only ever marked applied, once: UPDATE of plan % refused', OLD.plan_id
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$""",
    "CREATE TRIGGER plan_applied_once BEFORE UPDATE ON plan FOR EACH ROW EXECUTE FUNCTION quota_plan_guard()",
]

PG_DOWN = [
    "DROP TRIGGER IF EXISTS plan_applied_once ON plan",
    "DROP TRIGGER IF EXISTS posting_account_guard ON posting",
    "DROP TRIGGER IF EXISTS txn_kind_guard ON txn",
    "DROP TRIGGER IF EXISTS chain_head_append_only ON chain_head",
    "DROP FUNCTION IF EXISTS quota_plan_guard()",
    "DROP FUNCTION IF EXISTS quota_posting_guard()",
    "DROP FUNCTION IF EXISTS quota_txn_guard()",
]


def upgrade() -> None:
    from quota.store import db
    from quota.store import roles
    with op.batch_alter_table("operation") as batch:
        batch.add_column(sa.Column("db_user", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    bind = op.get_bind()
    db.install_triggers(bind, ["chain_head"])
    if bind.dialect.name != "postgresql":
        return
    for sql in PG_UP:
        bind.exec_driver_sql(sql.replace("%", "%%"))
    if roles.roles_granted(bind):  # `quota db roles` ran on this schema: its grants become the new ones
        for sql in roles.grants_sql(bind.exec_driver_sql("SELECT current_schema()").scalar_one()):
            bind.exec_driver_sql(sql.replace("%", "%%"))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for sql in PG_DOWN:
            bind.exec_driver_sql(sql)
    else:
        for action in ("UPDATE", "DELETE"):
            bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS chain_head_no_{action}")
    with op.batch_alter_table("operation") as batch:
        batch.drop_column("db_user")
