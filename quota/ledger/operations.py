"""Quota lifecycle: reserve, approve, release, cancel, expire and revoke, one transaction each (on an Engine, or
on a Connection the caller holds to reuse across operations)."""
from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import Connection, Engine, text

from quota import clock
from quota.accounts import lot_balance_join, pool_account
from quota.ledger import drawing
from quota.store import db, driver
from quota import identity
from quota.ledger import idempotency
from quota.ledger import posting
from quota.rules import versions
from quota.ledger.drawing import (NO_LIMIT, Snapshot, candidate_lots, plan_draws, reads_ahead, snapshot)
from quota.rules.eligibility import return_account, serves_until, why_not
from quota.errors import NotFound, Refused
from quota.ledger.projects import Need, ProjectInfo
from quota.rules.book import Rulebook


def edge_id(text: str, what: str) -> str:
    """An id typed by a user, in its one normal form (identity.code); a look-alike or invisible character is
    refused here, before anything is read (bad_id)."""
    try:
        return identity.code(text, what)
    except identity.BadId as exc:
        raise Refused("bad_id", what=what, value=exc.text, reason=exc.code, **exc.facts) from None


def edge_text(text: str, what: str) -> str:
    """Free text typed by a user (--doc, --memo, the actor): kept as typed, refused with control characters."""
    try:
        return identity.free_text(text, what)
    except identity.BadId as exc:
        raise Refused("bad_text", what=what, value=exc.text, reason=exc.code, **exc.facts) from None


def check_date(conn: Connection, day: dt.date, what: str = "date") -> None:
    """Dates within reason: a mutation is dated no later than today (clock.today) and not before the chain's
    last transaction (so as-of views of the past never change, even with a clock set back). Tally imports are
    the one exception to the second part: a lot is booked at its vintage (see tallies)."""
    today = clock.today()
    if day > today:
        raise Refused("bad_date", reason="future", what=what, date=day.isoformat(), today=today.isoformat())
    rows = driver.select(conn, drawing.LAST_DATE)[0]  # read ahead with the lock on PostgreSQL
    last = clock.as_date(rows[0][0]) if rows else None  # operations' dates never decrease along the chain
    if last is not None and day < last:
        raise Refused("bad_date", reason="backdated", what=what, date=day.isoformat(), last=last.isoformat())


def reserve(engine: Engine | Connection, project_id: str, *, actor: str, pollutant: str | None = None,
            expires: dt.date | None = None, date: dt.date | None = None, key: str | None = None,
            dry_run: bool = False) -> dict:
    """Bring the project's reservation to its full requirement under the rulebook in force (ratio applied),
    from eligible lots, earliest expiry first; all pollutants (or the one named) or nothing.

    With `dry_run` the reservation is carried out and checked in full, then rolled back: the result (with
    "dry_run": true) shows the draws it would take now, or the refusal it would meet; nothing is written and
    the key is neither looked up nor recorded.

    On a project that already holds a reservation this tops it up: grams on lots that can no longer serve it
    go back (to revoked:/superseded:/expired: or their lot, see eligibility), grams above a lowered
    requirement go back to their lots (latest expiry first), and what is missing is drawn."""
    project_id, actor = edge_id(project_id, "project id"), edge_text(actor, "actor")
    pollutant = edge_id(pollutant, "pollutant") if pollutant is not None else None
    now = clock.today()
    today = date or now
    floor = max(today, now)  # a back-dated reservation still draws no lot that has expired by now
    request = ({"project": project_id, "pollutant": pollutant, "expires": str(expires), "date": str(today)}
               if key else {})  # only a keyed request is kept (as its hash)

    def work(conn: Connection) -> dict:
        check_date(conn, today)
        if expires is not None and expires <= today:
            raise Refused("bad_date", reason="lapse", date=expires.isoformat(), today=today.isoformat())
        version, book = versions.current(conn)
        snap = snapshot(conn, book, project_id)
        info = snap.info
        if info.state not in ("pipeline", "reserved"):
            raise Refused("project_state", project_id=project_id, state=info.state, action="reserve")
        if pollutant is not None and pollutant not in {n.pollutant for n in info.needs}:
            raise Refused("unknown_pollutant", project_id=project_id, pollutant=pollutant)
        needs = [n for n in info.needs if pollutant is None or n.pollutant == pollutant]
        returns, missing = rebalance(book, snap, needs, today, now)
        if not returns and not missing:
            raise Refused("nothing_to_reserve", project_id=project_id,
                          pollutants=[pollutant] if pollutant else [n.pollutant for n in needs])
        draws: drawing.Draws = {}
        if missing:
            on = serves_until(floor, info.needed_by)
            lots = candidate_lots(conn, book, project_id, missing, on, today, floor=floor)
            draws, short = plan_draws(missing, lots, cut=drawing.DRAW_LIMIT)
            if any(m < 0 for _, m in short):  # the first rows did not cover a need: read them all
                lots.update(candidate_lots(conn, book, project_id, [n for n, m in short if m < 0], on, today,
                                           NO_LIMIT, floor))
                draws, short = plan_draws(missing, lots)
            if short:
                raise Refused("insufficient_quota", project_id=project_id, short=shortfall_facts(book, short))
        drawn = [lot for picks in draws.values() for lot, _ in picks]
        for need in missing:  # the SQL walk encodes the rule; the rule itself has the last word
            for lot, _ in draws.get(need.pollutant, []):
                reason = why_not(book, lot.facts(), need.pollutant, need.key, today, info.needed_by, now)
                if reason:
                    raise Refused("lot_not_eligible", project_id=project_id, lot=lot.serial, reason=reason)
        return post_reservation(conn, book, version, info, draws, today, expires, actor,
                                returns=returns, known=snap.known(drawn))

    if dry_run:
        return _rolled_back(engine, work, reads_ahead(engine, project_id, today, floor))
    return idempotency.run(engine, key, "reserve", request, work, reads_ahead(engine, project_id, today, floor))


