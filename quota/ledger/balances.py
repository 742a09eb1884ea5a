"""Balance queries: available / reserved / allocated now (from balance totals) or as of a date (replay)."""
from __future__ import annotations

import contextlib
import datetime as dt
from typing import Iterator

from sqlalchemy import Connection, Engine, text

from quota import clock
from quota.store import db
from quota.rules import versions
from quota import identity, units
from quota.errors import Refused
from quota.accounts import lot_balance_join
from quota.clock import as_date as _as_date


_KINDS = ("lot", "reserved", "allocated", "expired", "revoked", "superseded")
BATCH = 5000  # rows fetched at a time by the streamed queries


def _pairs_sql(as_of: dt.date | None) -> str:
    """(kind, pollutant, zone, lot, amount_g) of every balance pair: the maintained balances now, or a replay
    of the postings dated on or before :d (one row per posting; callers sum)."""
    if as_of is None:
        return "SELECT b.kind, b.pollutant, b.zone, b.lot, b.amount_g FROM balance b"
    return ("SELECT b.kind, b.pollutant, b.zone, b.lot, p.amount_g FROM posting p JOIN txn t ON t.seq = p.txn_seq "
            "JOIN balance b ON b.account = p.account AND b.lot = p.lot WHERE t.effective_date <= :d")


def _filters(pollutant: str | None, zone: str | None, args: dict, alias: str) -> str:
    where = []
    if pollutant:
        where.append(f"{alias}.pollutant = :p")
        args["p"] = pollutant
    if zone:
        where.append(f"{alias}.zone = :z")
        args["z"] = zone
    return " AND ".join(where)


def _order(conn: Connection, *columns: str) -> str:
    """ORDER BY in code-point order, as Python sorts strings (PostgreSQL's default collation may not be)."""
    collate = "" if conn.dialect.name == "sqlite" else ' COLLATE "C"'
    return ", ".join(c + collate for c in columns)


def _stream(conn: Connection, sql: str, args: dict):
    return conn.execute(text(sql), args, execution_options={"stream_results": True, "yield_per": BATCH})


def balance_rows(conn: Connection, units_of: dict[str, str], *, by: str = "pollutant",
                 pollutant: str | None = None, zone: str | None = None,
                 as_of: dt.date | None = None, today: dt.date | None = None) -> list[dict]:
    """Available / reserved / allocated per pollutant (and zone, or lot), in the shape of docs/design.md (JSON shapes).

    `available_g` excludes lots already past their expiry on the query date (by lot too); what they
    still hold is reported as `lapsed_g` until `quota expire` posts it to expired. By lot, see `lot_rows`
    (a stream: this list is for callers that want every row at once).
    """
    day = as_of or today or clock.today()
    if by == "lot":
        return list(lot_rows(conn, units_of, pollutant=pollutant, zone=zone, as_of=as_of, today=day))
    if as_of is None:
        return _current_totals(conn, units_of, by, pollutant, zone, day)
    return _totals_as_of(conn, units_of, by, pollutant, zone, as_of)


