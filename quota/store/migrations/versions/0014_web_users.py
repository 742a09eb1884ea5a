"""web workspace: users (role, Argon2 password hash, failed logins), API tokens (hashed) and settings (the
session secret, the last verification)

None of these tables is readable by the least-privilege roles of `quota db roles` (they hold password
hashes and the session secret): the web server runs as the ledger's owner.

Revision ID: 0014
Revises: 0013
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

WEB_TABLES = ("web_token", "web_setting", "web_user")


def upgrade() -> None:
    op.create_table(
        "web_user",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("disabled_at", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "web_token",
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["name"], ["web_user.name"]),
        sa.PrimaryKeyConstraint("token_hash"),
    )
    op.create_index(op.f("ix_web_token_name"), "web_token", ["name"], unique=False)
    op.create_table(
        "web_setting",
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from quota.store.roles import ROLES
        for role in ROLES:  # the roles' default privileges granted them SELECT on new tables: not on these
            op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                       f"THEN REVOKE ALL ON {', '.join(WEB_TABLES)} FROM {role}; END IF; END $$")


def downgrade() -> None:
    op.drop_index(op.f("ix_web_token_name"), table_name="web_token")
    op.drop_table("web_token")
    op.drop_table("web_setting")
    op.drop_table("web_user")