class _Preview(Exception):
    def __init__(self, result: dict):
        super().__init__("preview")
        self.result = result


def _rolled_back(engine: Engine | Connection, work, reads) -> dict:
    """Run a write operation's `work` in full (every check and every write, sent to the database so its
    constraints speak too), then roll it back and return what it would have returned."""
    def preview(conn: Connection) -> dict:
        result = work(conn)
        driver.flush(conn)
        raise _Preview(result)

    try:
        db.run_write(engine, preview, reads=reads)
    except _Preview as done:
        return {**done.result, "dry_run": True, "replayed": False}
    raise AssertionError("unreachable")  # pragma: no cover


class Return(NamedTuple):
    """Grams a reservation gives back: from lot `lot` of `pollutant` to account `to` (the lot's own, or where
    grams that left circulation go), the lot being in `zone`."""
    lot: str
    pollutant: str
    grams: int
    to: str
    zone: str


def rebalance(book: Rulebook, snap: Snapshot, needs: list[Need], today: dt.date,
              now: dt.date | None = None) -> tuple[list[Return], list[Need]]:
    """What a reservation must give back and draw to hold exactly each need's requirement from eligible lots:
    (returns, needs with `required_g` set to the grams still missing)."""
    facts, held = snap.lot_facts(), snap.held("reserved")
    returns: list[Return] = []
    missing: list[Need] = []
    info = snap.info
    for need in needs:
        keep = []
        for lot, grams in sorted(held.get(need.pollutant, {}).items()):
            f = facts[lot]
            if why_not(book, f, need.pollutant, need.key, today, info.needed_by, now):
                returns.append(Return(lot, need.pollutant, grams, return_account(f, max(today, now or today)), f.zone))
            else:
                keep.append((f, grams))
        keep.sort(key=lambda fg: (fg[0].expires is None, fg[0].expires or dt.date.max, fg[0].serial))
        left = need.required_g
        for f, grams in keep:  # earliest expiry kept first; the surplus of a lowered requirement goes back
            kept = min(grams, left)
            left -= kept
            if grams > kept:
                returns.append(Return(f.serial, need.pollutant, grams - kept, posting.lot_account(f.serial), f.zone))
        if left:
            missing.append(need._replace(required_g=left))
    return returns, missing


def shortfall_facts(book: Rulebook, short: list[tuple[Need, int]]) -> list[dict]:
    """The facts of an insufficient_quota refusal, one per short need."""
    return [{"pollutant": n.pollutant, "key": n.key, "required_g": n.required_g, "eligible_g": n.required_g - m,
             "short_g": m, "unit": book.pollutants[n.pollutant].unit, "ratio": str(n.ratio)} for n, m in short]


