"""Balance queries: available / reserved / allocated now (from balance totals) or as of a date (replay)."""
from __future__ import annotations

import datetime as dt
from typing import Iterator

from sqlalchemy import Connection, Engine, text

from quota import clock
from quota.store import db
from quota.rules import versions
from quota import units
from quota.errors import Refused
from quota.accounts import lot_balance_join
from quota.clock import as_date


def pair_balances(conn: Connection, as_of: dt.date | None = None) -> Iterator[tuple]:
    """(kind, pollutant, zone, account, lot, project_id, amount_g) per pair, now or as of a date."""
    if as_of is None:
        yield from conn.execute(text(
            "SELECT kind, pollutant, zone, account, lot, project_id, amount_g FROM balance"))
        return
    yield from conn.execute(text(
        "SELECT b.kind, b.pollutant, b.zone, b.account, b.lot, b.project_id, SUM(p.amount_g) "
        "FROM posting p JOIN txn t ON t.seq = p.txn_seq "
        "JOIN balance b ON b.account = p.account AND b.lot = p.lot "
        "WHERE t.effective_date <= :d "
        "GROUP BY b.kind, b.pollutant, b.zone, b.account, b.lot, b.project_id"), {"d": as_of})


def balance_rows(conn: Connection, units_of: dict[str, str], *, by: str = "pollutant",
                 pollutant: str | None = None, zone: str | None = None,
                 as_of: dt.date | None = None, today: dt.date | None = None) -> list[dict]:
    """Available / reserved / allocated per pollutant (and zone, or lot), as DESIGN 5.3.

    `available_g` excludes lots already past their expiry on the query date (by lot too); what they
    still hold is reported as `lapsed_g` until `quota expire` posts it to expired.
    """
    day = as_of or today or clock.today()
    if as_of is None and by in ("pollutant", "zone"):
        return _current_totals(conn, units_of, by, pollutant, zone, day)
    lots = {r[0]: r for r in conn.execute(text(
        "SELECT l.serial, l.zone, l.tally_id, t.source_id, l.issued_g, l.expires, l.effective_date, "
        "l.pollutant FROM lot l JOIN tally t ON t.tally_id = l.tally_id"))}
    status = dict(conn.execute(text("SELECT s.serial, s.status FROM lot_status s JOIN txn t ON t.seq = s.txn_seq "
                                    "WHERE t.effective_date <= :d"), {"d": day}).all()) if by == "lot" else {}
    groups: dict[tuple, dict] = {}
    for kind, pol, z, account, lot, project, amount in pair_balances(conn, as_of):
        if pollutant and pol != pollutant:
            continue
        if zone and z != zone:
            continue
        key = {"pollutant": (pol,), "zone": (pol, z), "lot": (pol, lot)}[by]
        g = groups.setdefault(key, {"available_g": 0, "reserved_g": 0, "allocated_g": 0,
                                    "lapsed_g": 0, "expired_g": 0, "revoked_g": 0, "superseded_g": 0})
        expires = as_date(lots[lot][5]) if lot in lots else None
        if kind == "lot":
            if expires is not None and expires <= day:  # cannot serve (eligibility): lapsed until `expire` runs
                g["lapsed_g"] += int(amount)
            else:
                g["available_g"] += int(amount)
        elif kind in ("reserved", "allocated", "expired", "revoked", "superseded"):
            g[f"{kind}_g"] += int(amount)
    if by == "lot":  # every lot is listed, exhausted, expired and revoked ones included
        for serial, row in lots.items():
            if (pollutant and row[7] != pollutant) or (zone and row[1] != zone):
                continue
            if as_of and as_date(row[6]) > day:
                continue
            groups.setdefault((row[7], serial), {"available_g": 0, "reserved_g": 0, "allocated_g": 0,
                                                 "lapsed_g": 0, "expired_g": 0, "revoked_g": 0, "superseded_g": 0})
    out = []
    for key in sorted(groups):
        g = groups[key]
        pol = key[0]
        unit = units_of.get(pol, "t/a")
        row = {"pollutant": pol}
        if by == "zone":
            row["zone"] = key[1]
        if by == "lot":
            lot = lots[key[1]]
            expires = as_date(lot[5])
            row.update({"lot": key[1], "zone": lot[1], "tally_id": lot[2], "source_id": lot[3],
                        "issued_g": int(lot[4]), "expires": expires.isoformat() if expires else None})
        row.update({k: g[k] for k in ("available_g", "reserved_g", "allocated_g")})
        if by == "lot":
            row.update({"lapsed_g": g["lapsed_g"], "expired_g": g["expired_g"], "revoked_g": g["revoked_g"],
                        "superseded_g": g["superseded_g"], "state": _lot_state(g, expires, day, status.get(key[1]))})
        else:
            row["lapsed_g"] = g["lapsed_g"]
        row.update({"unit": unit, "available": units.display(row["available_g"], unit),
                    "reserved": units.display(row["reserved_g"], unit),
                    "allocated": units.display(row["allocated_g"], unit)})
        out.append(row)
    return out


