"""Quota lifecycle: reserve, approve, release, cancel, expire and revoke, one transaction each."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, text

from . import idempotency, ledger, rulebooks, units
from .errors import NotFound, Refused
from .projects import Need, ProjectInfo, load_projects
from .rules import Rulebook


@dataclass(frozen=True)
class LotAvail:
    serial: str
    zone: str
    expires: dt.date | None
    available_g: int


def eligible_lots(conn: Connection, book: Rulebook, pollutant: str, key: str, on: dt.date,
                  today: dt.date) -> list[LotAvail]:
    """Active lots of `pollutant` with matching key `key`, effective by `today` and not expired
    on `on`, with a positive balance, earliest expiry first (never-expiring last), then serial."""
    zones = sorted(z for z in book.zones if book.matching_key(pollutant, z) == key)
    rows = conn.execute(text(
        "SELECT l.serial, l.zone, l.expires, b.amount_g, l.effective_date FROM lot l "
        "JOIN balance b ON b.account = 'lot:' || l.serial AND b.lot = l.serial "
        "WHERE l.pollutant = :p AND l.zone IN :z AND b.amount_g > 0").bindparams(bindparam("z", expanding=True)),
        {"p": pollutant, "z": zones or [""]})
    out = []
    for serial, zone, expires, amount, effective in rows:
        expires = ledger._as_date(expires)
        if ledger._as_date(effective) > today or (expires is not None and expires <= on):
            continue
        if zone not in book.zones or book.matching_key(pollutant, zone) != key:
            continue
        out.append(LotAvail(serial, zone, expires, int(amount)))
    out.sort(key=lambda l: (l.expires is None, l.expires or dt.date.max, l.serial))
    return out


def _project(conn: Connection, book: Rulebook, project_id: str) -> ProjectInfo:
    return load_projects(conn, book, project_id=project_id)[0]


def _held(conn: Connection, project_id: str, part: str) -> dict[str, dict[str, int]]:
    """{pollutant: {lot: grams}} held by the project's reserved or allocated account."""
    out: dict[str, dict[str, int]] = {}
    for lot, pol, amount in conn.execute(text(
            "SELECT lot, pollutant, amount_g FROM balance WHERE account = :a AND amount_g > 0 ORDER BY lot"),
            {"a": ledger.project_account(project_id, part)}):
        out.setdefault(pol, {})[lot] = int(amount)
    return out


def shortfall_message(book: Rulebook, short: list[tuple[Need, int]]) -> str:
    parts = []
    for need, missing in short:
        unit = book.pollutants[need.pollutant].unit
        parts.append(f"{need.pollutant} short by {units.display_up(missing, unit)} {unit} ({missing} g) in "
                     f"{need.key} (needs {units.display_up(need.required_g, unit)} at ratio {need.ratio}, eligible "
                     f"{units.display(need.required_g - missing, unit)})")
    return "; ".join(parts)


def plan_draws(conn: Connection, book: Rulebook, info: ProjectInfo, needs: list[Need], on: dt.date,
               today: dt.date) -> dict[str, list[tuple[LotAvail, int]]]:
    """Draw each need from eligible lots, earliest expiry first; refuse with every shortfall."""
    draws: dict[str, list[tuple[LotAvail, int]]] = {}
    short: list[tuple[Need, int]] = []
    for need in needs:
        left = need.required_g
        picks = []
        for lot in eligible_lots(conn, book, need.pollutant, need.key, on, today):
            if left == 0:
                break
            take = min(left, lot.available_g)
            picks.append((lot, take))
            left -= take
        if left:
            short.append((need, left))
        draws[need.pollutant] = picks
    if short:
        raise Refused(f"cannot reserve {info.project_id}: " + shortfall_message(book, short))
    return draws


def reserve(engine: Engine, project_id: str, *, actor: str, pollutant: str | None = None,
            expires: dt.date | None = None, date: dt.date | None = None, key: str | None = None) -> dict:
    """Reserve the project's full requirement (ratio applied) from eligible lots, all or nothing."""
    today = date or dt.date.today()
    request = {"project": project_id, "pollutant": pollutant, "expires": str(expires), "date": str(today)}

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        info = _project(conn, book, project_id)
        if info.state not in ("pipeline", "reserved"):
            raise Refused(f"project {project_id} is {info.state}; only pipeline projects can be reserved")
        # a pipeline project holds nothing (release, cancel and lapse empty it), so only look when reserved
        held = set(_held(conn, project_id, "reserved")) if info.state == "reserved" else set()
        needs = [n for n in info.needs if n.pollutant not in held and (pollutant is None or n.pollutant == pollutant)]
        if pollutant is not None and pollutant not in {n.pollutant for n in info.needs}:
            raise Refused(f"project {project_id} has no {pollutant} increment")
        if not needs:
            raise Refused(f"project {project_id} is already reserved for "
                          f"{pollutant or ', '.join(sorted(held))}")
        on = info.needed_by or today
        draws = plan_draws(conn, book, info, needs, on, today)
        return _post_reservation(conn, book, version, info, needs, draws, today, expires, actor)

    return idempotency.run(engine, key, "reserve", request, work)


