"""matching keys per rulebook version, so a reservation reads its candidate lots in the same round trip
as the chain-head lock

Revision ID: 0005
Revises: 0004
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    from quota.rules.versions import matching_rows
    from quota.rules.book import parse_rulebook
    table = op.create_table(
        "matching",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("pollutant", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("zone", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.PrimaryKeyConstraint("version", "pollutant", "zone"),
    )
    rows = []
    for version, text in op.get_bind().execute(sa.text("SELECT version, text FROM rulebook ORDER BY version")):
        book, _ = parse_rulebook(text, source=f"rulebook v{version}")
        rows += [r._asdict() for r in matching_rows(version, book)]
    if rows:
        op.bulk_insert(table, rows)
    from quota.store import db
    from quota.store.roles import ROLES
    db.install_triggers(op.get_bind(), ["matching"])  # written once per version, never changed
    if op.get_bind().dialect.name == "postgresql":  # roles made before this table existed read it too
        for role in ROLES:
            op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                       f"THEN GRANT SELECT ON matching TO {role}; END IF; END $$")


def downgrade() -> None:
    op.drop_table("matching")
