"""The library's today: the calendar's date, or QUOTA_TODAY (YYYY-MM-DD) when set, so a demo or a test can
run on a pinned date. Read on every call (no state kept in the library)."""
from __future__ import annotations

import datetime as dt
import os


def today() -> dt.date:
    pinned = os.environ.get("QUOTA_TODAY", "").strip()
    return dt.date.fromisoformat(pinned) if pinned else dt.date.today()
