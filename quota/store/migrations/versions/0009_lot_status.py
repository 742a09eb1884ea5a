"""lot status: revoked and superseded lots are marked, so grams released from them never return to them

Revision ID: 0009
Revises: 0008
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lot_status",
        sa.Column("serial", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("txn_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["serial"], ["lot.serial"]),
        sa.ForeignKeyConstraint(["txn_seq"], ["txn.seq"]),
        sa.PrimaryKeyConstraint("serial"),
    )
    bind = op.get_bind()
    # lots revoked or superseded before this migration: found in the chain (revoke transactions name their lot)
    import json
    rows = {}
    for seq, meta in bind.execute(sa.text("SELECT seq, meta FROM txn WHERE kind = 'revoke' ORDER BY seq")):
        m = json.loads(meta or "{}")
        if m.get("lot"):
            rows.setdefault(m["lot"], (("superseded" if m.get("superseded_by") else "revoked"), seq))
    for serial, (status, seq) in sorted(rows.items()):
        bind.execute(sa.text("INSERT INTO lot_status (serial, status, txn_seq) VALUES (:s, :t, :q)"),
                     {"s": serial, "t": status, "q": seq})
    from quota.store import db
    from quota.store.roles import ROLES
    db.install_triggers(bind, ["lot_status"])
    if bind.dialect.name == "postgresql":
        for role in ROLES:
            op.execute(f"DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') "
                       f"THEN GRANT SELECT ON lot_status TO {role}; END IF; END $$")


def downgrade() -> None:
    op.drop_table("lot_status")