def _current_totals(conn: Connection, units_of: dict[str, str], by: str, pollutant: str | None,
                    zone: str | None, day: dt.date) -> list[dict]:
    """Current totals from balance_total, a small table maintained with the postings (fast at any size)."""
    group = "b.pollutant" + (", b.zone" if by == "zone" else "")
    where, args = ["b.kind IN ('lot', 'reserved', 'allocated')"], {"d": day}
    if pollutant:
        where.append("b.pollutant = :p")
        args["p"] = pollutant
    if zone:
        where.append("b.zone = :z")
        args["z"] = zone
    rows = conn.execute(text(
        f"SELECT {group}, b.kind, CASE WHEN b.kind = 'lot' AND b.expires <= :d THEN 1 ELSE 0 END AS lapsed, "
        f"SUM(b.amount_g) FROM balance_total b WHERE {' AND '.join(where)} GROUP BY {group}, b.kind, lapsed"), args)
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r[:2]) if by == "zone" else (r[0],)
        kind, lapsed, amount = r[-3], r[-2], int(r[-1] or 0)
        g = groups.setdefault(key, {"available_g": 0, "reserved_g": 0, "allocated_g": 0, "lapsed_g": 0})
        if kind == "lot":
            g["lapsed_g" if lapsed else "available_g"] += amount
        else:
            g[f"{kind}_g"] += amount
    out = []
    for key in sorted(groups):
        g, pol = groups[key], key[0]
        unit = units_of.get(pol, "t/a")
        row = {"pollutant": pol, **({"zone": key[1]} if by == "zone" else {}), **g, "unit": unit,
               "available": units.display(g["available_g"], unit), "reserved": units.display(g["reserved_g"], unit),
               "allocated": units.display(g["allocated_g"], unit)}
        out.append(row)
    return out


def _lot_state(g: dict, expires: dt.date | None, day: dt.date, status: str | None = None) -> str:
    if status:  # revoked or superseded: whatever it still lends to projects, it serves no one new
        return status
    if g["lapsed_g"] > 0:
        return "expired"
    if g["available_g"] > 0:
        return "active"
    if g["revoked_g"] > 0 and not (g["reserved_g"] or g["allocated_g"]):
        return "revoked"
    if g["expired_g"] > 0 and not (g["reserved_g"] or g["allocated_g"]):
        return "expired"
    return "exhausted"


def balance(engine: Engine, *, by: str = "pollutant", pollutant: str | None = None, zone: str | None = None,
            as_of: dt.date | None = None) -> dict:
    """Available / reserved / allocated quota (`quota balance --json`)."""
    if by not in ("pollutant", "zone", "lot"):
        raise Refused(f"cannot group by {by!r}: use pollutant, zone or lot", "bad_option", option="by", value=by)
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        unit_of = {p.code: p.unit for p in book.pollutants.values()}
        day = as_of or clock.today()
        # codes are case-insensitive, as in the imports; an unknown one is refused rather than shown as nothing
        pollutant = _known(pollutant, book.pollutants, "pollutant")
        zone = _known(zone, book.zones, "zone")
        rows = balance_rows(conn, unit_of, by=by, pollutant=pollutant, zone=zone, as_of=as_of, today=day)
    return {"as_of": day.isoformat(), "by": by, "rows": rows}


def _known(code: str | None, known: dict, what: str) -> str | None:
    if code is None:
        return None
    value = code.strip().upper()
    if value not in known:
        raise Refused(f"unknown {what} {code!r} (the rulebook has {', '.join(sorted(known))})", "unknown_code",
                      what=what, value=code)
    return value


def expiring_lots(conn: Connection, units_of: dict[str, str], day: dt.date, until: dt.date) -> list[dict]:
    """Lots that still hold quota today and expire after `day` and no later than `until`, soonest first, from
    the maintained balances (no replay): what the overview lists as expiring in the next 12 months."""
    rows = conn.execute(text(
        "SELECT l.serial, l.pollutant, l.zone, l.expires, b.amount_g FROM lot l JOIN balance b ON "
        + lot_balance_join("b", "l.serial") + " WHERE l.expires > :d AND l.expires <= :u AND b.amount_g > 0 "
        "ORDER BY l.expires, l.serial"), {"d": day, "u": until}).all()
    return [{"lot": r[0], "pollutant": r[1], "zone": r[2], "expires": as_date(r[3]).isoformat(),
             "available_g": int(r[4]), "available": units.display(int(r[4]), units_of[r[1]]), "unit": units_of[r[1]]}
            for r in rows]
