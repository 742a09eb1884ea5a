"""The canonical JSONL export and its offline verification (no database needed).

Lines, in order: one `header`; one `txn` per transaction in chain order (or a hash-only `stub`
for a transaction outside an --as-of export); one `balance` per (account, lot) with a non-zero
balance; one `end` line. A `txn` line is the hashed body plus `prev_hash` and `hash`, so any
reader can recompute sha256(prev_hash + canonical JSON of the body).
"""
from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from typing import IO, Iterator

from sqlalchemy import Engine, text

from . import db, ledger, rulebooks
from .errors import Problem

FORMAT = "quota-export"
FORMAT_VERSION = 1
NONNEG = ledger.NONNEG_KINDS


def _snapshot(engine: Engine):
    """A connection whose reads all see one snapshot (REPEATABLE READ on PostgreSQL)."""
    conn = engine.connect()
    if conn.dialect.name != "sqlite":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


def export_lines(engine: Engine, as_of: dt.date | None = None) -> Iterator[dict]:
    """Yield the export's records (header, txn/stub, balance, end), streaming."""
    conn = _snapshot(engine)
    try:
        version, book = rulebooks.current(conn)
        head_seq, head_hash = db.chain_head(conn)
        counts = conn.execute(text("SELECT (SELECT count(*) FROM txn), (SELECT count(*) FROM posting)")).one()
        yield {"type": "header", "format": FORMAT, "format_version": FORMAT_VERSION,
               "hash_scheme": ledger.HASH_SCHEME, "exported_at": ledger.now_iso(),
               "jurisdiction": {"code": book.jurisdiction_code, "name": book.jurisdiction_name,
                                "name_zh": book.jurisdiction_name_zh},
               "rulebook_version": version, "as_of": as_of.isoformat() if as_of else None,
               "selection": "effective_date <= as_of (others as hash-only stubs)" if as_of else "all",
               "counts": {"transactions": int(counts[0]), "postings": int(counts[1])},
               "final_hash": head_hash, "final_seq": int(head_seq),
               "units": {p.code: p.unit for p in sorted(book.pollutants.values(), key=lambda p: p.code)}}
        balances: dict[tuple[str, str, str], int] = defaultdict(int)
        n_txn = n_post = 0
        for body, prev, digest in ledger.iter_chain(conn):
            if as_of is not None and body["date"] > as_of.isoformat():
                yield {"type": "stub", "seq": body["seq"], "prev_hash": prev, "hash": digest}
                continue
            n_txn += 1
            for account, lot, pol, amount in body["postings"]:
                balances[(account, lot, pol)] += amount
                n_post += 1
            yield {"type": "txn", **body, "prev_hash": prev, "hash": digest}
        for (account, lot, pol), amount in sorted(balances.items()):
            if amount:
                yield {"type": "balance", "account": account, "lot": lot, "pollutant": pol, "amount_g": amount}
        yield {"type": "end", "transactions": n_txn, "postings": n_post, "final_hash": head_hash}
    finally:
        conn.rollback()
        conn.close()


def write_jsonl(engine: Engine, out: IO[str], as_of: dt.date | None = None, progress=None) -> dict:
    """Write the JSONL export to `out`; return the end record."""
    last, total, n = {}, None, 0
    for record in export_lines(engine, as_of):
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n")
        last = record
        if record["type"] == "header":
            total = record["counts"]["transactions"]
        elif record["type"] in ("txn", "stub"):
            n += 1
            if progress and n % 5000 == 0:
                progress("export", n, total)
    return last


