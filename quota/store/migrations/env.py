"""Alembic environment: runs on the connection handed over by quota.store.migrate (no alembic.ini needed)."""
from alembic import context
from sqlmodel import SQLModel

from quota.store import schema  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # pragma: no cover - offline / CLI use
        from sqlalchemy import create_engine
        connection = create_engine(config.get_main_option("sqlalchemy.url")).connect()
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


run()
