"""What a hostile user tried against the web workspace and its API that once got through, on both engines: each
test is one attack that the workspace must now refuse (or answer without a 500), with nothing written."""
from __future__ import annotations

import datetime as dt
import threading
import time

from quota.store import users

PASSWORD = "correct horse battery"


class _SlowHasher:
    """Argon2 as used, but each verify waits until released: every concurrent attempt is in flight at once."""

    def __init__(self, real, release: threading.Event):
        self.real, self.release, self.verified = real, release, 0

    def hash(self, password):
        return self.real.hash(password)

    def verify(self, digest, password):
        self.verified += 1
        self.release.wait(10)
        return self.real.verify(digest, password)


def test_concurrent_guesses_cannot_outrun_the_lock_out(engine, monkeypatch):
    """Thirty wrong passwords sent at once: only LOCK_AFTER of them are checked at all, and the account is locked
    afterwards (once, the 11th concurrent failure wrote `locked_until = NULL` and so unlocked it; and every guess
    in flight was checked, the right one let in)."""
    users.add_user(engine, "wang", "clerk", PASSWORD)
    release = threading.Event()
    slow = _SlowHasher(users._hasher(), release)
    monkeypatch.setattr(users, "_hasher", lambda: slow)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    answers = []
    threads = [threading.Thread(target=lambda i=i: answers.append(users.authenticate(engine, "wang", f"guess {i}", now)))
               for i in range(30)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(answers) + slow.verified < 30:
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(20)
    assert len(answers) == 30 and all(a.user is None for a in answers)
    assert slow.verified <= users.LOCK_AFTER
    assert users.authenticate(engine, "wang", PASSWORD, now + dt.timedelta(minutes=1)).reason == "locked"