def _post_reservation(conn, book, version, info, needs, draws, today, expires, actor, memo="") -> dict:
    legs = []
    for need in needs:
        for lot, amount in draws[need.pollutant]:
            legs.append(ledger.Leg(ledger.lot_account(lot.serial), lot.serial, need.pollutant, -amount, lot.zone))
            legs.append(ledger.Leg(ledger.project_account(info.project_id, "reserved"), lot.serial,
                                   need.pollutant, amount, info.zone, info.project_id))
    meta = {"requirements": {n.pollutant: {"increment_g": n.increment_g, "ratio": str(n.ratio),
                                           "why": list(n.reasons), "required_g": n.required_g, "key": n.key}
                             for n in needs},
            "expires": expires.isoformat() if expires else None}
    expiry = {lot.serial: lot.expires for n in needs for lot, _ in draws[n.pollutant]}
    seq = ledger.post_many(conn, [ledger.TxnSpec("reserve", today, legs, memo or f"reserve for {info.name}", "",
                                                 info.project_id, meta)],
                           actor=actor, rulebook=version, lot_expiry=expiry)[0]
    conn.execute(text("UPDATE project SET state = 'reserved', reserved_until = :u WHERE project_id = :p"),
                 {"u": expires, "p": info.project_id})
    return {"project_id": info.project_id, "txn": seq, "state": "reserved",
            "draws": [{"lot": lot.serial, "pollutant": n.pollutant, "amount_g": amount}
                      for n in needs for lot, amount in draws[n.pollutant]]}