def lot_rows(conn: Connection, units_of: dict[str, str], *, pollutant: str | None = None, zone: str | None = None,
             as_of: dt.date | None = None, today: dt.date | None = None) -> Iterator[dict]:
    """The `--by lot` rows, one per lot in (pollutant, serial) order, streamed from one query (memory flat in
    the number of lots). Every lot is listed, exhausted, expired and revoked ones included: the lots that
    pass the filters (and were issued by `as_of`), and any lot holding a balance pair that passes them (a
    project of zone Z may hold grams of a lot of another zone)."""
    day = as_of or today or clock.today()
    args: dict = {"d": day}
    pair_where = _filters(pollutant, zone, args, "x")
    sums = ", ".join(f"SUM(CASE WHEN x.kind = '{k}' THEN x.amount_g ELSE 0 END) AS {k}_g" for k in _KINDS)
    agg = (f"SELECT x.pollutant, x.lot, {sums} FROM ({_pairs_sql(as_of)}) x "
           f"{'WHERE ' + pair_where if pair_where else ''} GROUP BY x.pollutant, x.lot")
    lot_where = [w for w in [_filters(pollutant, zone, args, "l"),
                             "l.effective_date <= :d" if as_of is not None else ""] if w]
    keep = f"(({' AND '.join(lot_where)}) OR g.lot IS NOT NULL)" if lot_where else "1 = 1"
    rows = _stream(conn, (
        f"SELECT l.pollutant, l.serial, l.zone, l.tally_id, t.source_id, l.issued_g, l.expires, s.status, "
        f"{', '.join(f'g.{k}_g' for k in _KINDS)} "
        "FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
        "LEFT JOIN (SELECT s.serial, s.status FROM lot_status s JOIN txn st ON st.seq = s.txn_seq "
        "           WHERE st.effective_date <= :d) s ON s.serial = l.serial "
        f"LEFT JOIN ({agg}) g ON g.lot = l.serial AND g.pollutant = l.pollutant "
        f"WHERE {keep} ORDER BY {_order(conn, 'l.pollutant', 'l.serial')}"), args)
    for r in rows:
        pol, serial, lot_zone, tally_id, source_id, issued, expires, status = r[:8]
        g = dict(zip(("lot_g", *(f"{k}_g" for k in _KINDS[1:])), (int(v or 0) for v in r[8:14])))
        expires = _as_date(expires)
        lot_g = g.pop("lot_g")
        lapsed = expires is not None and expires <= day  # cannot serve (eligibility): lapsed until `expire` runs
        g["available_g"], g["lapsed_g"] = (0, lot_g) if lapsed else (lot_g, 0)
        unit = units_of.get(pol, "t/a")
        yield {"pollutant": pol, "lot": serial, "zone": lot_zone, "tally_id": tally_id, "source_id": source_id,
               "issued_g": int(issued), "expires": expires.isoformat() if expires else None,
               "available_g": g["available_g"], "reserved_g": g["reserved_g"], "allocated_g": g["allocated_g"],
               "lapsed_g": g["lapsed_g"], "expired_g": g["expired_g"], "revoked_g": g["revoked_g"],
               "superseded_g": g["superseded_g"], "state": _lot_state(g, expires, day, status),
               "unit": unit, "available": units.display(g["available_g"], unit),
               "reserved": units.display(g["reserved_g"], unit), "allocated": units.display(g["allocated_g"], unit)}


def _totals_as_of(conn: Connection, units_of: dict[str, str], by: str, pollutant: str | None, zone: str | None,
                  as_of: dt.date) -> list[dict]:
    """Totals per pollutant (and zone) replayed from the postings dated on or before `as_of`, summed by the
    database (a lot's grams count as lapsed when it has expired by then)."""
    args: dict = {"d": as_of}
    where = _filters(pollutant, zone, args, "x")
    group = "x.pollutant" + (", x.zone" if by == "zone" else "")
    rows = conn.execute(text(
        f"SELECT {group}, x.kind, CASE WHEN x.kind = 'lot' AND l.expires <= :d THEN 1 ELSE 0 END AS lapsed, "
        f"SUM(x.amount_g) FROM ({_pairs_sql(as_of)}) x LEFT JOIN lot l ON l.serial = x.lot "
        f"{'WHERE ' + where if where else ''} GROUP BY {group}, x.kind, lapsed"), args)
    return _fold_totals(rows, by, units_of)


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
    return _fold_totals(rows, by, units_of)


def _total_dicts(groups: dict[tuple, dict], by: str, units_of: dict[str, str]) -> list[dict]:
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
    """Available / reserved / allocated quota (`quota balance --json`), every row in a list."""
    with balance_stream(engine, by=by, pollutant=pollutant, zone=zone, as_of=as_of) as (head, rows):
        return {**head, "rows": list(rows)}


