"""Idempotency keys: a repeated command with the same key and content reports the first result."""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Sequence

from sqlalchemy import Connection, Engine

from . import db, driver
from .errors import IdempotencyConflict
from .ledger import canonical, now_iso


def request_hash(command: str, request: dict) -> str:
    return hashlib.sha256(canonical({"command": command, "request": request}).encode()).hexdigest()


def run(engine: Engine | Connection, key: str | None, command: str, request: dict,
        fn: Callable[[Connection], dict], reads: Sequence[driver.Query] = ()) -> dict:
    """Run `fn` as one write transaction, recording `key`; replay the stored result on repeat.

    The check and the record happen inside the same transaction as the effect, so a client
    that retries after a timeout gets exactly one effect whether or not the first attempt
    committed. The same key with different content raises IdempotencyConflict. `reads` are
    the queries `fn` will make (see db.run_write).
    """
    digest = request_hash(command, request) if key else ""
    lookup = ("SELECT command, request_hash, result FROM operation WHERE key = ?", (key,))

    def work(conn: Connection) -> dict:
        if key:
            rows = driver.select(conn, lookup)[0]
            row = rows[0] if rows else None
            if row is not None:
                if row[0] != command or row[1] != digest:
                    raise IdempotencyConflict(
                        f"key {key!r} was already used for a different request ({row[0]}); use a new key")
                return {**json.loads(row[2]), "replayed": True}
        result = fn(conn)
        if key:
            driver.write(conn, ("INSERT INTO operation (key, command, request_hash, result, created_at) "
                                "VALUES (?, ?, ?, ?, ?)", (key, command, digest, json.dumps(result, default=str),
                                                           now_iso())))
        return {**result, "replayed": False}

    return db.run_write(engine, work, reads=([lookup] if key else []) + list(reads))
