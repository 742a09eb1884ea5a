"""Auditor's views: source statement (trace) of a project, and verification of the ledger."""
from __future__ import annotations


from sqlalchemy import Engine, text

from quota.accounts import lot_balance_join
from quota import clock
from quota.store import db
from quota.ledger import posting
from quota.rules import versions
from quota import units
from quota.errors import Problem
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


def verify(engine: Engine, progress=None, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Recompute the hash chain and every balance from the postings, compare the tables with what the chain
    committed, and the matching keys with the rulebooks (errors as data); with `expect_head`, the chain
    must end at that hash."""
    if not db.schema_exists(engine):
        raise db.NotInitialised("the database has no quota schema: run `quota init --rules FILE` first")
    with db.reading(engine) as conn:
        summary, problems = posting.verify(conn, progress, expect_head)
        problems += versions.check_matching(conn)
    return {**summary, "ok": not problems}, problems
