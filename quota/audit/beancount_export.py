"""Beancount export (docs/design.md, Beancount export): bean-check accepts it, its balance assertions hold."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import defaultdict
from typing import IO

from sqlalchemy import Engine, text

from quota import clock
from quota.audit import jsonl
from quota.ledger import posting
from quota import units
from quota.errors import Problem

_BAD = re.compile(r"[^A-Za-z0-9-]")


_HASHED = re.compile(r"-U[0-9A-F]{8}$")


def component(code: str) -> str:
    """A valid Beancount account component from a code: ASCII letters, digits and '-', starting
    with a capital letter or digit. A code that is one already is kept ('JT-YT', 'COD-2022-00001',
    'P2026-01'); any other keeps its readable ASCII part and adds '-U' and 8 hex digits of the
    SHA-256 of the code ('金坛-01' -> '01-U…', '溧阳-01' -> '01-U…'), so distinct codes give
    distinct components (a code that looks like such a suffix is hashed too)."""
    if re.fullmatch(r"[A-Z0-9][A-Za-z0-9-]*", code) and not _HASHED.search(code):
        return code
    s = re.sub(r"-{2,}", "-", _BAD.sub("-", code)).strip("-")
    s = (s[0].upper() + s[1:]) if s else "X"
    s = s if re.match(r"[A-Z0-9]", s) else "X" + s
    return f"{s}-U{hashlib.sha256(code.encode()).hexdigest()[:8].upper()}"


def account_name(account: str, lot_zone: dict[str, str], lot: str) -> str:
    kind = posting.account_kind(account)
    if kind == "lot":
        return f"Assets:Lots:{component(lot_zone.get(lot, 'UNKNOWN'))}:{component(lot)}"
    if kind in ("reserved", "allocated"):
        project = account.split(":")[1]
        return f"Assets:{kind.capitalize()}:{component(project)}"
    return f"Equity:{kind.capitalize()}"


def _identity(account: str, lot: str, names: dict[str, str]) -> tuple:
    """The id an account stands for, and the metadata its open directive carries (the id as typed,
    which the account name may only abbreviate)."""
    kind = posting.account_kind(account)
    if kind == "lot":
        return (kind, lot), (("lot", lot),)
    if kind in ("reserved", "allocated"):
        project = account.split(":")[1]
        meta = (("project", project),) + ((("name", names[project]),) if names.get(project) else ())
        return (kind, project), meta
    return (kind,), ()


def _quote(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ") + '"'


def _names(engine: Engine) -> tuple[dict[str, str], dict[str, tuple[str, str]], dict[str, str]]:
    """Lot zones, lot sources and project names. Read once the export's snapshot is taken: lots,
    tallies, sources and projects are never deleted, so this read covers every lot and project the
    snapshot holds, also one issued while the export was starting."""
    with engine.connect() as conn:
        lot_zone = dict(conn.execute(text("SELECT serial, zone FROM lot")).all())
        sources = {r[0]: (r[1], r[2]) for r in conn.execute(text(
            "SELECT l.serial, s.name, t.report_no FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
            "JOIN source s ON s.source_id = t.source_id"))}
        names = dict(conn.execute(text("SELECT project_id, name FROM project")).all())
    return lot_zone, sources, names


def write_beancount(engine: Engine, out: IO[str], as_of: dt.date | None = None,
                    today: dt.date | None = None) -> dict:
    """Write the ledger as a Beancount file; returns {"accounts", "transactions", "date"}."""
    header, entries = None, []
    lot_zone: dict[str, str] = {}
    sources: dict[str, tuple[str, str]] = {}
    names: dict[str, str] = {}
    opened: dict[str, tuple[str, set[str]]] = {}
    origin: dict[str, tuple] = {}  # account name -> the id it stands for, and its metadata
    totals: dict[tuple[str, str], int] = defaultdict(int)
    last_date = dt.date.min
    n_postings, last_hash = 0, posting.GENESIS  # for the end record
    for rec in jsonl.export_lines(engine, as_of):
        if rec["type"] == "header":
            header = rec
            lot_zone, sources, names = _names(engine)
        if rec["type"] != "txn":
            continue
        date = rec["date"]
        last_date = max(last_date, dt.date.fromisoformat(date))
        payee = rec["project"] or ""
        if rec["project"] and rec["project"] in names:
            payee = f"{rec['project']} {names[rec['project']]}"
        elif rec["kind"] == "issue":
            payee = sources.get(rec["postings"][0][1], ("", ""))[0]
        lines = [f'{date} * {_quote(payee)} {_quote(rec["memo"] or rec["kind"])} ^txn-{rec["seq"]}',
                 f'  seq: {rec["seq"]}', f'  kind: {_quote(rec["kind"])}', f'  actor: {_quote(rec["actor"])}',
                 f'  hash: {_quote(rec["hash"])}']
        if rec["ref"]:
            lines.append(f'  ref: {_quote(rec["ref"])}')
        for account, lot, pol, amount in rec["postings"]:
            name = account_name(account, lot_zone, lot)
            unit = header["units"][pol]
            first = opened.get(name)
            opened[name] = (min(first[0], date) if first else date, (first[1] if first else set()) | {pol})
            ident = _identity(account, lot, names)
            if origin.setdefault(name, ident) != ident:  # never two ids in one account
                raise AssertionError(f"Beancount account {name} would hold {origin[name]} and {ident}")
            totals[(name, pol)] += amount
            lines.append(f"  {name}  {units.exact(amount, unit)} {pol}")
            lines.append(f'    lot: {_quote(lot)}')
        entries.append((date, rec["seq"], "\n".join(lines)))
        n_postings, last_hash = n_postings + len(rec["postings"]), rec["hash"]
    day = as_of or max(today or clock.today(), last_date if last_date != dt.date.min else dt.date.min)
    # the assertions are checked at the start of their day, so dated the day after; as of the calendar's last day
    # (which has no day after) that day itself: no transaction is ever dated 9999-12-31 (none is after today)
    check_day = (day + dt.timedelta(days=1) if day < dt.date.max else day).isoformat()
    out.write(f'option "title" {_quote("quota ledger " + header["jurisdiction"]["code"] + " " + header["jurisdiction"]["name"])}\n')
    pols = sorted(header["units"])
    if pols:
        out.write(f'option "operating_currency" {_quote(pols[0])}\n')
    out.write('option "tolerance_multiplier" "0"\n')
    out.write('plugin "beancount.plugins.check_commodity"\n')
    out.write(f'; exported {header["exported_at"]}, as of {day}, hash scheme {header["hash_scheme"]}, '
              f'final hash {header["final_hash"]}\n\n')
    first_day = min([e[0] for e in entries], default=day.isoformat())
    for pol in pols:
        out.write(f'{first_day} commodity {pol}\n  unit: {_quote(header["units"][pol])}\n')
    out.write("\n")
    for name, (date, commodities) in sorted(opened.items()):
        out.write(f"{date} open {name} {','.join(sorted(commodities))}\n")
        for key, value in origin[name][1]:
            out.write(f"  {key}: {_quote(value)}\n")
    out.write("\n")
    for date, seq, entry in sorted(entries):
        out.write(entry + "\n\n")
    for (name, pol), amount in sorted(totals.items()):
        out.write(f"{check_day} balance {name}  {units.exact(amount, header['units'][pol])} {pol}\n")
    out.write("\n" + end_record(check_day, len(entries), n_postings, len(totals), header["final_hash"], last_hash))
    return {"accounts": len(opened), "transactions": len(entries), "date": day.isoformat()}


END_TYPE = "quota-end"


def end_record(day: str, transactions: int, postings: int, balances: int, final_hash: str, last_hash: str) -> str:
    """The file's last directive (a Beancount `custom` entry bean-check accepts): what the file holds and
    where the chain ends. `quota verify --export FILE.beancount` requires the file to end with it, so a
    truncated file (which bean-check may accept) is caught."""
    return (f'{day} custom "{END_TYPE}" "complete"\n  transactions: {transactions}\n  postings: {postings}\n'
            f'  balances: {balances}\n  last_hash: "{last_hash}"\n  final_hash: "{final_hash}"\n')


def verify_beancount(path: str, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """bean-check's checks (beancount's loader), then the end record: the file must end with it, and its
    counts of transactions, postings and balance assertions and the last transaction's hash must match;
    its final hash must be `expect_head` when given."""
    from beancount import loader
    from beancount.core import data
    problems: list[Problem] = []
    summary = {"file": path, "hash_scheme": posting.HASH_SCHEME, "as_of": None, "transactions": 0, "postings": 0,
               "accounts": 0, "final_hash": None, "ok": False}
    from quota.audit.jsonl import open_text
    body = open_text(path)
    entries, errors, _ = loader.load_string(body)
    for err in errors[:20]:
        line = (getattr(err, "source", None) or {}).get("lineno", 0) or 0
        problems.append(Problem.of(path, int(line), "bean-check", "bean_check", detail=str(err.message).strip()))
    txns = [e for e in entries if isinstance(e, data.Transaction)]
    ends = [e for e in entries if isinstance(e, data.Custom) and e.type == END_TYPE]
    summary.update(transactions=len(txns), postings=sum(len(t.postings) for t in txns),
                   accounts=len({a.account for a in entries if isinstance(a, data.Open)}))
    if len(ends) != 1:
        problems.append(Problem.of(path, body.count("\n") + 1, "", "end_records", type=END_TYPE, n=len(ends)))
        return summary, problems
    end = ends[0]
    meta = end.meta
    try:
        expected = end_record(end.date.isoformat(), int(meta["transactions"]), int(meta["postings"]),
                              int(meta["balances"]), str(meta["final_hash"]), str(meta["last_hash"]))
    except (KeyError, ValueError, TypeError):
        expected = None
    line = int(meta.get("lineno", 0) or 0)
    if expected is None or not body.endswith(expected):
        problems.append(Problem.of(path, line, "", "end_incomplete", type=END_TYPE))
        return summary, problems
    found = {"transactions": summary["transactions"], "postings": summary["postings"],
             "balances": sum(1 for e in entries if isinstance(e, data.Balance))}
    for key, value in found.items():
        if int(meta[key]) != value:
            problems.append(Problem.of(path, line, key, "end_states", stated=int(meta[key]), value=value))
    last = max(txns, key=lambda t: int(t.meta.get("seq", 0)), default=None)
    last_hash = last.meta.get("hash") if last else posting.GENESIS
    if last_hash != meta["last_hash"]:
        problems.append(Problem.of(path, line, "last_hash", "last_hash_mismatch"))
    if expect_head is not None and str(meta["final_hash"]) != expect_head:
        problems.append(Problem.of(path, line, "final_hash", "export_head", end=str(meta["final_hash"]),
                                   expected=expect_head))
    summary.update(final_hash=str(meta["final_hash"]), ok=not problems)
    return summary, problems
