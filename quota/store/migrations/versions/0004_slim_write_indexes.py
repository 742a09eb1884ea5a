"""drop secondary indexes that every ledger write paid for and no hot query needs; index lots in drawing order

Each of these cost the writer extra B-tree pages per operation (SQLite's commit grew with them)
while its readers do as well without: balance by lot (pairs are read by account, the primary
key's prefix), balance by kind and pollutant (balance queries read balance_total), txn by date
(as-of queries read most of the ledger anyway), txn by project (a project's history is found
through its accounts' postings) and project by state (the project table is small). Lots, written
once, are indexed by (pollutant, expires, serial) instead of pollutant alone, so a reservation
walks a pollutant's lots in drawing order and stops when it has enough.

Revision ID: 0004
Revises: 0003
"""
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

DROPPED = [
    ("ix_balance_lot", "balance", ["lot"]),
    ("ix_balance_kind_pollutant", "balance", ["kind", "pollutant"]),
    ("ix_txn_effective_date", "txn", ["effective_date"]),
    ("ix_txn_project_id", "txn", ["project_id"]),
    ("ix_project_state", "project", ["state"]),
]


def upgrade() -> None:
    for name, table, _ in DROPPED:
        op.drop_index(name, table_name=table)
    op.drop_index("ix_lot_pollutant", table_name="lot")
    op.create_index("ix_lot_draw", "lot", ["pollutant", "expires", "serial"])


def downgrade() -> None:
    op.drop_index("ix_lot_draw", table_name="lot")
    op.create_index("ix_lot_pollutant", "lot", ["pollutant"])
    for name, table, columns in DROPPED:
        op.create_index(name, table, columns)
