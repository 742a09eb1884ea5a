"""Reads kept by the state of the ledger they were read at: for a long-running process (the web workspace),
where the same balance is asked for many times between two writes.

Every change to what a balance shows is a ledger transaction (the ledger is append-only; lots, postings and
lot statuses are written with their transaction) or a new rulebook version (units, names, matching keys). So
the chain's head (seq, hash), the rulebook's (version, sha256) and the library's today identify the state a
read sees. `ReadCache.get` reads that state first (one statement, each part a probe of a primary key), then
answers from the cache if a read of the same call was made at the same state, else makes the read and keeps it
under the state read *before* it: the read sees that state or a later one, never an earlier one. A write
committed before the request began has moved the head, so it is always seen (no stale answer is possible).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

from sqlalchemy import Engine

from quota import clock
from quota.store import db


def ledger_state(engine: Engine) -> tuple:
    """(seq, hash, rulebook version, rulebook sha256) as of now (no lock taken)."""
    return tuple(db.read_one(engine, db.HEAD_SQL))


class ReadCache:
    """A bounded map (least recently used out) from (state, call) to what the call returned. The values are
    shared between callers: they must not be changed by those who receive them."""

    def __init__(self, size: int = 64):
        self.size = size
        self._values: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, engine: Engine, fn: Callable[..., Any], keep: Callable[[Any], bool] | None = None,
            at: tuple | None = None, **kwargs: Any) -> Any:
        """`fn(engine, **kwargs)` as of the ledger's current state (kwargs must be hashable). `keep(value)` false:
        the value is returned but not kept (a solve stopped by its time limit: the next may do better). `at`: the
        state as the caller read it just before (a row of db.HEAD_SQL), instead of reading it here."""
        key = self.key(ledger_state(engine) if at is None else at, fn, kwargs)
        found, value = self.find(key)
        if found:
            return value
        value = fn(engine, **kwargs)  # refusals propagate and are not kept
        with self._lock:
            self.misses += 1
            if keep is not None and not keep(value):
                return value
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
        return value

    @staticmethod
    def key(at: tuple, fn: Callable[..., Any], kwargs: dict) -> tuple:
        """What `fn(engine, **kwargs)` read at state `at` (a row of db.HEAD_SQL) is kept under: the state, the
        library's today (a lot lapses at midnight with no write) and the call."""
        return (tuple(at), clock.today(), fn.__module__, fn.__qualname__, tuple(sorted(kwargs.items())))

    def find(self, key: tuple) -> tuple[bool, Any]:
        """(True, value) when a read was kept under `key`, else (False, None): a caller that read the state itself
        answers from the cache without handing the call elsewhere."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return True, self._values[key]
        return False, None