@contextlib.contextmanager
def balance_stream(engine: Engine, *, by: str = "pollutant", pollutant: str | None = None, zone: str | None = None,
                   as_of: dt.date | None = None) -> Iterator[tuple[dict, Iterator[dict]]]:
    """`balance` as (head, rows): the result without its rows ({"as_of", "by"}) and an iterator of the rows, read
    from the database while the context is open. By lot the rows stream from one query (lot_rows), so a caller
    that writes each row as it comes (`quota balance --by lot --json`) holds one batch, not the ledger.
    Refusals (an unknown code or grouping) are raised on entering, before any row."""
    if by not in ("pollutant", "zone", "lot"):
        raise Refused("bad_option", option="by", value=by)
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        unit_of = {p.code: p.unit for p in book.pollutants.values()}
        day = as_of or clock.today()
        # codes are case-insensitive, as in the imports; an unknown one is refused rather than shown as nothing
        pollutant = _known(pollutant, book.pollutants, "pollutant")
        zone = _known(zone, book.zones, "zone")
        head = {"as_of": day.isoformat(), "by": by}
        if by == "lot":
            yield head, lot_rows(conn, unit_of, pollutant=pollutant, zone=zone, as_of=as_of, today=day)
        else:
            yield head, iter(balance_rows(conn, unit_of, by=by, pollutant=pollutant, zone=zone, as_of=as_of,
                                          today=day))


def _known(code: str | None, known: dict, what: str) -> str | None:
    if code is None:
        return None
    try:
        value = identity.code(code, what)  # the one normal form of every code typed by a user (ＮＯＸ is NOX)
    except identity.BadId:
        value = None
    if value not in known:
        raise Refused("unknown_code", what=what, value=code, known=sorted(known))
    return value


def _fold_totals(rows, by: str, units_of: dict[str, str]) -> list[dict]:
    """Total dicts from rows of (pollutant[, zone], kind, lapsed, grams): a lot's grams are available, or lapsed
    once it has expired; reserved and allocated grams are the projects'."""
    groups: dict[tuple, dict] = {}
    for r in rows:
        key = tuple(r[:2]) if by == "zone" else (r[0],)
        kind, lapsed, amount = r[-3], r[-2], int(r[-1] or 0)
        g = groups.setdefault(key, {"available_g": 0, "reserved_g": 0, "allocated_g": 0, "lapsed_g": 0})
        if kind == "lot":
            g["lapsed_g" if lapsed else "available_g"] += amount
        elif kind in ("reserved", "allocated"):
            g[f"{kind}_g"] += amount
    return _total_dicts(groups, by, units_of)


def expiring_lots(conn: Connection, units_of: dict[str, str], day: dt.date, until: dt.date) -> list[dict]:
    """Lots that still hold quota today and expire after `day` and no later than `until`, soonest first, from
    the maintained balances (no replay): what the overview lists as expiring in the next 12 months."""
    rows = conn.execute(text(
        "SELECT l.serial, l.pollutant, l.zone, l.expires, b.amount_g FROM lot l JOIN balance b ON "
        + lot_balance_join("b", "l.serial") + " WHERE l.expires > :d AND l.expires <= :u AND b.amount_g > 0 "
        "ORDER BY l.expires, l.serial"), {"d": day, "u": until}).all()
    return [{"lot": r[0], "pollutant": r[1], "zone": r[2], "expires": _as_date(r[3]).isoformat(),
             "available_g": int(r[4]), "available": units.display(int(r[4]), units_of[r[1]]), "unit": units_of[r[1]]}
            for r in rows]


def lot_page(engine: Engine, *, pollutant: str | None = None, zone: str | None = None, state: str | None = None,
             expires_before: dt.date | None = None, offset: int = 0, limit: int = 50) -> dict:
    """One page of the lots (`--by lot` rows) filtered by pollutant, zone, state and expiry (strictly before a
    date), with the number of lots that match: {"as_of", "total", "rows"}. Streamed: memory stays flat however
    many lots there are."""
    before = expires_before.isoformat() if expires_before else None
    offset, limit = max(0, int(offset)), max(1, min(int(limit), 1000))
    rows, total = [], 0
    with balance_stream(engine, by="lot", pollutant=pollutant, zone=zone) as (head, stream):
        for r in stream:
            if (state and r["state"] != state) or (before and not (r["expires"] and r["expires"] < before)):
                continue
            if offset <= total < offset + limit:
                rows.append(r)
            total += 1
    return {"as_of": head["as_of"], "total": total, "rows": rows}
