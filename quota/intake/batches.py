"""The record of one imported file (import_batch): what kind, its name and SHA-256, how many rows, when, by whom."""
from __future__ import annotations

from sqlalchemy import Connection, text


def record(conn: Connection, kind: str, file_name: str, sha256: str, rows: int, at: str, actor: str) -> int:
    """Insert the batch row of an import ('tally' or 'project') inside its transaction; returns its id."""
    return int(conn.execute(text("INSERT INTO import_batch (kind, file_name, sha256, rows, imported_at, actor) "
                                 "VALUES (:k, :f, :s, :n, :t, :a) RETURNING id"),
                            {"k": kind, "f": file_name, "s": sha256, "n": rows, "t": at, "a": actor}).scalar_one())
