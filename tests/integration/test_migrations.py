"""Alembic migrations on SQLite and PostgreSQL: baseline with data -> head loses nothing."""
import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from quota.audit import trace
from quota.ledger import balances
from quota.store import db
from quota.store import migrate
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import operations
from quota.rules import versions
from quota.intake import tallies
from tests.conftest import DATA


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(migrate._config(None)).get_current_head()


HEAD = head_revision()


def test_baseline_database_with_data_upgrades_without_loss(db_url):
    """Data written at the baseline schema (0001) survives the upgrade to head, and the new
    balance totals are backfilled from it. The baseline database is made by loading data and
    downgrading to 0001: the tables that remain are exactly those of a baseline install."""
    engine = db.make_engine(db_url)
    versions.init(engine, str(DATA / "rules.toml"), "admin")
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    operations.reserve(engine, "P2026-01", actor="clerk", date=dt.date(2026, 11, 29))
    operations.approve(engine, "P2026-01", doc="D", actor="clerk", date=dt.date(2026, 11, 30))
    operations.reserve(engine, "P2026-03", actor="clerk", date=dt.date(2026, 11, 30))
    pollutants = balances.balance(engine)["rows"]
    zones = balances.balance(engine, by="zone")["rows"]
    before = snapshot_without_plan(engine)
    from alembic import command
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0001")
    assert migrate.current_revision(engine) == "0001"
    assert not {"plan", "balance_total"} & set(inspect(engine).get_table_names())
    assert "ix_balance_lot" in {i["name"] for i in inspect(engine).get_indexes("balance")}
    assert "ix_posting_account_lot" in {i["name"] for i in inspect(engine).get_indexes("posting")}
    assert balance_has_rowid(engine)  # 0007's downgrade rebuilt it
    assert integer_triggers(engine) == 0  # 0010's downgrade dropped them
    with engine.connect() as conn:  # 0008's downgrade copied the last transaction back into the head row
        assert conn.execute(text("SELECT seq, hash FROM chain_head")).one() == tuple(
            conn.execute(text("SELECT seq, hash FROM txn ORDER BY seq DESC LIMIT 1")).one())
    assert migrate.upgrade(engine) == {"from": "0001", "to": HEAD}
    assert {i["name"] for i in inspect(engine).get_indexes("balance")} == set()  # 0004, 0006
    assert {i["name"] for i in inspect(engine).get_indexes("posting")} == set()  # 0007
    assert "ix_txn_project_id" in {i["name"] for i in inspect(engine).get_indexes("txn")}  # 0007
    assert balance_has_rowid(engine) is (engine.dialect.name != "sqlite")  # 0007: SQLite WITHOUT ROWID
    assert [c["name"] for c in inspect(engine).get_columns("chain_head")] == ["id"]  # 0008: the head is the last txn
    assert integer_triggers(engine) == (12 if engine.dialect.name == "sqlite" else 0)  # 0010
    assert snapshot_without_plan(engine) == before
    assert balances.balance(engine)["rows"] == pollutants and balances.balance(engine, by="zone")["rows"] == zones
    assert trace.verify(engine)[1] == []
    plan = plans.run_plan(engine, as_of=dt.date(2026, 11, 29))  # the new tables work
    assert plan["plan_id"] == "PLAN-0001"
    assert migrate.upgrade(engine) == {"from": HEAD, "to": HEAD}  # idempotent
    engine.dispose()


def integer_triggers(engine) -> int:
    """How many of 0010's integer-grams triggers the database holds (SQLite only)."""
    if engine.dialect.name != "sqlite":
        return 0
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' "
                                 "AND name LIKE '%integer%'")).scalar_one()


def balance_has_rowid(engine) -> bool:
    """Whether the balance table keeps a rowid (always true on PostgreSQL, which has none to drop)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        sql = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'balance'")).scalar_one()
    return "WITHOUT ROWID" not in sql.upper()


def snapshot_without_plan(engine):
    from quota.store import schema as model
    out = {}
    with engine.connect() as conn:
        for m in model.TABLES:
            if m.__tablename__ in ("plan", "balance_total"):
                continue
            rows = conn.execute(text(f"SELECT * FROM {m.__tablename__}")).all()
            out[m.__tablename__] = sorted(tuple(str(v) for v in r) for r in rows)
    return out


def test_the_models_match_the_migrations(engine):
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    assert diffs == []


def test_a_database_made_before_migrations_is_stamped_then_upgraded(db_url):
    engine = db.make_engine(db_url)
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:  # forget the version, as a pre-Alembic install would have none
        conn.execute(text("DROP TABLE alembic_version"))
    assert migrate.upgrade(engine) == {"from": "0001", "to": HEAD}
    assert {"plan", "balance_total"} <= set(inspect(engine).get_table_names())
    engine.dispose()
