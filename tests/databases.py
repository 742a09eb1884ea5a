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