def post_reservation(conn: Connection, book: Rulebook, version: int, info: ProjectInfo, draws: drawing.Draws,
                     today: dt.date, expires: dt.date | None, actor: str, *, returns: list[Return] = (),
                     memo: str = "", known=None) -> dict:
    """Post a reservation of the given draws ({pollutant: [(lot, grams)]}, already checked by the caller
    against the eligibility rule) and the returns that go with it; the project becomes reserved. The one
    way quota is reserved: `reserve` and `plan apply` both post through it."""
    specs = []
    account = posting.project_account(info.project_id, "reserved")
    if returns:
        legs = []
        for r in returns:
            legs.append(posting.Leg(account, r.lot, r.pollutant, -r.grams, info.zone, info.project_id))
            legs.append(posting.Leg(r.to, r.lot, r.pollutant, r.grams, r.zone))
        specs.append(posting.TxnSpec("release", today, legs, f"rebalance {info.name}", "", info.project_id,
                                    {"rebalance": True}))
    legs = []
    for pol in sorted(draws):
        for lot, amount in draws[pol]:
            legs.append(posting.Leg(posting.lot_account(lot.serial), lot.serial, pol, -amount, lot.zone))
            legs.append(posting.Leg(account, lot.serial, pol, amount, info.zone, info.project_id))
    needs = [n for n in info.needs if n.pollutant in draws or any(r.pollutant == n.pollutant for r in returns)]
    if legs:
        meta = {"requirements": {n.pollutant: {"increment_g": n.increment_g, "ratio": str(n.ratio),
                                               "why": list(n.reasons), "required_g": n.required_g, "key": n.key}
                                 for n in needs},
                "expires": expires.isoformat() if expires else None}
        specs.append(posting.TxnSpec("reserve", today, legs, memo or f"reserve for {info.name}", "",
                                    info.project_id, meta))
    expiry = {lot.serial: lot.expires for picks in draws.values() for lot, _ in picks}
    seqs = posting.post_many(conn, specs, actor=actor, rulebook=version, lot_expiry=expiry, known=known)
    driver.write(conn, ("UPDATE project SET state = 'reserved', reserved_until = COALESCE(?, reserved_until) "
                        "WHERE project_id = ?", (expires, info.project_id)))
    return {"project_id": info.project_id, "txn": seqs[-1], "state": "reserved",
            "draws": [{"lot": lot.serial, "pollutant": pol, "amount_g": amount}
                      for pol in sorted(draws) for lot, amount in draws[pol]],
            "returned": [{"lot": r.lot, "pollutant": r.pollutant, "amount_g": r.grams, "to": r.to} for r in returns]}


def holding_problems(book: Rulebook, snap: Snapshot, today: dt.date, now: dt.date | None = None) -> list[dict]:
    """Why the project's reservation is not exactly its requirement from eligible lots (empty when it is)."""
    facts, held, info = snap.lot_facts(), snap.held("reserved"), snap.info
    out = []
    needs = {n.pollutant: n for n in info.needs}
    for pol in sorted(set(held) - set(needs)):
        out.append({"pollutant": pol, "problem": "not_needed", "held_g": sum(held[pol].values()),
                    "unit": book.pollutants[pol].unit if pol in book.pollutants else "t/a"})
    for pol, need in sorted(needs.items()):
        lots = held.get(pol, {})
        for lot, grams in sorted(lots.items()):
            reason = why_not(book, facts[lot], pol, need.key, today, info.needed_by, now)
            if reason:
                out.append({"pollutant": pol, "problem": "lot_not_eligible", "lot": lot, "held_g": grams,
                            "reason": reason, "unit": book.pollutants[pol].unit})
        total = sum(lots.values())
        if total != need.required_g:
            out.append({"pollutant": pol, "problem": "short" if total < need.required_g else "surplus",
                        "held_g": total, "required_g": need.required_g, "key": need.key, "ratio": str(need.ratio),
                        "unit": book.pollutants[pol].unit})
    return out


