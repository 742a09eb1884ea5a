"""Double-entry posting, the hash chain, maintained balances, balance queries and verification."""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

from sqlalchemy import Connection, bindparam, text

from quota.accounts import lot_account, project_account  # noqa: F401 (used by callers as posting.*)
from quota.store import driver
from quota.clock import as_date
from quota.store.db import GENESIS, insert_many, lock_head, update_many, values_statement  # noqa: F401 (GENESIS: the chain's start)
from quota.errors import Problem, Refused

HASH_SCHEME = "quota-chain-v2"  # every new transaction; ledgers begun earlier keep a v1 prefix (chaincheck)
HASH_V1 = "quota-chain-v1"
NONNEG_KINDS = {"lot", "reserved", "allocated"}
# kinds that may move no grams: a revocation marks the lot even when nothing of it is left unallocated;
# a register transaction commits a project's facts to the chain
NO_POSTING_KINDS = {"revoke", "register"}


class Leg(NamedTuple):
    """One posting: `amount_g` grams of `pollutant` from lot `lot` into `account` (a named tuple: one is
    made per posting, and a tuple is built several times faster than a frozen dataclass)."""
    account: str
    lot: str
    pollutant: str
    amount_g: int
    zone: str
    project_id: str | None = None


@functools.lru_cache(maxsize=1 << 16)  # called for every leg, several times per operation
def account_kind(account: str) -> str:
    """'lot', 'reserved', 'allocated', 'issued', 'expired', 'revoked', 'superseded' or 'adjustment'."""
    head, _, rest = account.partition(":")
    return rest.rsplit(":", 1)[1] if head == "project" else head


_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


def canonical(txn: dict) -> str:
    """Sorted keys, no spaces, UTF-8 text as is: json.dumps with those options (one encoder, made once)."""
    return _CANONICAL(txn)


def body_hash(txn: dict) -> str:
    """sha256 of the canonical JSON of a transaction's body (what a quota-chain-v2 stub carries)."""
    return hashlib.sha256(canonical(txn).encode("utf-8")).hexdigest()


def chain_hash(prev_hash: str, date: str, body_digest: str) -> str:
    """quota-chain-v2: sha256(prev_hash + "|" + date + "|" + sha256(canonical body)). The effective date
    is hashed beside the body's hash, so a hash-only stub can show its date and be checked against it."""
    return hashlib.sha256(f"{prev_hash}|{date}|{body_digest}".encode("utf-8")).hexdigest()


def txn_hash(prev_hash: str, txn: dict) -> str:
    """The quota-chain-v2 hash of a transaction (HASH_SCHEME)."""
    return chain_hash(prev_hash, txn["date"], body_hash(txn))


def txn_hash_v1(prev_hash: str, txn: dict) -> str:
    """sha256(prev_hash + canonical JSON of the transaction) — hash scheme quota-chain-v1 (older ledgers)."""
    return hashlib.sha256((prev_hash + canonical(txn)).encode("utf-8")).hexdigest()


def txn_body(seq: int, kind: str, effective: dt.date | str, booked_at: str, actor: str, memo: str,
             ref: str, project_id: str | None, rulebook: int, meta: dict,
             postings: Iterable[tuple[str, str, str, int]]) -> dict:
    """The hashed content of a transaction (postings sorted, so order of insertion is irrelevant)."""
    return {
        "seq": seq, "kind": kind, "date": str(effective), "booked_at": booked_at, "actor": actor,
        "memo": memo, "ref": ref, "project": project_id, "rulebook": rulebook, "meta": meta,
        "postings": sorted([list(p) for p in postings]),
    }


def canonical_txn(seq: int, kind: str, effective: str, booked_at: str, actor: str, memo: str, ref: str,
                  project_id: str | None, rulebook: int, meta_json: str, postings: list[list]) -> str:
    """canonical(txn_body(...)) written out key by key, with the meta already encoded (`meta_json`, which
    the transaction row stores too) and `postings` already sorted: the same text, made faster."""
    enc = _CANONICAL
    return "".join(('{"actor":', enc(actor), ',"booked_at":', enc(booked_at), ',"date":', enc(effective),
                    ',"kind":', enc(kind), ',"memo":', enc(memo), ',"meta":', meta_json, ',"postings":',
                    enc(postings), ',"project":', enc(project_id), ',"ref":', enc(ref), ',"rulebook":',
                    enc(rulebook), ',"seq":', enc(seq), '}'))