def verify_export(path: str, progress=None) -> tuple[dict, list[Problem]]:
    """Recompute the hash chain and every balance from an export file alone.

    Returns (summary, problems); the first problem names the first bad line.
    """
    problems: list[Problem] = []
    name = path

    def bad(line: int, column: str, message: str) -> None:
        problems.append(Problem(name, line, column, message))

    replay: dict[tuple[str, str, str], int] = defaultdict(int)
    stated: dict[tuple[str, str, str], int] = {}
    header, end, end_line = None, None, 0
    prev, expected_seq, n_txn, n_post, lineno = ledger.GENESIS, 1, 0, 0, 0
    with open(path, encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                rec = json.loads(raw)
                kind = rec["type"]
            except (ValueError, KeyError, TypeError):
                bad(lineno, "", "not a JSON record of the export (truncated or edited?)")
                break
            if lineno == 1:
                if kind != "header" or rec.get("format") != FORMAT:
                    bad(1, "type", "the first line must be the quota-export header")
                    break
                if rec.get("hash_scheme") != ledger.HASH_SCHEME:
                    bad(1, "hash_scheme", f"unknown hash scheme {rec.get('hash_scheme')!r}")
                    break
                header = rec
                continue
            if end is not None:
                bad(lineno, "type", "a line after the end record")
                break
            if kind in ("txn", "stub"):
                if stated:
                    bad(lineno, "type", "a transaction after the balances")
                seq = rec.get("seq")
                if seq != expected_seq:
                    bad(lineno, "seq", f"expected transaction {expected_seq}, found {seq} "
                        "(a transaction was deleted, inserted, duplicated or moved)")
                if rec.get("prev_hash") != prev:
                    bad(lineno, "prev_hash", "does not match the previous transaction's hash")
                if kind == "txn":
                    body = {k: v for k, v in rec.items() if k not in ("type", "prev_hash", "hash")}
                    if ledger.txn_hash(rec.get("prev_hash", ""), body) != rec.get("hash"):
                        bad(lineno, "hash", "the transaction does not match its hash (edited?)")
                    sums: dict[str, int] = defaultdict(int)
                    for account, lot, pol, amount in body.get("postings", []):
                        replay[(account, lot, pol)] += amount
                        sums[pol] += amount
                        n_post += 1
                    if any(sums.values()):
                        bad(lineno, "postings", f"does not balance: {dict(sums)}")
                    n_txn += 1
                    if progress and n_txn % 5000 == 0:
                        progress("verify", n_txn, header["counts"]["transactions"] if header else None)
                prev = rec.get("hash")
                expected_seq = (seq if isinstance(seq, int) else expected_seq) + 1
            elif kind == "balance":
                stated[(rec["account"], rec["lot"], rec["pollutant"])] = rec["amount_g"]
            elif kind == "end":
                end, end_line = rec, lineno
                if rec.get("final_hash") != prev or (header and header.get("final_hash") != prev):
                    bad(lineno, "final_hash", "the chain does not end at the stated final hash")
                if (rec.get("transactions"), rec.get("postings")) != (n_txn, n_post):
                    bad(lineno, "transactions", f"the end record counts {rec.get('transactions')} transactions and "
                        f"{rec.get('postings')} postings; the file holds {n_txn} and {n_post}")
            else:
                bad(lineno, "type", f"unknown record type {kind!r}")
            if len(problems) >= 50:
                break
    if header is None and not problems:
        bad(1, "", "empty file")
    if end is None and not any(p.column == "" for p in problems):
        bad(lineno + 1, "", "the file ends without its end record (truncated?)")
    if header is not None and end is not None and header.get("as_of") is None:
        if (header["counts"]["transactions"], header["counts"]["postings"]) != (n_txn, n_post):
            bad(end_line, "counts", "the header's counts do not match the transactions in the file")
    for key in sorted(set(replay) | set(stated)):
        want, have = replay.get(key, 0), stated.get(key, 0)
        if want != have:
            bad(0, f"{key[0]} {key[1]}", f"stated balance {have} g, replay of the postings gives {want} g")
        if ledger.account_kind(key[0]) in NONNEG and want < 0:
            bad(0, f"{key[0]} {key[1]}", f"negative balance {want} g")
    per_pol: dict[str, int] = defaultdict(int)
    for (_, _, pol), amount in replay.items():
        per_pol[pol] += amount
    for pol, total in sorted(per_pol.items()):
        if total:
            bad(0, pol, f"accounts sum to {total} g, not zero")
    summary = {"file": path, "hash_scheme": header.get("hash_scheme") if header else None,
               "as_of": header.get("as_of") if header else None, "transactions": n_txn, "postings": n_post,
               "accounts": len(replay), "final_hash": prev, "ok": not problems}
    return summary, problems
