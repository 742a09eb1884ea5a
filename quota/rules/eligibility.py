"""Which lot may serve which project, and where grams go back to: the one eligibility rule.

A gram may be held for project P on date D only from a lot that
- holds P's pollutant,
- is effective on D (its vintage is not after D),
- is not expired by the later of D and P's `needed_by` (a lot expiring on day X serves until X-1),
- is not revoked and not superseded,
- carries P's matching key (watershed, airshed or zone) under the rulebook in force at D.

`reserve`, `approve`, `release`, `cancel`, `plan apply`, the planner's candidate sets, `balance` and `verify`
all decide through `why_not`, `serves_until` and `return_account` below; nothing else in the library states
the rule. Grams never return to a lot that could not serve again: a release or cancellation from a revoked,
superseded or expired lot goes to `revoked:<P>`, `superseded:<P>` or `expired:<P>`.
"""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from quota.errors import Reason
from quota.accounts import lot_account, pool_account
from quota.rules.book import Rulebook

ACTIVE, REVOKED, SUPERSEDED = "active", "revoked", "superseded"


class LotFacts(NamedTuple):
    """What the rule needs to know of a lot."""
    serial: str
    pollutant: str
    zone: str
    effective: dt.date
    expires: dt.date | None
    status: str = ACTIVE  # active | revoked | superseded


def serves_until(today: dt.date, needed_by: dt.date | None) -> dt.date:
    """The day a lot must still be valid on to serve a project on `today`: the later of today and needed_by."""
    return needed_by if needed_by is not None and needed_by > today else today


def expired_on(lot: LotFacts, day: dt.date) -> bool:
    """True when the lot can no longer serve on `day` (it expires at the start of its expiry date)."""
    return lot.expires is not None and lot.expires <= day


def why_not(book: Rulebook, lot: LotFacts, pollutant: str, key: str, today: dt.date,
            needed_by: dt.date | None, now: dt.date | None = None) -> str | None:
    """None when `lot` may serve a project's `pollutant` with matching `key` on `today`; else the reason.

    `now` is the clock's today: an operation dated earlier (back-dated within the rules) still cannot hold
    grams of a lot that has expired by now."""
    if lot.status != ACTIVE:
        return Reason("lot_status", lot=lot.serial, state=lot.status)
    if lot.pollutant != pollutant:
        return Reason("lot_pollutant", lot=lot.serial, held=lot.pollutant, pollutant=pollutant)
    if lot.effective > today:
        return Reason("lot_not_effective", lot=lot.serial, date=str(lot.effective))
    until = serves_until(max(today, now) if now else today, needed_by)
    if expired_on(lot, until):
        return (Reason("lot_expires_before", lot=lot.serial, expires=str(lot.expires), until=str(until))
                if until > today else Reason("lot_expired", lot=lot.serial, expires=str(lot.expires)))
    try:
        lot_key = book.matching_key(pollutant, lot.zone)
    except KeyError:
        return Reason("lot_zone_gone", lot=lot.serial, zone=lot.zone)
    if lot_key != key:
        return Reason("lot_key", lot=lot.serial, key=lot_key, needs=key)
    return None


def return_account(lot: LotFacts, on: dt.date) -> str:
    """Where grams released or cancelled from `lot` on `on` go: back to the lot only while it can serve."""
    if lot.status == REVOKED:
        return pool_account("revoked", lot.pollutant)
    if lot.status == SUPERSEDED:
        return pool_account("superseded", lot.pollutant)
    if expired_on(lot, on):
        return pool_account("expired", lot.pollutant)
    return lot_account(lot.serial)


def available_on(lot: LotFacts, day: dt.date) -> bool:
    """True when the lot's own balance counts as available on `day` (balance queries): effective, not expired,
    active. What is not is reported apart (`lapsed_g`, `pending_g`)."""
    return lot.status == ACTIVE and lot.effective <= day and not expired_on(lot, day)
