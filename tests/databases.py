"""Empty databases for tests and benchmarks: a SQLite file, or a fresh schema in PostgreSQL database `test`."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable

from sqlalchemy import create_engine, text

PG_BASE = os.environ.get("QUOTA_TEST_PG", "postgresql+psycopg://root@127.0.0.1:5432/test")


def fresh_url(kind: str, tmp_path: Path, prefix: str = "quota_test") -> tuple[str, Callable[[], None]]:
    """A URL of an empty database and a function that drops it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / (name + '.db')}", lambda: None
    admin = create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))

    def drop():
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()

    return f"{PG_BASE}?options=-csearch_path%3D{name}", drop


CATALOG = ("pg_attribute", "pg_depend", "pg_class", "pg_type", "pg_constraint", "pg_index", "pg_trigger",
           "pg_attrdef", "pg_sequence", "pg_namespace", "pg_shdepend")


def vacuum_catalog() -> None:
    """VACUUM PostgreSQL's system catalogs in database `test`. Every test makes and drops a schema (some thousand
    tables and triggers a run); with autovacuum off (as on this machine's server) their dead rows pile up run
    after run, and each CREATE and DROP slows down (pg_attribute had 910,000 dead rows after a day of runs, and a
    full run took several times as long). A plain VACUUM takes seconds and blocks nobody. No-op without PG."""
    try:
        admin = create_engine(PG_BASE, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("VACUUM " + ", ".join(f"pg_catalog.{t}" for t in CATALOG)))
        admin.dispose()
    except Exception:  # noqa: BLE001 -- no PostgreSQL (QUOTA_SKIP_PG) or no right to vacuum: the tests still run
        pass
