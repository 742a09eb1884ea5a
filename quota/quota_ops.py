"""Quota lifecycle: reserve, approve, release, cancel, expire and revoke, one transaction each (on an Engine, or
on a Connection the caller holds to reuse across operations)."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection, Engine, text

from . import drawing, driver, idempotency, ledger, rulebooks
from .drawing import (NO_LIMIT, Snapshot, candidate_lots, plan_draws, reads_ahead, shortfall_message, snapshot)
from .errors import NotFound, Refused
from .projects import ProjectInfo


def reserve(engine: Engine | Connection, project_id: str, *, actor: str, pollutant: str | None = None,
            expires: dt.date | None = None, date: dt.date | None = None, key: str | None = None) -> dict:
    """Reserve the project's full requirement (ratio applied) from eligible lots, all or nothing."""
    today = date or dt.date.today()
    request = ({"project": project_id, "pollutant": pollutant, "expires": str(expires), "date": str(today)}
               if key else {})  # only a keyed request is kept (as its hash)

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        snap = snapshot(conn, book, project_id)
        info = snap.info
        if info.state not in ("pipeline", "reserved"):
            raise Refused(f"project {project_id} is {info.state}; only pipeline projects can be reserved")
        held = set(snap.held("reserved"))
        needs = [n for n in info.needs if n.pollutant not in held and (pollutant is None or n.pollutant == pollutant)]
        if pollutant is not None and pollutant not in {n.pollutant for n in info.needs}:
            raise Refused(f"project {project_id} has no {pollutant} increment")
        if not needs:
            raise Refused(f"project {project_id} is already reserved for "
                          f"{pollutant or ', '.join(sorted(held))}")
        on = info.needed_by or today
        lots = candidate_lots(conn, book, project_id, needs, on, today)
        draws, short = plan_draws(needs, lots, cut=drawing.DRAW_LIMIT)
        if any(missing < 0 for _, missing in short):  # the first rows did not cover a need: read them all
            lots.update(candidate_lots(conn, book, project_id, [n for n, m in short if m < 0], on, today, NO_LIMIT))
            draws, short = plan_draws(needs, lots)
        if short:
            raise Refused(f"cannot reserve {info.project_id}: " + shortfall_message(book, short))
        drawn = [lot for picks in draws.values() for lot, _ in picks]
        return _post_reservation(conn, book, version, info, needs, draws, today, expires, actor,
                                 known=snap.known(drawn))

    return idempotency.run(engine, key, "reserve", request, work, reads_ahead(engine, project_id, today))


def _post_reservation(conn, book, version, info, needs, draws, today, expires, actor, memo="", known=None) -> dict:
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
                           actor=actor, rulebook=version, lot_expiry=expiry, known=known)[0]
    driver.write(conn, ("UPDATE project SET state = 'reserved', reserved_until = ? WHERE project_id = ?",
                        (expires, info.project_id)))
    return {"project_id": info.project_id, "txn": seq, "state": "reserved",
            "draws": [{"lot": lot.serial, "pollutant": n.pollutant, "amount_g": amount}
                      for n in needs for lot, amount in draws[n.pollutant]]}


