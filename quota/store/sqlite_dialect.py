"""SQLAlchemy's pysqlite dialect, with BEGIN issued by quota (registered as sqlite+quota:// in quota.db)."""
from __future__ import annotations

from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite


class SQLiteDialect(SQLiteDialect_pysqlite):
    """pysqlite, with BEGIN issued by us: the driver runs in autocommit mode (isolation_level None) so a
    transaction starts at BEGIN, not at the first write, and a reader sees one snapshot throughout. A
    dialect method rather than a "begin" event listener: with no connection events on the engine,
    SQLAlchemy skips its event dispatch on every begin, commit and statement."""
    supports_statement_cache = True

    def do_begin(self, dbapi_connection) -> None:
        if not dbapi_connection.in_transaction:  # db.run_write has begun its own (BEGIN IMMEDIATE)
            dbapi_connection.execute("BEGIN")
