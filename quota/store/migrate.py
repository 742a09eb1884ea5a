"""Schema migrations with Alembic: bring an empty or older database to the current schema."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect

HEAD = "head"


def _config(conn):
    from alembic.config import Config
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = HEAD) -> dict:
    """Upgrade to `revision` in one transaction; returns {"from": rev, "to": rev}.

    A database created before migrations existed (tables but no alembic_version) is first
    stamped with the revision its tables match, so nothing is created twice.
    """
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    with engine.begin() as conn:
        before = MigrationContext.configure(conn).get_current_revision()
        cfg = _config(conn)
        if before is None:
            tables = set(inspect(conn).get_table_names())
            if "chain_head" in tables:
                before = "0003" if "balance_total" in tables else "0002" if "plan" in tables else "0001"
                command.stamp(cfg, before)
        command.upgrade(cfg, revision)
        after = MigrationContext.configure(conn).get_current_revision()
    return {"from": before, "to": after}


def head_revision() -> str:
    """The newest migration this version of quota ships."""
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(_config(None)).get_current_head()


def check_current(engine: Engine) -> None:
    """Refuse (NotInitialised) a database without the quota schema or below the newest migration: a server
    must not run on a schema it does not know."""
    from . import db
    if not db.schema_exists(engine):
        raise db.NotInitialised(reason="no_schema")
    if current_revision(engine) != head_revision():
        raise db.NotInitialised(reason="old_schema")
