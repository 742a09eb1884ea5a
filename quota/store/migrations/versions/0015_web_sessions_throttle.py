"""web workspace: sessions kept on the server (so one can be ended, or all of a user's), a label on API
tokens, and failed sign-ins counted per client address as well as per account

Like the tables of 0014, none of these is readable by the least-privilege roles of `quota db roles`.

Revision ID: 0015
Revises: 0014
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

NEW_TABLES = ("web_session", "web_throttle")


def upgrade() -> None:
    op.create_table(
        "web_session",
        sa.Column("sid_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("client", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("agent", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.ForeignKeyConstraint(["name"], ["web_user.name"]),
        sa.PrimaryKeyConstraint("sid_hash"),
    )
    op.create_index(op.f("ix_web_session_name"), "web_session", ["name"], unique=False)
    op.create_table(
        "web_throttle",
        sa.Column("client", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("locked_until", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.PrimaryKeyConstraint("client"),
    )
    op.add_column("web_token", sa.Column("label", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        from quota.store.roles import ROLES
        for role in ROLES:  # default privileges granted them SELECT on new tables: not on these
            op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                       f"THEN REVOKE ALL ON {', '.join(NEW_TABLES)} FROM {role}; END IF; END $$")


def downgrade() -> None:
    with op.batch_alter_table("web_token") as batch:
        batch.drop_column("label")
    op.drop_table("web_throttle")
    op.drop_index(op.f("ix_web_session_name"), table_name="web_session")
    op.drop_table("web_session")
