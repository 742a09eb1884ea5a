"""decimal priorities: project.priority (a whole number) becomes project.priority_e4, integer ten-thousandths

A priority may be a decimal such as 7.5 (a score, an economic value): greater than 0, at most 10^6, at
most 4 decimal places (quota.units.parse_priority). It is stored exactly as an integer number of
ten-thousandths (7.5 -> 75000, BIGINT): the same on SQLite and PostgreSQL, where a NUMERIC column would
be a float on SQLite. The column is renamed so that nothing reads the new scale as the old one. A CHECK
bounds it on both engines (0 < priority_e4 <= 10^10) and, on SQLite, whose columns take any type,
triggers refuse a value that is not an integer (as migration 0010 does for grams). The default stays
priority 1 (10000).

The chain is unchanged: a `register` transaction committed each priority as a JSON integer, and still
does for a whole one; a decimal one is committed as its text ("7.5"). `verify` compares both with the
column exactly. The downgrade refuses when a project has a priority that is not whole.

Revision ID: 0013
Revises: 0012
"""
from alembic import op
import sqlalchemy as sa

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

BOUND = "priority_e4 > 0 AND priority_e4 <= 10000000000"
_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS project_priority_e4_whole_{op} BEFORE {event} ON project
WHEN typeof(NEW.priority_e4) != 'integer'
BEGIN SELECT RAISE(ABORT, 'quota: project.priority_e4 must be a whole number of ten-thousandths'); END
"""


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:  # SQLite adds a NOT NULL column only with a default, and its CHECK only with the column
        op.execute("ALTER TABLE project ADD COLUMN priority_e4 BIGINT NOT NULL DEFAULT 10000 "
                   f"CONSTRAINT ck_project_priority_e4 CHECK ({BOUND})")
    else:
        op.execute("ALTER TABLE project ADD COLUMN priority_e4 BIGINT NOT NULL DEFAULT 10000")
    op.execute("UPDATE project SET priority_e4 = CAST(priority AS BIGINT) * 10000")
    if not sqlite:
        op.execute(f"ALTER TABLE project ADD CONSTRAINT ck_project_priority_e4 CHECK ({BOUND})")
    op.execute("ALTER TABLE project DROP COLUMN priority")
    if sqlite:
        for name, event in (("insert", "INSERT"), ("update", "UPDATE OF priority_e4")):
            op.execute(_TRIGGER.format(op=name, event=event))


def downgrade() -> None:
    conn = op.get_bind()
    sqlite = conn.dialect.name == "sqlite"
    odd = conn.execute(sa.text("SELECT project_id FROM project WHERE priority_e4 % 10000 <> 0 "
                               "ORDER BY project_id")).scalars().all()
    if odd:
        raise RuntimeError(f"cannot downgrade below 0013: {len(odd)} project(s) have a priority that is not a whole "
                           f"number (first {odd[0]}); revision 0012 stores whole numbers only")
    if sqlite:
        for name in ("insert", "update"):
            op.execute(f"DROP TRIGGER IF EXISTS project_priority_e4_whole_{name}")
    op.execute("ALTER TABLE project ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
    op.execute("UPDATE project SET priority = CAST(priority_e4 / 10000 AS INTEGER)")
    op.execute("ALTER TABLE project DROP COLUMN priority_e4")
    if not sqlite:
        op.execute("ALTER TABLE project ALTER COLUMN priority DROP DEFAULT")
