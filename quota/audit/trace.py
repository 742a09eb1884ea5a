"""Auditor's views: source statement (trace) of a project, and verification of the ledger."""
from __future__ import annotations

import datetime as dt


from sqlalchemy import Engine, text

from quota.accounts import lot_balance_join
from quota import clock
from quota.store import db
from quota.ledger import posting
from quota.rules import versions
from quota import units
from quota.errors import NotFound, Problem
from quota.ledger.projects import load_projects


def trace(engine: Engine, project_id: str) -> dict:
    """Source statement: every gram a project holds, back to its lot, tally, source and report."""
    from quota.ledger.operations import edge_id
    project_id = edge_id(project_id, "project id")
    today = clock.today()
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        info = load_projects(conn, book, project_id=project_id)[0]
        accounts = {"r": posting.project_account(project_id, "reserved"),
                    "a": posting.project_account(project_id, "allocated")}
        rows = conn.execute(text(
            "SELECT b.kind, b.lot, b.pollutant, b.amount_g, t.tally_id, t.source_id, s.name, t.measure, "
            "t.report_no, t.assessor, t.method, l.expires, l.zone, lb.amount_g, ls.status "
            "FROM balance b JOIN lot l ON l.serial = b.lot JOIN tally t ON t.tally_id = l.tally_id "
            "JOIN source s ON s.source_id = t.source_id LEFT JOIN lot_status ls ON ls.serial = l.serial "
            "LEFT JOIN balance lb ON " + lot_balance_join("lb", "l.serial") + " "
            "WHERE b.account IN (:r, :a) AND b.amount_g > 0 ORDER BY b.pollutant, b.lot, b.kind"), accounts).all()
        # the project's transactions (every transaction that moves a project's grams names the project)
        history = conn.execute(text(
            "SELECT seq, kind, effective_date, actor, ref, memo, hash FROM txn WHERE project_id = :p ORDER BY seq"),
            {"p": project_id}).all()
    draws = [{"lot": r[1], "pollutant": r[2], "amount_g": int(r[3]), "state": r[0], "tally_id": r[4],
              "source_id": r[5], "source_name": r[6], "measure": r[7], "report_no": r[8], "assessor": r[9],
              "method": r[10], "lot_expires": clock.as_date(r[11]).isoformat() if r[11] else None,
              "lot_zone": r[12], "lot_remaining_g": int(r[13] or 0),
              # revoked or superseded lots are flagged: what a project already holds from them stays, for the
              # auditor to see (an approval needs eligible lots, so a reserved one must be re-reserved)
              "lot_state": r[14] or ("expired" if r[11] and clock.as_date(r[11]) <= today else "active"),
              "unit": book.pollutants[r[2]].unit, "amount": units.display(int(r[3]), book.pollutants[r[2]].unit)}
             for r in rows]
    needs = [{"pollutant": n.pollutant, "increment_g": n.increment_g, "ratio": str(n.ratio), "why": list(n.reasons),
              "required_g": n.required_g, "key": n.key, "unit": book.pollutants[n.pollutant].unit,
              "held_g": sum(d["amount_g"] for d in draws if d["pollutant"] == n.pollutant)}
             for n in info.needs]
    return {"project_id": info.project_id, "name": info.name, "zone": info.zone, "industry": info.industry,
            "state": info.state, "needs": needs, "draws": draws,
            "history": [{"seq": h[0], "kind": h[1], "date": str(h[2]), "actor": h[3], "ref": h[4], "memo": h[5],
                         "hash": h[6]} for h in history]}


