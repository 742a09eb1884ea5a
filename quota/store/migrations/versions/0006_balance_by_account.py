"""drop the balance table's project index: a project's pairs are read by account

A project's balance pairs live under two accounts, project:<P>:reserved and project:<P>:allocated,
so the primary key (account, lot) finds them by its prefix. The extra index cost every new pair one
more B-tree page (on SQLite, one more page in each reservation's commit) and served no other query.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_balance_project_id", table_name="balance")


def downgrade() -> None:
    op.create_index("ix_balance_project_id", "balance", ["project_id"])