def now_iso() -> str:
    """The booking time: UTC, microseconds, 'Z' (2026-11-29T22:25:09.623387Z)."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="microseconds")[:-6] + "Z"


@dataclass
class TxnSpec:
    """A transaction to post: kind, effective date, legs and descriptive fields."""
    kind: str
    effective: dt.date
    legs: list[Leg]
    memo: str = ""
    ref: str = ""
    project_id: str | None = None
    meta: dict | None = None


def post(conn: Connection, kind: str, effective: dt.date, legs: list[Leg], *, actor: str,
         rulebook: int, memo: str = "", ref: str = "", project_id: str | None = None,
         meta: dict | None = None) -> int:
    """Append one balanced transaction; see `post_many`. Returns its seq."""
    return post_many(conn, [TxnSpec(kind, effective, legs, memo, ref, project_id, meta)],
                     actor=actor, rulebook=rulebook)[0]


def post_many(conn: Connection, specs: list[TxnSpec], *, actor: str, rulebook: int,
              lot_expiry: dict[str, dt.date | None] | None = None,
              known: dict[str, dict[str, tuple[int, dt.date | None]]] | None = None,
              new_lots: set[str] | frozenset = frozenset()) -> list[int]:
    """Append balanced transactions to the chain, in order, and update balances.

    Must run inside `db.run_write` (the chain head is locked). Refuses unbalanced legs,
    zero amounts, a non-negative balance going negative after any transaction, and an
    effective date earlier than the last posting on a touched (account, lot) pair (so that
    as-of replays stay consistent). Raises before anything is written when a check fails.
    `known` gives, for some accounts, every stored (lot: (grams, last date)) pair the caller
    has already read in this transaction; those are not read again. `new_lots` are lots created in
    this transaction: no stored pair can hold them, so none is looked up.
    """
    st = driver.state(conn)
    seq, prev = st.head or lock_head(conn)
    balances = _load_pairs(conn, {(l.account, l.lot) for s in specs for l in s.legs if l.lot not in new_lots},
                           known or {})
    txn_rows, post_rows, seqs = [], [], []
    booked = now_iso()  # one operation, one booking time (an import books all its lots at once)
    for spec in specs:
        totals: dict[str, int] = {}
        for leg in spec.legs:
            g = leg.amount_g
            if type(g) is not int or g == 0:  # not a bool, not a float, not a Decimal
                raise ValueError(f"posting amount must be a non-zero integer of grams: {leg}")
            totals[leg.pollutant] = totals.get(leg.pollutant, 0) + g
        if any(totals.values()) or (not spec.legs and spec.kind not in NO_POSTING_KINDS):
            raise ValueError(f"transaction does not balance: {totals}")
        _check_and_apply(balances, spec)
        seq += 1
        meta_json = canonical(spec.meta or {})
        postings = sorted([[l.account, l.lot, l.pollutant, l.amount_g] for l in spec.legs])
        date = str(spec.effective)
        digest = chain_hash(prev, date, hashlib.sha256(canonical_txn(
            seq, spec.kind, date, booked, actor, spec.memo, spec.ref, spec.project_id, rulebook,
            meta_json, postings).encode("utf-8")).hexdigest())
        txn_rows.append((seq, spec.kind, spec.effective, booked, actor, spec.memo, spec.ref, spec.project_id,
                         rulebook, meta_json, prev, digest))
        post_rows.extend([(seq, l.account, l.lot, l.pollutant, l.amount_g) for l in spec.legs])
        seqs.append(seq)
        prev = digest
    pair_rows = _pair_rows(balances)
    total_rows = _total_rows(conn, specs, lot_expiry or {})
    if len(post_rows) <= SMALL and len(pair_rows[0]) + len(pair_rows[1]) <= SMALL:
        _write_small(conn, txn_rows, post_rows, pair_rows[0] + pair_rows[1], total_rows)
    else:
        insert_many(conn, "txn", TXN_COLUMNS, txn_rows)
        insert_many(conn, "posting", POSTING_COLUMNS, post_rows)
        _write_pairs(conn, *pair_rows)
        if total_rows:
            conn.exec_driver_sql(*values_statement(conn, TOTAL_INSERT, 5, total_rows, TOTAL_UPSERT))
    st.head = (seq, prev)
    return seqs


SMALL = 50  # rows per statement below which an operation's writes go out as one batch (driver.write)
TXN_COLUMNS = ["seq", "kind", "effective_date", "booked_at", "actor", "memo", "ref", "project_id",
               "rulebook_version", "meta", "prev_hash", "hash"]
POSTING_COLUMNS = ["txn_seq", "account", "lot", "pollutant", "amount_g"]
PAIR_COLUMNS = ["account", "lot", "kind", "pollutant", "zone", "project_id", "nonneg", "amount_g", "last_date"]
PAIR_UPSERT = "ON CONFLICT (account, lot) DO UPDATE SET amount_g = excluded.amount_g, last_date = excluded.last_date"
TOTAL_INSERT = "INSERT INTO balance_total (kind, pollutant, zone, expires, amount_g)"
TOTAL_UPSERT = ("ON CONFLICT (kind, pollutant, zone, expires) DO UPDATE SET amount_g = balance_total.amount_g + "
                "excluded.amount_g")


_TXN_INSERT = f"INSERT INTO txn ({', '.join(TXN_COLUMNS)})"
_POSTING_INSERT = f"INSERT INTO posting ({', '.join(POSTING_COLUMNS)})"
_PAIR_INSERT = f"INSERT INTO balance ({', '.join(PAIR_COLUMNS)})"


def _write_small(conn: Connection, txn_rows, post_rows, pair_rows, total_rows) -> None:
    """An ordinary operation's writes: one statement per table, queued as one batch (driver.write)."""
    writes = [driver.values(_TXN_INSERT, len(TXN_COLUMNS), txn_rows)]
    if post_rows:  # a transaction of NO_POSTING_KINDS may have none
        writes.append(driver.values(_POSTING_INSERT, 5, post_rows))
    if pair_rows:
        writes.append(driver.values(_PAIR_INSERT, len(PAIR_COLUMNS), pair_rows, PAIR_UPSERT))
    if total_rows:
        writes.append(driver.values(TOTAL_INSERT, 5, total_rows, TOTAL_UPSERT))
    driver.write(conn, *writes)