def lot_detail(engine: Engine, serial: str) -> dict:
    """A lot's page: the lot, its tally, source and report number, its balances by account kind now, and every
    posting that moved its grams, with the transaction's kind, date, actor and project."""
    from quota.ledger.operations import edge_id
    serial = edge_id(serial, "lot")
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        row = conn.execute(text(
            "SELECT l.serial, l.pollutant, l.zone, l.effective_date, l.expires, l.issued_g, t.tally_id, t.measure, "
            "t.baseline_actual, t.permitted, t.post, t.unit, t.baseline_year, t.method, t.assessor, t.report_no, "
            "s.source_id, s.name, ls.status FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
            "JOIN source s ON s.source_id = t.source_id LEFT JOIN lot_status ls ON ls.serial = l.serial "
            "WHERE l.serial = :s"), {"s": serial}).first()
        if row is None:
            raise NotFound(what="lot", value=serial)
        moves = conn.execute(text(
            "SELECT x.seq, x.kind, x.effective_date, x.booked_at, x.actor, x.project_id, x.ref, x.memo, p.account, "
            "p.amount_g FROM posting p JOIN txn x ON x.seq = p.txn_seq WHERE p.lot = :s ORDER BY x.seq, p.id"),
            {"s": serial}).all()
        held = conn.execute(text("SELECT kind, SUM(amount_g) FROM balance WHERE lot = :s GROUP BY kind"),
                            {"s": serial}).all()
    unit = book.pollutants[row[1]].unit
    expires = clock.as_date(row[4]) if row[4] else None
    state = row[18] or ("expired" if expires and expires <= clock.today() else "active")
    return {"lot": row[0], "pollutant": row[1], "zone": row[2], "effective_date": str(clock.as_date(row[3])),
            "expires": expires.isoformat() if expires else None, "issued_g": int(row[5]), "unit": unit,
            "issued": units.display(int(row[5]), unit), "state": state,
            "tally": {"tally_id": row[6], "measure": row[7], "baseline_actual": row[8], "permitted": row[9],
                      "post": row[10], "unit": row[11], "baseline_year": row[12], "method": row[13],
                      "assessor": row[14], "report_no": row[15]},
            "source": {"source_id": row[16], "name": row[17]},
            "balances": {k: int(v) for k, v in held},
            "movements": [{"seq": m[0], "kind": m[1], "date": str(clock.as_date(m[2])), "booked_at": m[3],
                           "actor": m[4], "project_id": m[5], "ref": m[6], "memo": m[7], "account": m[8],
                           "amount_g": int(m[9]), "amount": units.display(int(m[9]), unit)} for m in moves]}


