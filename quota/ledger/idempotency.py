"""Idempotency keys: a repeated command with the same key and content reports the first result."""
from __future__ import annotations

import hashlib
import json
import unicodedata
from typing import Callable, Sequence

from sqlalchemy import Connection, Engine

from quota.store import db
from quota.store import driver
from quota.errors import IdempotencyConflict, Refused
from quota.ledger.posting import canonical, now_iso


KEY_MAX = 200  # characters


def check_key(key: str | None) -> None:
    """A key is absent (None) or 1 to KEY_MAX characters with no control characters; an empty key
    would silently switch idempotency off, so it is refused like the others."""
    if key is None:
        return
    if not isinstance(key, str) or key == "":
        raise Refused("bad_key", reason="empty")
    if len(key) > KEY_MAX:
        raise Refused("bad_key", reason="too_long", length=len(key), max=KEY_MAX)
    bad = next((c for c in key if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Cs")), None)
    if bad is not None:
        raise Refused("bad_key", reason="control_character", character=f"U+{ord(bad):04X}")


def request_hash(command: str, request: dict) -> str:
    return hashlib.sha256(canonical({"command": command, "request": request}).encode()).hexdigest()


# the stored row and (PostgreSQL) the user that wrote it, beside the user asking: a row another user wrote
# (migration 0012 records it, the clerk cannot choose it) is refused, not replayed
LOOKUP_PG = "SELECT command, request_hash, result, db_user, current_user FROM operation WHERE key = ?"
LOOKUP_SQLITE = "SELECT command, request_hash, result, NULL, NULL FROM operation WHERE key = ?"


def run(engine: Engine | Connection, key: str | None, command: str, request: dict,
        fn: Callable[[Connection], dict], reads: Sequence[driver.Query] = ()) -> dict:
    """Run `fn` as one write transaction, recording `key`; replay the stored result on repeat.

    The check and the record happen inside the same transaction as the effect, so a client
    that retries after a timeout gets exactly one effect whether or not the first attempt
    committed. The same key with different content raises IdempotencyConflict. `reads` are
    the queries `fn` will make (see db.run_write).
    """
    check_key(key)
    if key is None:  # nothing to look up or record
        return db.run_write(engine, lambda conn: {**fn(conn), "replayed": False}, reads=reads)
    digest = request_hash(command, request)
    lookup = (LOOKUP_SQLITE if db.is_sqlite(engine) else LOOKUP_PG, (key,))

    def work(conn: Connection) -> dict:
        rows = driver.select(conn, lookup)[0]
        if rows:
            command_was, digest_was, result_was, user_was, user = rows[0]
            if user_was is not None and user_was != user:  # PostgreSQL: another user's row is never reported
                raise IdempotencyConflict(key=key, user=user_was, by=user)
            if command_was != command or digest_was != digest:
                raise IdempotencyConflict(key=key, command=command_was)
            return {**json.loads(result_was), "replayed": True}
        result = fn(conn)
        driver.write(conn, ("INSERT INTO operation (key, command, request_hash, result, created_at) "
                            "VALUES (?, ?, ?, ?, ?)", (key, command, digest, json.dumps(result, default=str),
                                                       now_iso())))
        return {**result, "replayed": False}

    return db.run_write(engine, work, reads=[lookup, *reads])