NEVER = dt.date(9999, 12, 31)
TOTAL_KINDS = ("lot", "reserved", "allocated")


def _total_rows(conn: Connection, specs: list["TxnSpec"], known: dict[str, dt.date | None]) -> list[tuple]:
    """The batch's movements of balance_total (kind, pollutant, zone, lot expiry, grams); lot expiries the
    caller already knows (`known`, e.g. lots being issued) are not looked up."""
    delta: dict[tuple, int] = {}
    looked_up: dict[str, dt.date | None] = {}
    serials = sorted({l.lot for s in specs for l in s.legs if l.lot not in known and account_kind(l.account) == "lot"})
    for i in range(0, len(serials), 500):
        for serial, exp in conn.execute(text("SELECT serial, expires FROM lot WHERE serial IN :s")
                                        .bindparams(bindparam("s", expanding=True)), {"s": serials[i:i + 500]}):
            looked_up[serial] = as_date(exp)
    for spec in specs:
        for leg in spec.legs:
            kind = account_kind(leg.account)
            if kind in TOTAL_KINDS:
                if kind == "lot":
                    exp = (known[leg.lot] if leg.lot in known else looked_up.get(leg.lot)) or NEVER
                else:
                    exp = NEVER
                k = (kind, leg.pollutant, leg.zone, exp)
                delta[k] = delta.get(k, 0) + leg.amount_g
    # one upsert per key: new keys are inserted, existing ones incremented
    return [(*k, g) for k, g in sorted(delta.items()) if g]


class _Pair:
    __slots__ = ("leg", "amount", "last", "new", "dirty")

    def __init__(self, leg, amount, last, new):
        self.leg, self.amount, self.last, self.new, self.dirty = leg, amount, last, new, False


def _load_pairs(conn: Connection, keys: set[tuple[str, str]],
                known: dict[str, dict[str, tuple[int, dt.date | None]]]) -> dict[tuple[str, str], _Pair]:
    """The stored balances of exactly these (account, lot) pairs; accounts in `known` are not read."""
    out: dict[tuple[str, str], _Pair] = {}
    for account, lot in keys:
        if account in known and lot in known[account]:
            amount, last = known[account][lot]
            out[(account, lot)] = _Pair(None, int(amount), as_date(last), False)
    keys = {k for k in keys if k[0] not in known}
    if not keys:
        return out
    accounts = sorted({k[0] for k in keys})
    if len(accounts) > 500:  # large batches (imports): 500 accounts at a time, then filtered
        queries = [(text("SELECT account, lot, amount_g, last_date FROM balance WHERE account IN :a")
                    .bindparams(bindparam("a", expanding=True)), {"a": accounts[i:i + 500]})
                   for i in range(0, len(accounts), 500)]
    else:
        queries = [(text("SELECT account, lot, amount_g, last_date FROM balance WHERE account IN :a AND lot IN :l")
                    .bindparams(bindparam("a", expanding=True), bindparam("l", expanding=True)),
                    {"a": accounts, "l": sorted({k[1] for k in keys})})]
    for sql, params in queries:
        for a, l, g, last in conn.execute(sql, params):
            if (a, l) in keys:
                out[(a, l)] = _Pair(None, int(g), as_date(last), False)
    return out


