"""Alembic migrations on SQLite and PostgreSQL: baseline with data -> head loses nothing."""
import datetime as dt

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlmodel import SQLModel

from quota import audit, db, migrate, plans, projects, quota_ops, rulebooks, tallies
from tests.conftest import DATA, snapshot


def test_baseline_database_with_data_upgrades_without_loss(db_url):
    engine = db.make_engine(db_url)
    assert migrate.upgrade(engine, "0001") == {"from": None, "to": "0001"}
    assert "plan" not in inspect(engine).get_table_names()
    with engine.begin() as conn:  # load the rulebook as v1 of a baseline install would
        conn.execute(text("INSERT INTO rulebook (version, sha256, text, loaded_at, actor) VALUES (1, 'x', :t, 'now', 'a')"),
                     {"t": (DATA / "rules.toml").read_text(encoding="utf-8")})
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    projects.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    quota_ops.reserve(engine, "P2026-01", actor="clerk", date=dt.date(2026, 11, 29))
    before = {k: v for k, v in snapshot_without_plan(engine).items()}
    assert migrate.upgrade(engine) == {"from": "0001", "to": "0002"}
    after = snapshot_without_plan(engine)
    assert after == before
    assert audit.verify(engine)[1] == []
    plan = plans.run_plan(engine, as_of=dt.date(2026, 11, 29))  # the new table works
    assert plan["plan_id"] == "PLAN-0001"
    assert migrate.upgrade(engine) == {"from": "0002", "to": "0002"}  # idempotent
    engine.dispose()


def snapshot_without_plan(engine):
    from quota import model
    out = {}
    with engine.connect() as conn:
        for m in model.TABLES:
            if m.__tablename__ == "plan":
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
    assert migrate.upgrade(engine) == {"from": "0001", "to": "0002"}
    assert "plan" in inspect(engine).get_table_names()
    engine.dispose()
