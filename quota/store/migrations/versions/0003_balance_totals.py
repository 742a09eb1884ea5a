"""balance totals per (kind, pollutant, zone, lot expiry), for fast balance queries

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "balance_total",
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("pollutant", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("zone", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("expires", sa.Date(), nullable=False),
        sa.Column("amount_g", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "pollutant", "zone", "expires"),
    )
    op.execute(
        "INSERT INTO balance_total (kind, pollutant, zone, expires, amount_g) "
        "SELECT b.kind, b.pollutant, b.zone, CASE WHEN b.kind = 'lot' AND l.expires IS NOT NULL THEN l.expires "
        "ELSE '9999-12-31' END, SUM(b.amount_g) FROM balance b LEFT JOIN lot l ON b.kind = 'lot' AND l.serial = b.lot "
        "WHERE b.kind IN ('lot', 'reserved', 'allocated') GROUP BY 1, 2, 3, 4")


def downgrade() -> None:
    op.drop_table("balance_total")