def _check_and_apply(pairs: dict[tuple[str, str], _Pair], spec: TxnSpec) -> None:
    delta: dict[tuple[str, str], int] = {}
    for leg in spec.legs:
        key = (leg.account, leg.lot)
        delta[key] = delta.get(key, 0) + leg.amount_g
        pair = pairs.get(key)
        if pair is None:
            pairs[key] = _Pair(leg, 0, None, True)
        elif pair.leg is None:
            pair.leg = leg
    effective = spec.effective
    for key in sorted(delta):
        pair, d = pairs[key], delta[key]
        if pair.last and effective < pair.last:
            raise Refused("bad_date", reason="before_posting", date=str(effective), account=key[0], lot=key[1],
                          last=str(pair.last))
        if pair.amount + d < 0 and account_kind(key[0]) in NONNEG_KINDS:
            raise Refused("overdraw", account=key[0], lot=key[1], balance_g=pair.amount, change_g=d)
    for key, d in delta.items():
        pair = pairs[key]
        pair.amount += d
        pair.last = max(pair.last, effective) if pair.last else effective
        pair.dirty = True


def _pair_rows(pairs: dict[tuple[str, str], _Pair]) -> tuple[list[tuple], list[tuple]]:
    """(new rows, changed rows) of the balance table, full width (PAIR_COLUMNS)."""
    inserts, updates = [], []
    for (account, lot), pair in sorted(pairs.items()):
        if not pair.dirty:
            continue
        leg, kind = pair.leg, account_kind(account)
        full = (account, lot, kind, leg.pollutant, leg.zone, leg.project_id, kind in NONNEG_KINDS, pair.amount,
                pair.last)
        (inserts if pair.new else updates).append(full)
    return inserts, updates


def _write_pairs(conn: Connection, inserts: list[tuple], updates: list[tuple]) -> None:
    if len(inserts) + len(updates) < 1000:  # one upsert batch (one round trip)
        rows = inserts + updates
        conn.exec_driver_sql(*values_statement(conn, f"INSERT INTO balance ({', '.join(PAIR_COLUMNS)})",
                                               len(PAIR_COLUMNS), rows, PAIR_UPSERT))
        return
    insert_many(conn, "balance", PAIR_COLUMNS, inserts)
    update_many(conn, "UPDATE balance SET amount_g = ?, last_date = ? WHERE account = ? AND lot = ?",
                [(r[7], r[8], r[0], r[1]) for r in updates])


# --------------------------------------------------------------------------- verification

class ChainEntry(NamedTuple):
    """One transaction as the chain hashed it: its body, the previous hash and its own."""
    body: dict
    prev_hash: str
    hash: str


def iter_chain(conn: Connection) -> Iterator[ChainEntry]:
    """Yield a ChainEntry per transaction in chain order.

    One streamed query (transactions joined to their postings) on the caller's connection, so
    the whole walk sees the caller's snapshot and memory stays flat.
    """
    rows = conn.execution_options(stream_results=True, yield_per=5000).execute(text(
        "SELECT t.seq, t.kind, t.effective_date, t.booked_at, t.actor, t.memo, t.ref, t.project_id, "
        "t.rulebook_version, t.meta, t.prev_hash, t.hash, p.account, p.lot, p.pollutant, p.amount_g "
        "FROM txn t LEFT JOIN posting p ON p.txn_seq = t.seq ORDER BY t.seq, p.id"))
    current, legs = None, []
    for r in rows:
        if current is not None and r[0] != current[0]:
            yield _body(current, legs)
            legs = []
        current = r
        if r[12] is not None:
            legs.append((r[12], r[13], r[14], int(r[15])))
    if current is not None:
        yield _body(current, legs)


def _body(t, legs) -> ChainEntry:
    body = txn_body(t.seq, t.kind, as_date(t.effective_date), t.booked_at, t.actor, t.memo, t.ref, t.project_id,
                    t.rulebook_version, json.loads(t.meta), legs)
    return ChainEntry(body, t.prev_hash, t.hash)


def verify(conn: Connection, progress=None, expect_head: str | None = None) -> tuple[dict, list[Problem]]:
    """Recompute the hash chain and every balance from the postings alone, and compare the provenance
    tables, balance rows, totals and idempotency records with what the chain committed
    (quota.verification, through the pure checker quota.chaincheck). Returns (summary, problems)."""
    from quota.ledger.verification import verify as verify_all
    return verify_all(conn, progress, expect_head)
