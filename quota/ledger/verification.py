"""`quota verify` of a database: the chain and its balances through the pure checker (chaincheck), then every
provenance table, balance row, balance total and idempotency record against what the chain committed."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Connection, text

from quota.ledger import posting
from quota.ledger.chain import ChainChecker, KeptTxn
from quota import units
from quota.errors import Problem, Reason

TALLY_COLUMNS = [("source_id", "text"), ("measure", "text"), ("zone", "text"), ("pollutant", "text"),
                 ("baseline_actual", "text"), ("permitted", "text"), ("post", "text"), ("unit", "text"),
                 ("baseline_year", "int"), ("effective_date", "date"), ("method", "text"), ("assessor", "text"),
                 ("report_no", "text"), ("creditable_g", "int"), ("supersedes", "text")]
LOT_COLUMNS = [("tally_id", "text"), ("pollutant", "text"), ("zone", "text"), ("effective_date", "date"),
               ("expires", "date"), ("issued_g", "int")]
SOURCE_COLUMNS = [("name", "text"), ("zone", "text")]
PROJECT_COLUMNS = [("name", "text"), ("zone", "text"), ("industry", "text"), ("priority", "priority"),
                   ("needed_by", "date"), ("must_fund", "bool")]
NEED_COLUMNS = [("increment_g", "int"), ("ratio", "text")]
BALANCE_SQL = ("SELECT account, lot, kind, pollutant, zone, project_id, nonneg, amount_g, last_date FROM balance "
               "ORDER BY account, lot")


def verify(conn: Connection, progress=None, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Recompute the chain, every balance and total, and compare the tables with what the chain committed.
    Returns (summary, problems); problems is empty when the ledger is intact (and ends at `expect_head`)."""
    ops = conn.execute(text("SELECT key, command, result FROM operation ORDER BY key")).all()
    results = [(key, command, _json(result)) for key, command, result in ops]
    watch = {s for _, _, r in results if isinstance(r, dict) for s in _seqs(r) if isinstance(s, int)}
    total = conn.execute(text("SELECT count(*) FROM txn")).scalar_one() if progress else None
    chk = ChainChecker("txn", watch=watch)
    keys = {(int(v), p, z): k for v, p, z, k in conn.execute(text("SELECT version, pollutant, zone, key FROM matching"))}
    chk.key_of = lambda version, pollutant, zone: keys.get((version, pollutant, zone))
    chk.expect = expect_head.strip().lower() if expect_head else None
    for body, prev, digest in posting.iter_chain(conn):
        chk.txn(body, prev, digest, body["seq"])
        if progress and chk.seq % 5000 == 0:
            progress("verify", chk.seq, total)
    chk.finish()
    chk.check_head(0)
    accounts = 0
    for r in conn.execution_options(stream_results=True, yield_per=5000).execute(text(BALANCE_SQL)):
        accounts += 1
        chk.balance(r[0], r[1], 0, "balance", amount_g=int(r[7]), kind=r[2], pollutant=r[3], zone=r[4],
                    project_id=r[5], nonneg=bool(r[6]), last_date=_norm(r[8], "date"))
    chk.balances_done("balance", every_pair=True)
    want = chk.totals()
    have = {(r[0], r[1], r[2], _norm(r[3], "date")): int(r[4]) for r in conn.execute(
        text("SELECT kind, pollutant, zone, expires, amount_g FROM balance_total")) if r[4]}
    for key in sorted(set(want) | set(have), key=str):
        if want.get(key, 0) != have.get(key, 0):
            chk.bad(0, " ".join(map(str, key)), "total_differs", "balance_total", stored=have.get(key, 0),
                    replay=want.get(key, 0))
            break
    _tables(conn, chk)
    _operations(conn, chk, results)
    summary = {"hash_scheme": posting.HASH_SCHEME, "v1_transactions": chk.n_v1, "transactions": chk.seq,
               "postings": chk.n_post, "accounts": accounts, "head": chk.prev, "ok": not chk.problems}
    return summary, chk.problems


# --------------------------------------------------------------------------- provenance tables

