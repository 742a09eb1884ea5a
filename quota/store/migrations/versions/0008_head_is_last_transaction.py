"""the chain's head is its last transaction: chain_head keeps only the row that PostgreSQL writers lock

Every ledger write used to copy its transaction's seq and hash into the chain_head row: one more
statement and, on SQLite, one more page in every commit. The same two values are the last row of txn
(read through its primary key), so chain_head keeps only its row: PostgreSQL writers lock it FOR UPDATE
and then read the head from txn in a new statement, which sees the previous writer's commit. SQLite's
writers are ordered by BEGIN IMMEDIATE and do not touch it. The copy added no tamper evidence: whoever
can delete transactions can also rewrite the copy; an export's final hash, kept elsewhere, is the anchor.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("chain_head") as batch:
        batch.drop_column("seq")
        batch.drop_column("hash")


def downgrade() -> None:
    from quota.store.db import GENESIS
    with op.batch_alter_table("chain_head") as batch:
        batch.add_column(sa.Column("seq", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False,
                                   server_default=GENESIS))
    op.execute("UPDATE chain_head SET seq = t.seq, hash = t.hash FROM (SELECT seq, hash FROM txn "
               "ORDER BY seq DESC LIMIT 1) t WHERE chain_head.id = 1")