def approve(engine: Engine | Connection, project_id: str, *, doc: str, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Confirm a project's reservations as allocations, citing the approval document."""
    today = date or dt.date.today()
    if not doc.strip():
        raise Refused("an approval needs the approval document number (--doc)")

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        snap = snapshot(conn, book, project_id)
        info = snap.info
        if info.state != "reserved":
            raise Refused(f"project {project_id} is {info.state}; reserve it before approving")
        held = snap.held("reserved")
        missing = sorted({n.pollutant for n in info.needs} - set(held))
        if missing:
            raise Refused(f"project {project_id} has no reservation for {', '.join(missing)}; reserve it first")
        legs = _move(held, info, "reserved", "allocated")
        seq = ledger.post_many(conn, [ledger.TxnSpec("approve", today, legs, f"approved {info.name}", doc,
                                                     project_id)],
                               actor=actor, rulebook=version, known=snap.known())[0]
        driver.write(conn, ("UPDATE project SET state = 'approved', doc = ?, reserved_until = NULL "
                            "WHERE project_id = ?", (doc, project_id)))
        return {"project_id": project_id, "txn": seq, "state": "approved", "doc": doc}

    return idempotency.run(engine, key, "approve", {"project": project_id, "doc": doc, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def _move(held: dict[str, dict[str, int]], info: ProjectInfo, src: str, dst: str) -> list[ledger.Leg]:
    legs = []
    for pol, lots in sorted(held.items()):
        for lot, amount in sorted(lots.items()):
            legs.append(ledger.Leg(ledger.project_account(info.project_id, src), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(ledger.Leg(ledger.project_account(info.project_id, dst), lot, pol, amount, info.zone,
                                   info.project_id))
    return legs


def _return_legs(snap: Snapshot, part: str, on: dt.date) -> list[ledger.Leg]:
    """Legs returning held grams to their lots, or to expired:<P> when the lot has expired."""
    legs, info, lots = [], snap.info, snap.lot_info()
    for pol, by_lot in sorted(snap.held(part).items()):
        for lot, amount in sorted(by_lot.items()):
            zone, expires = lots[lot]
            dest = f"expired:{pol}" if expires is not None and expires <= on else ledger.lot_account(lot)
            legs.append(ledger.Leg(ledger.project_account(info.project_id, part), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(ledger.Leg(dest, lot, pol, amount, zone))
    return legs


def _post_return(conn: Connection, snap: Snapshot, kind: str, legs: list[ledger.Leg], on: dt.date, actor: str,
                 version: int, memo: str) -> int:
    expiry = {lot: exp for lot, (_, exp) in snap.lot_info().items()}
    return ledger.post_many(conn, [ledger.TxnSpec(kind, on, legs, memo, "", snap.info.project_id)], actor=actor,
                            rulebook=version, lot_expiry=expiry, known=snap.known())[0]


def _set_state(conn: Connection, project_id: str, state: str) -> None:
    driver.write(conn, ("UPDATE project SET state = ?, reserved_until = NULL WHERE project_id = ?", (state, project_id)))


def release(engine: Engine | Connection, project_id: str, *, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Return a project's reservations to their lots; the project goes back to the pipeline."""
    today = date or dt.date.today()

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        snap = snapshot(conn, book, project_id)
        info = snap.info
        if info.state != "reserved" or not snap.held("reserved"):
            raise Refused(f"project {project_id} is {info.state} and holds no reservation to release")
        seq = _post_return(conn, snap, "release", _return_legs(snap, "reserved", today), today, actor, version,
                           f"release {info.name}")
        _set_state(conn, project_id, "pipeline")
        return {"project_id": project_id, "txn": seq, "state": "pipeline"}

    return idempotency.run(engine, key, "release", {"project": project_id, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def cancel(engine: Engine | Connection, project_id: str, *, actor: str, date: dt.date | None = None,
           key: str | None = None) -> dict:
    """Withdraw a project for good, returning reserved and allocated quota to its lots."""
    today = date or dt.date.today()

    def work(conn: Connection) -> dict:
        version, book = rulebooks.current(conn)
        snap = snapshot(conn, book, project_id)
        info = snap.info
        if info.state == "cancelled":
            raise Refused(f"project {project_id} is already cancelled")
        legs = _return_legs(snap, "reserved", today) + _return_legs(snap, "allocated", today)
        seq = None
        if legs:
            seq = _post_return(conn, snap, "cancel", legs, today, actor, version, f"cancel {info.name}")
        _set_state(conn, project_id, "cancelled")
        return {"project_id": project_id, "txn": seq, "state": "cancelled"}

    return idempotency.run(engine, key, "cancel", {"project": project_id, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def expire(engine: Engine | Connection, as_of: dt.date, *, actor: str, key: str | None = None) -> dict:
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
            snap = snapshot(conn, book, pid)
            if snap.held("reserved"):
                _post_return(conn, snap, "release", _return_legs(snap, "reserved", as_of), as_of, actor, version,
                             "reservation lapsed")
            _set_state(conn, pid, "pipeline")
            lapsed.append(pid)
        seq = None
        if legs:
            seq = ledger.post(conn, "expire", as_of, legs, actor=actor, rulebook=version,
                              memo=f"lots expired by {as_of}")
        return {"as_of": as_of.isoformat(), "txn": seq, "expired": expired, "lapsed_reservations": lapsed}

    return idempotency.run(engine, key, "expire", {"as_of": str(as_of)}, work)


def revoke(engine: Engine | Connection, serial: str, *, actor: str, memo: str, date: dt.date | None = None,
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
