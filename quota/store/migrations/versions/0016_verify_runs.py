"""verify runs, and plan runs once per key

Verify runs: each `quota verify` of the database, from the CLI, the workspace or the API, is recorded (when,
who, the head it reached, the outcome), so the overview's "last verified" is true whichever front end ran it

The runs are not secret (every role reads them); each least-privilege role may add one (an auditor's
verify is recorded too), none may change or remove one.

Plan runs once per key: a plan stored with an idempotency key (the workspace's plan form, the API's
Idempotency-Key) records it (unique) and the hash of its request, so a double submit stores one plan. The
plan table holds them (not the operation table: the planner role may write plans, not operations).

Revision ID: 0016
Revises: 0015
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "verify_run",
        sa.Column("run_id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("at", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("actor", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("head_seq", sa.Integer(), nullable=False),
        sa.Column("head_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("problems", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index(op.f("ix_verify_run_at"), "verify_run", ["at"], unique=False)
    op.add_column("plan", sa.Column("run_key", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.add_column("plan", sa.Column("run_request", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_index(op.f("ix_plan_run_key"), "plan", ["run_key"], unique=True)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from quota.store.roles import ROLES
        for role in ROLES:
            op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                       f"THEN GRANT INSERT ON verify_run TO {role}; END IF; END $$")
        op.execute("DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'quota_planner') "
                   "THEN GRANT INSERT (run_key, run_request) ON plan TO quota_planner; END IF; END $$")
    op.execute("DELETE FROM web_setting WHERE key = 'last_verify'")  # the workspace's own record, now this table's


def downgrade() -> None:
    op.drop_index(op.f("ix_plan_run_key"), table_name="plan")
    with op.batch_alter_table("plan") as batch:
        batch.drop_column("run_request")
        batch.drop_column("run_key")
    op.drop_index(op.f("ix_verify_run_at"), table_name="verify_run")
    op.drop_table("verify_run")
