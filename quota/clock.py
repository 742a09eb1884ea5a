"""The library's today: the calendar's date, or QUOTA_TODAY (YYYY-MM-DD) when set, so a demo runs on a pinned
date. QUOTA_TODAY may set the clock back (a demo on its day, a re-run of an old scenario), never ahead of the
calendar: a clock pinned years ahead would let `expire` end every lot. Read on every call (no state kept)."""
from __future__ import annotations

import datetime as dt
import os
import re

from quota.errors import QuotaError

_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ClockError(QuotaError):
    code = "bad_date"


def parse_day(text: str, what: str = "date") -> dt.date:
    """A date written YYYY-MM-DD, and only so (Python's fromisoformat also takes '20261130' and week dates)."""
    value = (text or "").strip()
    try:
        if not _DAY.match(value):
            raise ValueError
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ClockError(reason="not_a_date", what=what, value=str(text)) from None


def as_date(value) -> dt.date | None:
    """A date read back from the database (a date on PostgreSQL, ISO text on SQLite), or None."""
    if value is None or isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def today() -> dt.date:
    calendar = dt.date.today()
    pinned = os.environ.get("QUOTA_TODAY", "").strip()
    if not pinned:
        return calendar
    day = parse_day(pinned, "QUOTA_TODAY")
    if day > calendar:
        raise ClockError(reason="clock_ahead", what="QUOTA_TODAY", value=str(day), calendar=str(calendar))
    return day