def _tables(conn: Connection, chk: ChainChecker) -> None:
    tally_cols = ", ".join(c for c, _ in TALLY_COLUMNS)
    _compare(chk, "tally", conn.execute(text(f"SELECT tally_id, {tally_cols} FROM tally ORDER BY tally_id")),
             chk.tallies, TALLY_COLUMNS, "issue")
    _compare(chk, "lot", conn.execute(text(
        "SELECT serial, tally_id, pollutant, zone, effective_date, expires, issued_g FROM lot ORDER BY serial")),
        chk.lots, LOT_COLUMNS, "issue")
    _compare(chk, "source", conn.execute(text("SELECT source_id, name, zone FROM source ORDER BY source_id")),
             chk.sources, SOURCE_COLUMNS, "issue")
    _compare(chk, "lot_status", conn.execute(text("SELECT serial, status, txn_seq FROM lot_status ORDER BY serial")),
             {serial: {"status": st, "txn_seq": seq, "seq": seq} for serial, (st, seq) in chk.lot_status.items()},
             [("status", "text"), ("txn_seq", "int")], "revoke")
    _compare(chk, "project", ((*r[:4], units.priority_from_e4(r[4]), *r[5:]) for r in conn.execute(text(
        "SELECT project_id, name, zone, industry, priority_e4, needed_by, must_fund FROM project ORDER BY project_id"))),
        chk.projects, PROJECT_COLUMNS, "register")
    needs = {f"{pid}/{pol}": {**n, "seq": facts["seq"]} for pid, facts in chk.projects.items()
             for pol, n in (facts.get("needs") or {}).items()}
    _compare(chk, "project_need", ((f"{r[0]}/{r[1]}", r[2], r[3]) for r in conn.execute(text(
        "SELECT project_id, pollutant, increment_g, ratio FROM project_need ORDER BY project_id, pollutant"))),
        needs, NEED_COLUMNS, "register")


def _compare(chk: ChainChecker, table: str, rows, committed: dict[str, dict], columns, kind: str) -> None:
    """Each row equals what the chain committed for its key (the columns the chain holds); the first
    differing row of the table is named."""
    seen = set()
    for r in rows:
        key = str(r[0])
        seen.add(key)
        facts = committed.get(key)
        if facts is None:
            chk.bad(0, "", "row_not_in_chain", f"{table} {key}", kind=kind)
            return
        for (column, typ), value in zip(columns, r[1:]):
            if column in facts and _norm(value, typ) != _norm(facts[column], typ):
                chk.bad(0, column, "row_differs", f"{table} {key}", stored=repr(_norm(value, typ)),
                        committed=repr(_norm(facts[column], typ)), seq=facts["seq"])
                return
    missing = sorted(set(committed) - seen)
    if missing:
        chk.bad(0, "", "rows_missing", table, n=len(missing), first=missing[0])


def _norm(value, typ: str):
    if value is None:
        return None
    if typ == "date":
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    if typ == "int":
        return int(value)
    if typ == "priority":  # the column's exact value, or the chain's JSON integer or decimal text
        try:
            return units.priority_text(units.priority_from_json(value))
        except (ArithmeticError, ValueError):
            return repr(value)
    if typ == "bool":
        return value.lower() in ("1", "true", "t") if isinstance(value, str) else bool(value)
    return str(value)


# --------------------------------------------------------------------------- idempotency records

def _json(raw):
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return None


def _seqs(result: dict) -> list:
    """The transactions an operation's result reports (a reservation that also gives grams back reports its
    reserve transaction, and the release just before it is part of the same operation)."""
    out = [result["txn"]] if result.get("txn") is not None else []
    if out and isinstance(out[0], int) and result.get("draws") and result.get("returned"):
        out.append(out[0] - 1)
    return out + list(result.get("txns") or [])


def _operations(conn: Connection, chk: ChainChecker, results: list) -> None:
    """Every idempotency record reports transactions of its command, its project and its content; no
    transaction is reported twice."""
    if not results:
        return
    states = dict(conn.execute(text("SELECT project_id, state FROM project")).all())
    reported: dict[int, str] = {}
    for key, command, result in results:
        problem = ("the stored result is not a JSON object" if not isinstance(result, dict)
                   else _operation_problem(chk, command, result, states))
        if problem is None:
            for seq in _seqs(result):
                if seq in reported:
                    problem = Reason("op_reported_twice", seq=seq, other=repr(reported[seq]))
                    break
                reported[seq] = key
        if problem:
            chk.bad(0, "result", "operation_result", f"operation {key}", command=command, problem=problem)
            return