def approve(engine: Engine | Connection, project_id: str, *, doc: str, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Confirm a project's reservations as allocations, citing the approval document. Refused unless every
    pollutant holds exactly its requirement under the rulebook in force, from lots eligible today."""
    project_id, actor = edge_id(project_id, "project id"), edge_text(actor, "actor")
    now = clock.today()
    today = date or now
    if not doc.strip():
        raise Refused("missing_doc")
    doc = edge_text(doc, "approval document number")

    def work(conn: Connection) -> dict:
        version, book, snap = _read_project(conn, project_id, today)
        info = snap.info
        if info.state != "reserved":
            raise Refused("project_state", project_id=project_id, state=info.state, action="approve")
        lapse = info.reserved_until
        if lapse is not None and lapse <= max(today, now):
            raise Refused("reservation_lapsed", project_id=project_id, lapsed=lapse.isoformat())
        problems = holding_problems(book, snap, today, now)
        if problems:
            raise Refused("lot_not_eligible" if any(p["problem"] == "lot_not_eligible" for p in problems)
                          else "holding_mismatch", project_id=project_id, problems=problems)
        legs = _move(snap.held("reserved"), info, "reserved", "allocated")
        seq = posting.post_many(conn, [posting.TxnSpec("approve", today, legs, f"approved {info.name}", doc,
                                                     project_id)],
                               actor=actor, rulebook=version, known=snap.known())[0]
        driver.write(conn, ("UPDATE project SET state = 'approved', doc = ?, reserved_until = NULL "
                            "WHERE project_id = ?", (doc, project_id)))
        return {"project_id": project_id, "txn": seq, "state": "approved", "doc": doc}

    return idempotency.run(engine, key, "approve", {"project": project_id, "doc": doc, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def _move(held: dict[str, dict[str, int]], info: ProjectInfo, src: str, dst: str) -> list[posting.Leg]:
    legs = []
    for pol, lots in sorted(held.items()):
        for lot, amount in sorted(lots.items()):
            legs.append(posting.Leg(posting.project_account(info.project_id, src), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(posting.Leg(posting.project_account(info.project_id, dst), lot, pol, amount, info.zone,
                                   info.project_id))
    return legs


def _return_legs(snap: Snapshot, part: str, on: dt.date) -> list[posting.Leg]:
    """Legs returning held grams: to their lots while they can serve, else to revoked:, superseded: or
    expired: (eligibility.return_account)."""
    legs, info, facts = [], snap.info, snap.lot_facts()
    for pol, by_lot in sorted(snap.held(part).items()):
        for lot, amount in sorted(by_lot.items()):
            legs.append(posting.Leg(posting.project_account(info.project_id, part), lot, pol, -amount, info.zone,
                                   info.project_id))
            legs.append(posting.Leg(return_account(facts[lot], on), lot, pol, amount, facts[lot].zone))
    return legs


def _read_project(conn: Connection, project_id: str, today: dt.date) -> tuple[int, Rulebook, Snapshot]:
    """What approve, release and cancel start with: the operation's date checked, the rulebook in force, the
    project's snapshot."""
    check_date(conn, today)
    version, book = versions.current(conn)
    return version, book, snapshot(conn, book, project_id)


def _post_return(conn: Connection, snap: Snapshot, kind: str, legs: list[posting.Leg], on: dt.date, actor: str,
                 version: int, memo: str) -> int:
    expiry = {lot: f.expires for lot, f in snap.lot_facts().items()}
    return posting.post_many(conn, [posting.TxnSpec(kind, on, legs, memo, "", snap.info.project_id)], actor=actor,
                            rulebook=version, lot_expiry=expiry, known=snap.known())[0]


def _set_state(conn: Connection, project_id: str, state: str) -> None:
    driver.write(conn, ("UPDATE project SET state = ?, reserved_until = NULL WHERE project_id = ?", (state, project_id)))


def release(engine: Engine | Connection, project_id: str, *, actor: str, date: dt.date | None = None,
            key: str | None = None) -> dict:
    """Return a project's reservations to their lots; the project goes back to the pipeline."""
    project_id, actor = edge_id(project_id, "project id"), edge_text(actor, "actor")
    today = date or clock.today()

    def work(conn: Connection) -> dict:
        version, book, snap = _read_project(conn, project_id, today)
        info = snap.info
        if info.state != "reserved" or not snap.held("reserved"):
            raise Refused("project_state", project_id=project_id, state=info.state, action="release")
        legs = _return_legs(snap, "reserved", max(today, clock.today()))  # as reserve: an expired lot takes nothing back
        seq = _post_return(conn, snap, "release", legs, today, actor, version, f"release {info.name}")
        _set_state(conn, project_id, "pipeline")
        return {"project_id": project_id, "txn": seq, "state": "pipeline"}

    return idempotency.run(engine, key, "release", {"project": project_id, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def cancel(engine: Engine | Connection, project_id: str, *, actor: str, date: dt.date | None = None,
           key: str | None = None) -> dict:
    """Withdraw a project for good, returning reserved and allocated quota to its lots (or to revoked:,
    superseded: or expired: when the lot can no longer serve)."""
    project_id, actor = edge_id(project_id, "project id"), edge_text(actor, "actor")
    today = date or clock.today()

    def work(conn: Connection) -> dict:
        version, book, snap = _read_project(conn, project_id, today)
        info = snap.info
        if info.state == "cancelled":
            raise Refused("project_state", project_id=project_id, state=info.state, action="cancel")
        now = max(today, clock.today())  # as reserve: a lot expired by now takes nothing back
        legs = _return_legs(snap, "reserved", now) + _return_legs(snap, "allocated", now)
        seq = None
        if legs:
            seq = _post_return(conn, snap, "cancel", legs, today, actor, version, f"cancel {info.name}")
        _set_state(conn, project_id, "cancelled")
        return {"project_id": project_id, "txn": seq, "state": "cancelled"}

    return idempotency.run(engine, key, "cancel", {"project": project_id, "date": str(today)}, work,
                           reads_ahead(engine, project_id))


def expire(engine: Engine | Connection, as_of: dt.date, *, actor: str, key: str | None = None) -> dict:
    """Post expired lots' balances to expired:<P> and release reservations that lapsed by `as_of`."""
    actor = edge_text(actor, "actor")

    def work(conn: Connection) -> dict:
        check_date(conn, as_of, "expire --as-of")
        version, book = versions.current(conn)
        legs = []
        expired = []
        for serial, pol, zone, amount in conn.execute(text(
                "SELECT l.serial, l.pollutant, l.zone, b.amount_g FROM lot l JOIN balance b "
                "ON " + lot_balance_join("b", "l.serial") + " "
                "WHERE l.expires IS NOT NULL AND l.expires <= :d AND b.amount_g > 0 ORDER BY l.serial"),
                {"d": as_of}):
            legs += [posting.Leg(posting.lot_account(serial), serial, pol, -int(amount), zone),
                     posting.Leg(pool_account("expired", pol), serial, pol, int(amount), zone)]
            expired.append({"lot": serial, "pollutant": pol, "amount_g": int(amount)})
        lapsed = []
        now = max(as_of, clock.today())  # as release and cancel: a lot expired by now takes nothing back
        for (pid,) in conn.execute(text("SELECT project_id FROM project WHERE state = 'reserved' AND "
                                        "reserved_until IS NOT NULL AND reserved_until <= :d ORDER BY project_id"),
                                   {"d": as_of}).all():
            snap = snapshot(conn, book, pid)
            if snap.held("reserved"):
                _post_return(conn, snap, "release", _return_legs(snap, "reserved", now), as_of, actor, version,
                             "reservation lapsed")
            _set_state(conn, pid, "pipeline")
            lapsed.append(pid)
        seq = None
        if legs:
            seq = posting.post(conn, "expire", as_of, legs, actor=actor, rulebook=version,
                              memo=f"lots expired by {as_of}")
        return {"as_of": as_of.isoformat(), "txn": seq, "expired": expired, "lapsed_reservations": lapsed}

    return idempotency.run(engine, key, "expire", {"as_of": str(as_of)}, work)


def revoke(engine: Engine | Connection, serial: str, *, actor: str, memo: str, date: dt.date | None = None,
           key: str | None = None) -> dict:
    """Revoke a lot (its tally was found invalid): its unallocated balance goes to revoked:<P> and the lot is
    marked revoked, so nothing drawn from it ever returns to it. Reservations from it can no longer be
    approved (re-reserve); allocations already made stay and are flagged in trace and statements."""
    serial, actor = edge_id(serial, "lot"), edge_text(actor, "actor")
    today = date or clock.today()
    if not memo.strip():
        raise Refused("missing_memo")
    memo = edge_text(memo, "memo")

    def work(conn: Connection) -> dict:
        check_date(conn, today)
        version, _ = versions.current(conn)
        row = conn.execute(text("SELECT l.pollutant, l.zone, b.amount_g, s.status FROM lot l JOIN balance b ON "
                                + lot_balance_join("b", "l.serial") + " LEFT JOIN lot_status s "
                                "ON s.serial = l.serial WHERE l.serial = :s"), {"s": serial}).first()
        if row is None:
            raise NotFound(what="lot", value=serial)
        pol, zone, amount, status = row[0], row[1], int(row[2]), row[3]
        if status:
            raise Refused("lot_state", lot=serial, state=status)
        legs = [posting.Leg(posting.lot_account(serial), serial, pol, -amount, zone),
                posting.Leg(pool_account("revoked", pol), serial, pol, amount, zone)] if amount > 0 else []
        seq = posting.post(conn, "revoke", today, legs, actor=actor, rulebook=version, memo=memo, meta={"lot": serial})
        mark_lot(conn, serial, "revoked", seq)
        return {"lot": serial, "txn": seq, "revoked_g": amount}

    return idempotency.run(engine, key, "revoke", {"lot": serial, "memo": memo, "date": str(today)}, work)


def mark_lot(conn: Connection, serial: str, status: str, seq: int) -> None:
    """Record that `serial` can no longer serve (revoked or superseded), citing the transaction that says so."""
    driver.write(conn, ("INSERT INTO lot_status (serial, status, txn_seq) VALUES (?, ?, ?)", (serial, status, seq)))
