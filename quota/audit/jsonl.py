"""The canonical JSONL export and its offline verification (no database needed).

Lines, in order: one `header`; one `txn` per transaction in chain order; one `balance` per (account, lot)
with a non-zero balance; one `end` line. A `txn` line is the hashed body plus `prev_hash` and `hash`, so any
reader can recompute the chain (ledger.txn_hash). A full export shows every transaction in full. An --as-of
export shows a transaction dated after its as-of date as a `stub` (seq, date, body_hash, prev_hash, hash:
quota-chain-v2 hashes the date beside the body's hash, so the stub's date is checked), or, for a
transaction hashed under quota-chain-v1, as a `later` line in full whose postings are not counted.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import IO, Iterator

from sqlalchemy import Engine, text

from quota.store import db
from quota.ledger import posting as ledger
from quota.rules import versions
from quota.ledger.chain import ChainChecker
from quota.errors import Problem, Refused

FORMAT = "quota-export"
FORMAT_VERSION = 1
NONNEG = ledger.NONNEG_KINDS
SCHEMES = {ledger.HASH_SCHEME: frozenset({1, 2}), ledger.HASH_V1: frozenset({1})}  # header scheme -> hashes


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
        version, book = versions.current(conn)
        head_seq, head_hash = db.chain_head(conn)
        counts = conn.execute(text("SELECT (SELECT count(*) FROM txn), (SELECT count(*) FROM posting)")).one()
        n_all, n_postings, n_out = int(counts[0]), int(counts[1]), 0
        if as_of is not None:  # what the file shows in full, and what it stands in for
            n_postings, n_out = (int(v) for v in conn.execute(text(
                "SELECT (SELECT count(*) FROM posting p JOIN txn t ON t.seq = p.txn_seq WHERE t.effective_date <= :d), "
                "(SELECT count(*) FROM txn WHERE effective_date > :d)"), {"d": as_of}).one())
        yield {"type": "header", "format": FORMAT, "format_version": FORMAT_VERSION,
               "hash_scheme": ledger.HASH_SCHEME, "exported_at": ledger.now_iso(),
               "jurisdiction": {"code": book.jurisdiction_code, "name": book.jurisdiction_name,
                                "name_zh": book.jurisdiction_name_zh},
               "rulebook_version": version, "as_of": as_of.isoformat() if as_of else None,
               "selection": "effective_date <= as_of (others as stubs)" if as_of else "all",
               "counts": {"transactions": n_all, "postings": n_postings, "stubs": n_out},
               "final_hash": head_hash, "final_seq": int(head_seq),
               "units": {p.code: p.unit for p in sorted(book.pollutants.values(), key=lambda p: p.code)}}
        n_txn = n_post = 0
        for body, prev, digest in ledger.iter_chain(conn):
            if as_of is not None and body["date"] > as_of.isoformat():
                inner = ledger.body_hash(body)
                if ledger.chain_hash(prev, body["date"], inner) == digest:  # quota-chain-v2: date + body hash
                    yield {"type": "stub", "seq": body["seq"], "date": body["date"], "body_hash": inner,
                           "prev_hash": prev, "hash": digest}
                else:  # a quota-chain-v1 transaction cannot be stubbed: shown in full, not counted
                    yield {"type": "later", **body, "prev_hash": prev, "hash": digest}
                continue
            n_txn += 1
            n_post += len(body["postings"])
            yield {"type": "txn", **body, "prev_hash": prev, "hash": digest}
        for account, lot, pol, amount in _balances(conn, as_of):
            yield {"type": "balance", "account": account, "lot": lot, "pollutant": pol, "amount_g": int(amount)}
        yield {"type": "end", "transactions": n_txn, "postings": n_post, "final_hash": head_hash}
    finally:
        conn.rollback()
        conn.close()


def _balances(conn, as_of: dt.date | None):
    """The non-zero sums of the postings the export shows in full (those dated on or before `as_of`), per
    (account, lot, pollutant) in code-point order: summed and sorted by the database in the export's snapshot
    and streamed, so memory stays flat in the number of lots (a sum per pair in Python held them all)."""
    collate = "" if conn.dialect.name == "sqlite" else ' COLLATE "C"'
    where = "WHERE t.effective_date <= :d " if as_of is not None else ""
    return conn.execute(text(
        "SELECT p.account, p.lot, p.pollutant, SUM(p.amount_g) FROM posting p JOIN txn t ON t.seq = p.txn_seq "
        f"{where}GROUP BY p.account, p.lot, p.pollutant HAVING SUM(p.amount_g) <> 0 "
        f"ORDER BY p.account{collate}, p.lot{collate}, p.pollutant{collate}"), {"d": as_of} if as_of else {},
        execution_options={"stream_results": True, "yield_per": 5000})


def write_jsonl(engine: Engine, out: IO[str], as_of: dt.date | None = None, progress=None) -> dict:
    """Write the JSONL export to `out`; return the end record."""
    last, total, n = {}, None, 0
    for record in export_lines(engine, as_of):
        out.write(json.dumps(record, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n")
        last = record
        if record["type"] == "header":
            total = record["counts"]["transactions"]
        elif record["type"] in ("txn", "stub", "later"):
            n += 1
            if progress and n % 5000 == 0:
                progress("export", n, total)
    return last


def unreadable(path: str, reason: str, **facts) -> Refused:
    """The refusal of an export that cannot be verified at all (missing, a folder, not UTF-8, not an export):
    one line, exit 1; `reason` is a finding code of the catalogue (quota.report.findings)."""
    return Refused("unreadable_export", path=path, reason=reason, **facts)


def _open(path: str, mode: str = "r"):
    try:
        return open(path, mode, **({"encoding": "utf-8"} if mode == "r" else {}))
    except FileNotFoundError:
        raise unreadable(path, "file_not_found") from None
    except IsADirectoryError:
        raise unreadable(path, "is_directory") from None
    except PermissionError:
        raise unreadable(path, "no_permission") from None
    except OSError as exc:
        raise unreadable(path, "cannot_read_file", detail=exc.strerror or type(exc).__name__) from None


def open_text(path: str) -> str:
    """The whole text of an export file; Refused (unreadable_export) when it is missing, a folder, unreadable or not
    UTF-8. A file cut inside its last character is a truncated export, not a foreign one: its text up to the cut
    is returned, for the checks to find it incomplete."""
    with _open(path, "rb") as fh:
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.end == len(raw) and exc.reason == "unexpected end of data":
            return raw[:exc.start].decode("utf-8", errors="replace")
        raise unreadable(path, "not_utf8", byte=exc.start) from None


def _lines(path: str) -> Iterator[str]:
    """The lines of an export file, read as they come; Refused (unreadable_export) as open_text."""
    with _open(path) as fh:
        n = 0
        try:
            for n, line in enumerate(fh, 1):
                yield line
        except UnicodeDecodeError as exc:
            if exc.reason == "unexpected end of data":  # cut inside the last character: a truncated export
                return
            raise unreadable(path, "not_utf8_line", line=n + 1) from None


def verify_export(path: str, progress=None, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Recompute the hash chain and every balance from an export file alone, through the same checker as the
    database verify (quota.chaincheck); with `expect_head`, the chain must end at that hash.

    Returns (summary, problems); the first problem names the first bad line.
    """
    problems: list[Problem] = []
    name = path

    def bad(line: int, column: str, code: str, /, **facts) -> None:
        problems.append(Problem.of(name, line, column, code, **facts))

    chk: ChainChecker | None = None
    header, end, end_line, in_balances, lineno = None, None, 0, False, 0
    for lineno, raw in enumerate(_lines(path), 1):
        try:
            rec = json.loads(raw)
            kind = rec["type"]
        except (ValueError, KeyError, TypeError):
            if lineno == 1:
                raise unreadable(path, "not_an_export") from None
            bad(lineno, "", "not_a_record")
            break
        if lineno == 1:
            if kind != "header" or rec.get("format") != FORMAT:
                raise unreadable(path, "not_an_export")
            if rec.get("hash_scheme") not in SCHEMES:
                bad(1, "hash_scheme", "unknown_scheme", scheme=repr(rec.get("hash_scheme")))
                break
            header = rec
            chk = ChainChecker(name, schemes=SCHEMES[rec["hash_scheme"]], as_of=rec.get("as_of"))
            chk.expect = expect_head.strip().lower() if expect_head else None
            continue
        if end is not None:
            bad(lineno, "type", "after_end")
            break
        if kind in ("txn", "stub", "later"):
            if in_balances:
                bad(lineno, "type", "txn_after_balances")
            if kind == "stub":
                chk.stub(rec.get("seq"), rec.get("date"), rec.get("body_hash"), rec.get("prev_hash", ""),
                         rec.get("hash"), lineno)
            else:
                body = {k: v for k, v in rec.items() if k not in ("type", "prev_hash", "hash")}
                chk.txn(body, str(rec.get("prev_hash", "")), rec.get("hash"), lineno, counted=kind == "txn")
                if progress and kind == "txn" and chk.n_txn % 5000 == 0:
                    progress("verify", chk.n_txn, header["counts"]["transactions"])
        elif kind == "balance":
            if not in_balances:
                in_balances = True
                chk.finish()
            chk.balance(rec.get("account"), rec.get("lot"), lineno, name, amount_g=rec.get("amount_g"),
                        pollutant=rec.get("pollutant"))
        elif kind == "end":
            end, end_line = rec, lineno
            if not in_balances:
                in_balances = True
                chk.finish()
            if rec.get("final_hash") != chk.prev or header.get("final_hash") != chk.prev:
                bad(lineno, "final_hash", "final_hash_mismatch")
            if (rec.get("transactions"), rec.get("postings")) != (chk.n_txn, chk.n_post):
                bad(lineno, "transactions", "end_counts", transactions=rec.get("transactions"),
                    postings=rec.get("postings"), n_txn=chk.n_txn, n_post=chk.n_post)
        else:
            bad(lineno, "type", "unknown_record", kind=repr(kind))
        if len(problems) + len(chk.problems) >= 50:
            break
    if header is None and not problems:
        raise unreadable(path, "empty_file")
    if chk is not None:
        if end is None and not any(p.column == "" for p in problems):
            bad(lineno + 1, "", "no_end_record")
        if end is not None:
            chk.balances_done(name, every_pair=False)
            chk.check_head(end_line)
            _check_counts(header, chk, end_line, bad)
        problems = chk.problems + problems
        problems.sort(key=lambda p: (p.row == 0, p.row))
    summary = {"file": path, "hash_scheme": header.get("hash_scheme") if header else None,
               "as_of": header.get("as_of") if header else None,
               "transactions": chk.n_txn if chk else 0, "postings": chk.n_post if chk else 0,
               "stubs": chk.n_stub + chk.n_later if chk else 0, "unchecked_stubs": chk.n_unchecked if chk else 0,
               "accounts": len(chk.pairs) if chk else 0, "final_hash": chk.prev if chk else None,
               "ok": not problems}
    return summary, problems


def _check_counts(header: dict, chk: ChainChecker, line: int, bad) -> None:
    """The header's counts must describe the file: every transaction of the chain (in full or as a stub),
    the postings shown, and the stubs; and its final seq the last transaction's."""
    counts = header.get("counts") or {}
    shown = chk.n_txn + chk.n_stub + chk.n_later
    if header.get("hash_scheme") == ledger.HASH_V1:  # v1 headers counted the whole chain only in full exports
        if header.get("as_of") is None and (counts.get("transactions"), counts.get("postings")) != (chk.n_txn, chk.n_post):
            bad(line, "counts", "header_counts")
        return
    want = {"transactions": shown, "postings": chk.n_post, "stubs": chk.n_stub + chk.n_later}
    if {k: counts.get(k) for k in want} != want or header.get("final_seq") != chk.seq:
        bad(line, "counts", "header_counts_to", counts=str(counts), final=header.get("final_seq"), want=str(want),
            seq=chk.seq)
