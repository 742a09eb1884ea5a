"""amounts are integer grams on SQLite too: triggers refuse a non-integer amount column

SQLite stores an integer past 2^63 as REAL without a word (and any column can hold any type):
864 g vanished and `verify` then failed with "integer overflow". BEFORE INSERT and UPDATE triggers
refuse a row whose amount column is not an integer. PostgreSQL's BIGINT columns already refuse a
value out of range ("bigint out of range"), so nothing is added there. A later migration that
rebuilds one of these tables on SQLite (batch_alter_table) must create its triggers again.

Revision ID: 0010
Revises: 0009
"""
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# (table, column) of every amount in grams
COLUMNS = [("posting", "amount_g"), ("balance", "amount_g"), ("balance_total", "amount_g"),
           ("lot", "issued_g"), ("tally", "creditable_g"), ("project_need", "increment_g")]

_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {t}_{c}_integer_{op} BEFORE {event} ON {t}
WHEN typeof(NEW.{c}) != 'integer'
BEGIN SELECT RAISE(ABORT, 'quota: {t}.{c} must be a whole number of grams within 64 bits'); END
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for t, c in COLUMNS:
        for name, event in (("insert", "INSERT"), ("update", f"UPDATE OF {c}")):
            op.execute(_TRIGGER.format(t=t, c=c, op=name, event=event))


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for t, c in COLUMNS:
        for name in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS {t}_{c}_integer_{name}")