def _txn(chk: ChainChecker, seq, kind: str, project=None) -> tuple[KeptTxn | None, Reason | None]:
    found = chk.kept.get(seq) if isinstance(seq, int) else None
    if found is None:
        return None, Reason("op_no_txn", seq=repr(seq))
    if found.kind != kind:
        return None, Reason("op_txn_kind", seq=seq, found=found.kind, kind=kind)
    if project is not None and found.project != project:
        return None, Reason("op_txn_project", seq=seq, found=found.project, project=project)
    return found, None


def _credited(legs, kind: str | None = None) -> list[tuple]:
    return sorted((lot, pol, g) for account, lot, pol, g in legs
                  if g > 0 and (kind is None or posting.account_kind(account) == kind))


def _reserve_problem(chk: ChainChecker, r: dict, pid) -> Reason | None:
    """A reservation reports its draws (the reserve transaction, `txn`) and the grams it gave back (a release
    just before it, or `txn` itself when it drew nothing)."""
    txn = r.get("txn")
    draws = sorted((d.get("lot"), d.get("pollutant"), d.get("amount_g")) for d in r.get("draws") or [])
    returned = sorted((d.get("lot"), d.get("pollutant"), d.get("amount_g"), d.get("to"))
                      for d in r.get("returned") or [])
    if not draws and not returned:
        return Reason("op_nothing")
    if draws:
        found, problem = _txn(chk, txn, "reserve", pid)
        if problem:
            return problem
        if draws != _credited(found.postings, "reserved"):
            return Reason("op_draws_differ", seq=txn)
    if returned:
        seq = txn - 1 if draws and isinstance(txn, int) else txn
        found, problem = _txn(chk, seq, "release", pid)
        if problem:
            return problem
        if returned != sorted((lot, pol, g, account) for account, lot, pol, g in found.postings if g > 0):
            return Reason("op_returns_differ", seq=seq)
    return None


def _operation_problem(chk: ChainChecker, command: str, r: dict, states: dict) -> Reason | None:
    pid = r.get("project_id")
    if command == "reserve":
        return _reserve_problem(chk, r, pid)
    if command in ("approve", "release") or (command == "cancel" and r.get("txn") is not None):
        found, problem = _txn(chk, r.get("txn"), command, pid)
        if problem:
            return problem
        if command == "approve" and found.ref != r.get("doc"):
            return Reason("op_doc_differs", doc=repr(r.get("doc")), seq=r["txn"], found=repr(found.ref))
        return None
    if command == "cancel":
        return None if states.get(pid) == "cancelled" else Reason("op_not_cancelled", project_id=repr(pid))
    if command == "expire":
        expired = sorted((d.get("lot"), d.get("pollutant"), d.get("amount_g")) for d in r.get("expired") or [])
        if r.get("txn") is None:
            return None if not expired else Reason("op_expired_no_txn")
        found, problem = _txn(chk, r.get("txn"), "expire")
        return problem or (None if expired == _credited(found.postings) else Reason("op_lots_differ", seq=r["txn"]))
    if command == "revoke":
        found, problem = _txn(chk, r.get("txn"), "revoke")
        if problem:
            return problem
        if found.meta.get("lot") != r.get("lot") or sum(g for *_, g in _credited(found.postings)) != r.get("revoked_g"):
            return Reason("op_revoke_differs", seq=r["txn"])
        return None
    if command == "plan apply":
        projects = []
        for seq in r.get("txns") or []:
            found, problem = _txn(chk, seq, "reserve")
            if problem:
                return problem
            projects.append(found.project)
        return None if sorted(projects) == sorted(r.get("reserved") or []) else \
            Reason("op_plan_differs")
    if command == "tally import":
        lots = r.get("lots") or []
        unknown = [s for s in lots if s not in chk.lots]
        if unknown or r.get("tallies") != len(lots):
            return Reason("op_unknown_lots", lots=unknown[:3]) if unknown else Reason("op_counts_differ")
        return None
    if command == "project import":
        ids = r.get("project_ids") or []
        if r.get("txn") is not None:
            found, problem = _txn(chk, r.get("txn"), "register")
            if problem:
                return problem
            if sorted(found.meta.get("projects") or {}) != sorted(ids):
                return Reason("op_projects_differ", seq=r["txn"])
        missing = [p for p in ids if p not in chk.projects]
        return Reason("op_unknown_projects", projects=missing[:3]) if missing else None
    return Reason("op_unknown_command", command=repr(command))