def history(engine: Engine, *, project_id: str | None = None, lot: str | None = None,
            since: dt.date | None = None, until: dt.date | None = None, limit: int = 100,
            before_seq: int | None = None) -> dict:
    """Transactions with actor and booking time, newest first, filtered by project, lot (a transaction with a
    posting on it) and effective date; at most `limit` (1 to 1000), older pages from `before_seq`."""
    from quota.ledger.operations import edge_id
    limit = max(1, min(int(limit), 1000))
    where, args = [], {"n": limit}
    if project_id:
        where.append("x.project_id = :p")
        args["p"] = edge_id(project_id, "project id")
    if lot:
        where.append("x.seq IN (SELECT txn_seq FROM posting WHERE lot = :l)")
        args["l"] = edge_id(lot, "lot")
    if since:
        where.append("x.effective_date >= :a")
        args["a"] = since
    if until:
        where.append("x.effective_date <= :b")
        args["b"] = until
    if before_seq is not None:  # 0 or below: none (every sequence number is 1 or more)
        where.append("x.seq < :q")
        args["q"] = max(0, min(int(before_seq), 2**63 - 1))  # within the database's integers
    sql = ("SELECT x.seq, x.kind, x.effective_date, x.booked_at, x.actor, x.project_id, x.ref, x.memo, x.hash "
           "FROM txn x" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY x.seq DESC LIMIT :n")
    with db.reading(engine) as conn:
        rows = conn.execute(text(sql), args).all()
    return {"transactions": [{"seq": r[0], "kind": r[1], "date": str(clock.as_date(r[2])), "booked_at": r[3],
                              "actor": r[4], "project_id": r[5], "ref": r[6], "memo": r[7], "hash": r[8]}
                             for r in rows]}


PUBLIC_PER_PAGE = 50


def public_registry(engine: Engine, page: int = 1, per_page: int = PUBLIC_PER_PAGE) -> dict:
    """What the bureau discloses (环境信息公开): the lots with their source, issued and available amounts and
    expiry, and the approved allocations with their approval document, per pollutant. No actors, hashes,
    reservations under review or the pipeline. Paged: page `page` (from 1) holds up to `per_page` lots (by
    serial) and up to `per_page` approved projects (by id); "lots_total", "approved_total" and "pages" say
    how many there are."""
    from sqlalchemy import bindparam
    from quota.ledger import balances
    page, per_page = max(1, int(page)), max(1, min(int(per_page), 1000))
    offset = (page - 1) * per_page
    lots = balances.lot_page(engine, offset=offset, limit=per_page)
    serials = [r["lot"] for r in lots["rows"]]
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        names = dict(conn.execute(text(
            "SELECT l.serial, s.name FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
            "JOIN source s ON s.source_id = t.source_id WHERE l.serial IN :s").bindparams(
            bindparam("s", expanding=True)), {"s": serials}).all()) if serials else {}
        approved_total = int(conn.execute(text("SELECT count(*) FROM project WHERE state = 'approved'")).scalar_one())
        ids = conn.execute(text("SELECT project_id FROM project WHERE state = 'approved' ORDER BY project_id "
                                "LIMIT :n OFFSET :o"), {"n": per_page, "o": offset}).scalars().all()
        rows = conn.execute(text(
            "SELECT p.project_id, p.name, p.zone, p.doc, b.pollutant, SUM(b.amount_g) FROM project p "
            "JOIN balance b ON b.account = 'project:' || p.project_id || :part AND b.amount_g > 0 "
            "WHERE p.state = 'approved' AND p.project_id IN :ids GROUP BY p.project_id, p.name, p.zone, p.doc, "
            "b.pollutant ORDER BY p.project_id, b.pollutant").bindparams(bindparam("ids", expanding=True)),
            {"part": ":allocated", "ids": list(ids)}).all() if ids else []
    approved: dict[str, dict] = {}
    for pid, name, zone, doc, pol, grams in rows:
        unit = book.pollutants[pol].unit
        entry = approved.setdefault(pid, {"project_id": pid, "name": name, "zone": zone, "doc": doc or "",
                                          "allocated": []})
        entry["allocated"].append({"pollutant": pol, "amount_g": int(grams), "unit": unit,
                                   "amount": units.display(int(grams), unit)})
    return {"as_of": lots["as_of"], "page": page, "per_page": per_page, "lots_total": lots["total"],
            "approved_total": approved_total,
            "pages": max(1, -(-max(lots["total"], approved_total) // per_page)),
            "lots": [{"lot": r["lot"], "pollutant": r["pollutant"], "zone": r["zone"],
                      "source_name": names.get(r["lot"], ""), "issued": units.display(r["issued_g"], r["unit"]),
                      "available": r["available"], "unit": r["unit"], "expires": r["expires"], "state": r["state"]}
                     for r in lots["rows"]],
            "approved": list(approved.values())}


def verify_and_record(engine: Engine, actor: str, progress=None, expect_head: str | None = None
                      ) -> tuple[dict, list[Problem]]:
    """`verify`, then record the run (time, actor, the head it reached, the outcome) in verify_run, in its own
    small transaction: what every front end runs, so "last verified" is true whichever ran it."""
    import secrets
    summary, problems = verify(engine, progress, expect_head)
    run = {"r": secrets.token_hex(8), "at": posting.now_iso(), "a": str(actor)[:200], "ok": not problems,
           "s": int(summary.get("transactions") or 0), "h": str(summary.get("head") or ""), "p": len(problems)}
    db.run_write(engine, lambda conn: conn.execute(text(
        "INSERT INTO verify_run (run_id, at, actor, ok, head_seq, head_hash, problems) "
        "VALUES (:r, :at, :a, :ok, :s, :h, :p)"), run), lock=False)
    return summary, problems


LAST_VERIFICATION_SQL = ("SELECT at, actor, ok, head_seq, head_hash, problems FROM verify_run "
                         "ORDER BY at DESC, run_id DESC LIMIT 1")


def verification_of(row) -> dict | None:
    """A row of LAST_VERIFICATION_SQL as {at, actor, ok, head_seq, head_hash, problems}, or None for no row."""
    return None if row is None else {"at": row[0], "actor": row[1], "ok": bool(row[2]), "head_seq": int(row[3]),
                                     "head_hash": row[4], "problems": int(row[5])}


def last_verification(engine: Engine) -> dict | None:
    """The latest recorded verify run: {at, actor, ok, head_seq, head_hash, problems}, or None."""
    return verification_of(db.read_one(engine, LAST_VERIFICATION_SQL))  # one statement: no BEGIN/COMMIT


def verify(engine: Engine, progress=None, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Recompute the hash chain and every balance from the postings, compare the tables with what the chain
    committed, and the matching keys with the rulebooks (errors as data); with `expect_head`, the chain
    must end at that hash."""
    if not db.schema_exists(engine):
        raise db.NotInitialised(reason="no_schema")
    with db.reading(engine) as conn:
        summary, problems = posting.verify(conn, progress, expect_head)
        problems += versions.check_matching(conn)
    return {**summary, "ok": not problems}, problems