def approve(engine: Engine, project_id: str, *, doc: str, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Confirm a project's reservations as allocations, citing the approval document."""
    today = date or dt.date.today()
    if not doc.strip():
        raise Refused("an approval needs the approval document number (--doc)")

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        info = _project(conn, book, project_id)
        if info.state != "reserved":
            raise Refused(f"project {project_id} is {info.state}; reserve it before approving")
        held = _held(conn, project_id, "reserved")
        missing = sorted({n.pollutant for n in info.needs} - set(held))
        if missing:
            raise Refused(f"project {project_id} has no reservation for {', '.join(missing)}; reserve it first")
        legs = _move(held, info, "reserved", "allocated")
        seq = ledger.post(conn, "approve", today, legs, actor=actor, rulebook=version, project_id=project_id,
                          ref=doc, memo=f"approved {info.name}")
        conn.execute(text("UPDATE project SET state = 'approved', doc = :d, reserved_until = NULL "
                          "WHERE project_id = :p"), {"d": doc, "p": project_id})
        return {"project_id": project_id, "txn": seq, "state": "approved", "doc": doc}

    return idempotency.run(engine, key, "approve", {"project": project_id, "doc": doc, "date": str(today)}, work)


def _move(held: dict[str, dict[str, int]], info: ProjectInfo, src: str, dst: str) -> list[ledger.Leg]:
    legs = []
    for pol, lots in sorted(held.items()):
        for lot, amount in sorted(lots.items()):
            legs.append(ledger.Leg(ledger.project_account(info.project_id, src), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(ledger.Leg(ledger.project_account(info.project_id, dst), lot, pol, amount, info.zone,
                                   info.project_id))
    return legs


def _return_legs(conn: Connection, info: ProjectInfo, part: str, held: dict[str, dict[str, int]],
                 on: dt.date) -> list[ledger.Leg]:
    """Legs returning held grams to their lots, or to expired:<P> when the lot has expired."""
    legs = []
    serials = sorted({lot for by_lot in held.values() for lot in by_lot})
    lots = {r[0]: (r[1], ledger._as_date(r[2])) for r in conn.execute(
        text("SELECT serial, zone, expires FROM lot WHERE serial IN :s").bindparams(bindparam("s", expanding=True)),
        {"s": serials or [""]})}
    for pol, by_lot in sorted(held.items()):
        for lot, amount in sorted(by_lot.items()):
            zone, expires = lots[lot]
            dest = f"expired:{pol}" if expires is not None and expires <= on else ledger.lot_account(lot)
            legs.append(ledger.Leg(ledger.project_account(info.project_id, part), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(ledger.Leg(dest, lot, pol, amount, zone))
    return legs


def release(engine: Engine, project_id: str, *, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Return a project's reservations to their lots; the project goes back to the pipeline."""
    today = date or dt.date.today()

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        info = _project(conn, book, project_id)
        held = _held(conn, project_id, "reserved")
        if info.state != "reserved" or not held:
            raise Refused(f"project {project_id} is {info.state} and holds no reservation to release")
        seq = ledger.post(conn, "release", today, _return_legs(conn, info, "reserved", held, today), actor=actor,
                          rulebook=version, project_id=project_id, memo=f"release {info.name}")
        conn.execute(text("UPDATE project SET state = 'pipeline', reserved_until = NULL WHERE project_id = :p"),
                     {"p": project_id})
        return {"project_id": project_id, "txn": seq, "state": "pipeline"}

    return idempotency.run(engine, key, "release", {"project": project_id, "date": str(today)}, work)


def cancel(engine: Engine, project_id: str, *, actor: str, date: dt.date | None = None,
           key: str | None = None) -> dict:
    """Withdraw a project for good, returning reserved and allocated quota to its lots."""
    today = date or dt.date.today()

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        info = _project(conn, book, project_id)
        if info.state == "cancelled":
            raise Refused(f"project {project_id} is already cancelled")
        legs = (_return_legs(conn, info, "reserved", _held(conn, project_id, "reserved"), today)
                + _return_legs(conn, info, "allocated", _held(conn, project_id, "allocated"), today))
        seq = None
        if legs:
            seq = ledger.post(conn, "cancel", today, legs, actor=actor, rulebook=version, project_id=project_id,
                              memo=f"cancel {info.name}")
        conn.execute(text("UPDATE project SET state = 'cancelled', reserved_until = NULL WHERE project_id = :p"),
                     {"p": project_id})
        return {"project_id": project_id, "txn": seq, "state": "cancelled"}

    return idempotency.run(engine, key, "cancel", {"project": project_id, "date": str(today)}, work)


def expire(engine: Engine, as_of: dt.date, *, actor: str, key: str | None = None) -> dict:
    """Post expired lots' balances to expired:<P> and release reservations that lapsed by `as_of`."""

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        legs = []
        expired = []
        for serial, pol, zone, amount in conn.execute(text(
                "SELECT l.serial, l.pollutant, l.zone, b.amount_g FROM lot l JOIN balance b "
                "ON b.account = 'lot:' || l.serial AND b.lot = l.serial "
                "WHERE l.expires IS NOT NULL AND l.expires <= :d AND b.amount_g > 0 ORDER BY l.serial"),
                {"d": as_of}):
            legs += [ledger.Leg(ledger.lot_account(serial), serial, pol, -int(amount), zone),
                     ledger.Leg(f"expired:{pol}", serial, pol, int(amount), zone)]
            expired.append({"lot": serial, "pollutant": pol, "amount_g": int(amount)})
        lapsed = []
        for (pid,) in conn.execute(text("SELECT project_id FROM project WHERE state = 'reserved' AND "
                                        "reserved_until IS NOT NULL AND reserved_until <= :d ORDER BY project_id"),
                                   {"d": as_of}).all():
            info = _project(conn, book, pid)
            held = _held(conn, pid, "reserved")
            if held:
                ledger.post(conn, "release", as_of, _return_legs(conn, info, "reserved", held, as_of), actor=actor,
                            rulebook=version, project_id=pid, memo="reservation lapsed")
            conn.execute(text("UPDATE project SET state = 'pipeline', reserved_until = NULL WHERE project_id = :p"),
                         {"p": pid})
            lapsed.append(pid)
        seq = None
        if legs:
            seq = ledger.post(conn, "expire", as_of, legs, actor=actor, rulebook=version,
                              memo=f"lots expired by {as_of}")
        return {"as_of": as_of.isoformat(), "txn": seq, "expired": expired, "lapsed_reservations": lapsed}

    return idempotency.run(engine, key, "expire", {"as_of": str(as_of)}, work)


def revoke(engine: Engine, serial: str, *, actor: str, memo: str, date: dt.date | None = None,
           key: str | None = None) -> dict:
    """Revoke the unallocated part of a lot (its tally was found invalid)."""
    today = date or dt.date.today()

    def work(conn: Connection) -> dict:
        version, _ = rulebooks.current(conn)
        row = conn.execute(text("SELECT l.pollutant, l.zone, b.amount_g FROM lot l JOIN balance b ON "
                                "b.account = 'lot:' || l.serial AND b.lot = l.serial WHERE l.serial = :s"),
                           {"s": serial}).first()
        if row is None:
            raise NotFound(f"no lot {serial!r}")
        pol, zone, amount = row[0], row[1], int(row[2])
        if amount <= 0:
            raise Refused(f"lot {serial} has no unallocated balance to revoke")
        seq = ledger.post(conn, "revoke", today, [
            ledger.Leg(ledger.lot_account(serial), serial, pol, -amount, zone),
            ledger.Leg(f"revoked:{pol}", serial, pol, amount, zone)], actor=actor, rulebook=version,
            memo=memo, meta={"lot": serial})
        return {"lot": serial, "txn": seq, "revoked_g": amount}

    return idempotency.run(engine, key, "revoke", {"lot": serial, "memo": memo, "date": str(today)}, work)
