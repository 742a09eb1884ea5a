"""One pure checker of a chain of transactions and its balances (no database, no files).

`verify` (database) and `verify --export` (a JSONL file) both feed it: the transactions in chain order
(full bodies, or quota-chain-v2 stubs that commit to their date), then the stated balance rows. It
checks the hash chain, that each transaction balances per pollutant *and per lot* (grams never change
lot), that each kind moves grams only between the accounts it may (KIND_MOVES), that an issue creates a
new lot for its tally's creditable amount (less what a superseded lot had already given out), and it
replays every balance pair with the columns it can know (pollutant, zone, project, last date). It keeps
what the chain committed about tallies, sources, lots and projects (`tallies`, `sources`, `lots`,
`projects`) so that the database verify can compare its tables with them.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

from typing import NamedTuple

from quota.accounts import lot_account, pool_account, project_account
from quota.errors import Problem
from quota.ledger.posting import GENESIS, NEVER, NO_POSTING_KINDS, NONNEG_KINDS, TOTAL_KINDS, account_kind, canonical, chain_hash

# kind -> (account kinds its negative legs may come from, account kinds its positive legs may go to).
# Every transaction also balances per (lot, pollutant): a gram stays on its lot from issue to the end.
RETURNS = {"lot", "expired", "revoked", "superseded"}
KIND_MOVES: dict[str, tuple[frozenset, frozenset]] = {
    "issue": (frozenset({"issued"}), frozenset({"lot"})),
    "reserve": (frozenset({"lot"}), frozenset({"reserved"})),
    "approve": (frozenset({"reserved"}), frozenset({"allocated"})),
    "release": (frozenset({"reserved"}), frozenset(RETURNS)),
    "cancel": (frozenset({"reserved", "allocated"}), frozenset(RETURNS)),
    "expire": (frozenset({"lot"}), frozenset({"expired"})),
    "revoke": (frozenset({"lot"}), frozenset({"revoked", "superseded", "expired"})),  # a lapsed lot superseded
    "adjust": (frozenset({"lot", "adjustment"}), frozenset({"lot", "adjustment"})),
}
PROJECT_KINDS = {"reserved", "allocated"}
# what an issue's meta commits about its tally (quota-chain-v2 issues carry all of these; earlier ones
# carry tally_id, source_id, report_no, measure, zone, expires, creditable_g and supersedes)
TALLY_FACTS = ("tally_id", "source_id", "measure", "zone", "pollutant", "baseline_actual", "permitted", "post",
               "unit", "baseline_year", "effective_date", "method", "assessor", "report_no", "creditable_g",
               "supersedes")
PROJECT_FACTS = ("name", "zone", "industry", "priority", "needed_by", "must_fund")


class KeptTxn(NamedTuple):
    """A transaction the checker keeps for a later comparison (an idempotency record's result names it)."""
    kind: str
    project: str | None
    ref: str | None
    meta: dict
    postings: list  # [account, lot, pollutant, grams] per posting

class ChainChecker:
    """Feed `txn`/`stub` per transaction in chain order, call `finish`, then `balance` per stated balance row
    and `balances_done`. Problems accumulate in `problems`, each naming `source` and the row given."""

    def __init__(self, source: str, *, schemes: frozenset = frozenset({1, 2}), as_of: str | None = None,
                 watch: set[int] | None = None, limit: int = 50):
        self.source, self.schemes, self.as_of, self.watch, self.limit = source, schemes, as_of, watch or set(), limit
        self.problems: list[Problem] = []
        self.prev, self.seq, self.v2_from = GENESIS, 0, None
        self.n_txn = self.n_post = self.n_stub = self.n_later = self.n_v1 = self.n_unchecked = 0
        self.pairs: dict[tuple[str, str], list] = {}  # (account, lot) -> [grams, last date, project or None]
        self.lots: dict[str, dict] = {}  # serial -> tally_id, pollutant, zone, expires, effective_date, issued_g, seq
        self.tally_lot: dict[str, str] = {}
        self.tallies: dict[str, dict] = {}  # tally_id -> committed facts (+ "seq")
        self.sources: dict[str, dict] = {}  # source_id -> name, zone, seq (the first issue citing it)
        self.projects: dict[str, dict] = {}  # project_id -> committed facts, needs, seq
        self.superseded: dict[str, str] = {}
        self.revoked_for: dict[str, int] = defaultdict(int)  # superseding tally -> grams revoked for it
        self.spent: dict[str, int] = defaultdict(int)  # lot -> grams allocated or expired (what a supersession spends)
        self.supersedes_of: dict[str, str] = {}  # tally -> the tally it superseded
        self.key_of = None  # (rulebook version, pollutant, zone) -> matching key, when the caller knows the rulebooks
        self.used_projects: dict[str, int] = {}
        self.kept: dict[int, KeptTxn] = {}  # the transactions named in `watch`
        self.partial = False  # stubs seen: lots and projects they created are unknown here
        self._seen: set[tuple[str, str]] = set()
        self._kinds: dict[str, str] = {}  # account -> its kind (account_kind, looked up once per account)
        self.lot_status: dict[str, tuple[str, int]] = {}  # serial -> (revoked or superseded, seq): from revokes
        self.expect: str | None = None  # a pinned head (--expect-head), and where the chain passed it
        self.expect_at: int | None = None

    # ------------------------------------------------------------------ the chain
    def bad(self, row: int, column: str, code: str, source: str | None = None, /, **facts) -> None:
        """A finding named by its code (the catalogue renders it, quota.report.findings)."""
        if len(self.problems) < self.limit:
            self.problems.append(Problem.of(source or self.source, row, column, code, **facts))

    def _link(self, seq, prev_hash: str, row: int) -> None:
        expected = self.seq + 1
        if seq != expected:
            self.bad(row, "seq", "seq_gap", expected=expected, found=seq)
        if prev_hash != self.prev:
            self.bad(row, "prev_hash", "prev_hash_mismatch")
        self.seq = seq if isinstance(seq, int) else expected

    def txn(self, body: dict, prev_hash: str, digest: str, row: int, counted: bool = True) -> None:
        """A transaction with its hashed body; `counted` false for a full transaction an as-of export shows
        only to prove its hash (a quota-chain-v1 transaction dated after the as-of date)."""
        self._link(body.get("seq"), prev_hash, row)
        text = canonical(body).encode("utf-8")
        if 2 in self.schemes and digest == chain_hash(prev_hash, str(body.get("date")), hashlib.sha256(text).hexdigest()):
            if self.v2_from is None:
                self.v2_from = self.seq
        elif 1 in self.schemes and digest == hashlib.sha256(prev_hash.encode("utf-8") + text).hexdigest():
            self.n_v1 += 1
            if self.v2_from is not None:
                self.bad(row, "hash", "v1_after_v2", seq=self.v2_from)
        else:
            self.bad(row, "hash", "hash_mismatch")
        self.prev = digest
        if digest == self.expect:
            self.expect_at = self.seq
        if not counted:
            self.n_later += 1
            self._not_before_as_of(body.get("date"), row)
            return
        if self.as_of is not None and str(body.get("date")) > self.as_of:
            self.bad(row, "date", "after_as_of", date=str(body.get("date")), as_of=self.as_of)
        self._apply(body, row)

    def stub(self, seq, date: str | None, body_digest: str | None, prev_hash: str, digest: str, row: int) -> None:
        """A hash-only stand-in for a transaction outside an as-of export. quota-chain-v2: it shows its date and
        its body's hash, and the chain's hash binds both, so its date can be checked against the as-of date."""
        self._link(seq, prev_hash, row)
        self.partial = True
        self.n_stub += 1
        if self.as_of is None:
            self.bad(row, "type", "stub_in_full_export")
        elif 2 not in self.schemes:  # a quota-chain-v1 stub carries nothing to check
            self.n_unchecked += 1
        elif date is None or body_digest is None or chain_hash(prev_hash, str(date), str(body_digest)) != digest:
            self.bad(row, "hash", "stub_mismatch")
        else:
            if self.v2_from is None:
                self.v2_from = self.seq
            self._not_before_as_of(date, row)
        self.prev = digest
        if digest == self.expect:
            self.expect_at = self.seq

    def _not_before_as_of(self, date, row: int) -> None:
        if self.as_of is None:
            self.bad(row, "type", "hidden_in_full_export")
        elif str(date) <= self.as_of:
            self.bad(row, "date", "hidden_before_as_of", date=date, as_of=self.as_of)

    # ------------------------------------------------------------------ what each transaction may do
    def _apply(self, body: dict, row: int) -> None:
        seq, kind, legs, project = self.seq, body.get("kind"), body.get("postings") or [], body.get("project")
        meta, date = body.get("meta") or {}, str(body.get("date"))
        self.n_txn += 1
        if seq in self.watch:
            self.kept[seq] = KeptTxn(kind, project, body.get("ref"), meta, legs)
        if kind == "register":
            if legs:
                self.bad(row, "postings", "register_moves")
            self._register(meta, seq, row)
            return
        rule = KIND_MOVES.get(kind)
        if rule is None:
            self.bad(row, "kind", "unknown_kind", kind=repr(kind))
        if not legs and kind not in NO_POSTING_KINDS:
            self.bad(row, "postings", "no_postings", kind=kind)
        if kind == "revoke":
            self._revoke(meta, legs, seq, row)
        if kind == "issue":
            self._issue(body, meta, legs, date, row)
        per_lot: dict[tuple, int] = {}
        lots, pairs, partial, kinds, status = self.lots, self.pairs, self.partial, self._kinds, self.lot_status
        neg, pos = rule if rule is not None else (None, None)
        drawn = []
        self.n_post += len(legs)
        for account, lot, pol, amount in legs:  # the hot loop of verify: one pass per posting
            lk = (lot, pol)
            per_lot[lk] = per_lot.get(lk, 0) + amount
            k = kinds.get(account)
            if k is None:
                k = kinds[account] = account_kind(account)
            key = (account, lot)
            pair = pairs.get(key)
            if pair is None:
                pairs[key] = [amount, date, project if k in PROJECT_KINDS else None]
            else:
                pair[0] += amount
                if date > pair[1]:
                    pair[1] = date
            if type(amount) is not int or amount == 0:
                self.bad(row, "postings", "bad_posting", account=account, lot=lot, amount=repr(amount))
            elif amount > 0:
                if pos is not None and k not in pos:
                    self.bad(row, "postings", "may_not_credit", kind=kind, account=account)
            else:
                if neg is not None and k not in neg:
                    self.bad(row, "postings", "may_not_debit", kind=kind, account=account)
                drawn.append((key, k))
            if k == "lot":
                owned = account == lot_account(lot)
                if lot in status and (amount > 0 or kind == "reserve") and kind != "adjust":
                    self.bad(row, "postings", "returns_to_closed_lot" if amount > 0 else "draws_closed_lot", lot=lot, state=status[lot][0], seq=status[lot][1])
            elif k in PROJECT_KINDS:
                owned = project is not None and account == project_account(project, k)
                if k == "allocated":
                    self.spent[lot] += amount
                if project not in self.used_projects:
                    self.used_projects[project] = seq
            else:
                owned = account == k + ":" + pol
                if k == "expired":
                    self.spent[lot] += amount
            if not owned and rule is not None:
                self.bad(row, "postings", "foreign_account", account=account, lot=lot, pollutant=pol, project=project)
            info = lots.get(lot)
            if info is None:
                if not partial:
                    self.bad(row, "postings", "lot_never_issued", lot=lot)
            elif info["pollutant"] != pol:
                self.bad(row, "postings", "lot_other_pollutant", lot=lot, held=info["pollutant"], pollutant=pol)
        moved = [k for k, v in per_lot.items() if v]
        if moved:
            pols: dict[str, int] = defaultdict(int)
            for _, _, pol, amount in legs:
                pols[pol] += amount
            if any(pols.values()):
                self.bad(row, "postings", "unbalanced", sums=str(dict(pols)))
            self.bad(row, "postings", "between_lots", lots=[str(m) for m in sorted(moved)[:3]])
        for key, k in drawn:
            if k in NONNEG_KINDS and pairs[key][0] < 0:
                self.bad(row, "postings", "goes_negative", account=key[0], lot=key[1], grams=pairs[key][0])
            if kind == "expire" and k == "lot":
                info = lots.get(key[1])
                if info is not None and (info["expires"] is None or info["expires"] > date):
                    self.bad(row, "postings", "lot_expired_by", lot=key[1], expires=str(info["expires"]), date=str(date))
        if kind in ("reserve", "approve") and project in self.projects:
            self._eligible(body, kind, legs, project, date, row)
        if kind == "revoke" and meta.get("superseded_by"):
            self.revoked_for[str(meta["superseded_by"])] += sum(a for _, _, _, a in legs if a > 0)
        if kind == "revoke" and isinstance(meta.get("lot"), str):  # after its own legs: it may empty the lot
            self.lot_status.setdefault(meta["lot"], ("superseded" if meta.get("superseded_by") else "revoked", seq))

    def _eligible(self, body: dict, kind: str, legs: list, project: str, date: str, row: int) -> None:
        """The eligibility rule (quota.eligibility) for every gram a reservation draws or an approval confirms,
        on the transaction's date: the lot is effective (reserve), not expired by the later of that date and the
        project's needed_by, and carries the project's matching key under the rulebook
        version the transaction names (when `key_of` is given). Revoked and superseded lots are checked apart.
        Projects registered before the rule (migration 0011's registrations) are not judged by it."""
        facts = self.projects[project]
        # (not the booking day: a clock pinned back, as the demo's, books on the calendar's day)
        until = max(date, str(facts.get("needed_by") or ""))
        target = project_account(project, "reserved" if kind == "reserve" else "allocated")
        for account, lot, pol, amount in legs:
            if account != target or amount <= 0:
                continue
            info = self.lots.get(lot)
            if info is None:
                continue
            if kind == "reserve" and str(info["effective_date"]) > date:
                self.bad(row, "postings", "reserved_before_effective", lot=lot, effective=str(info["effective_date"]), date=str(date))
            if info["expires"] is not None and str(info["expires"]) <= until:
                self.bad(row, "postings", "expires_before_needed", lot=lot, expires=str(info["expires"]), until=str(until), project=project)
            if self.key_of is not None and facts.get("zone"):
                have = self.key_of(body.get("rulebook"), pol, info.get("zone"))
                want = self.key_of(body.get("rulebook"), pol, facts["zone"])
                if have is not None and want is not None and have != want:
                    self.bad(row, "postings", "lot_other_key", lot=lot, key=have, project=project, needs=want)

    def _revoke(self, meta: dict, legs: list, seq: int, row: int) -> None:
        """A revocation (or supersession) names its lot and takes only that lot's unallocated grams."""
        serial = meta.get("lot")
        if not isinstance(serial, str) or (serial not in self.lots and not self.partial):
            self.bad(row, "meta", "revoke_unknown_lot", lot=repr(serial))
        elif serial in self.lot_status:
            self.bad(row, "meta", "lot_already", lot=serial, state=self.lot_status[serial][0], seq=self.lot_status[serial][1])
        if any(lot != serial for _, lot, _, _ in legs):
            self.bad(row, "postings", "revoke_other_lot", lot=serial)
        left = self.pairs.get((lot_account(serial), serial), [0])[0]
        if serial in self.lots and sum(a for _, _, _, a in legs if a > 0) != left:
            self.bad(row, "postings", "revoke_partial", lot=serial, left=left)

    def _issue(self, body: dict, meta: dict, legs: list, date: str, row: int) -> None:
        if len(legs) != 2 or body.get("project") is not None:
            self.bad(row, "postings", "issue_shape")
            return
        (a1, serial, pol, g), (a0, lot0, pol0, g0) = sorted(legs, key=lambda l: l[3], reverse=True)
        if a1 != lot_account(serial) or a0 != pool_account("issued", pol) or lot0 != serial or pol0 != pol or g <= 0 or g0 != -g:
            self.bad(row, "postings", "issue_shape")
            return
        if serial in self.lots or (lot_account(serial), serial) in self.pairs:
            self.bad(row, "postings", "issue_existing_lot", lot=serial)
            return
        tid = meta.get("tally_id")
        if not isinstance(tid, str) or not tid:
            self.bad(row, "meta", "issue_no_tally")
            return
        if tid in self.tally_lot:
            self.bad(row, "meta", "tally_issued_twice", tally=tid, lot=self.tally_lot[tid])
            return
        facts = {k: meta[k] for k in TALLY_FACTS if k in meta}
        facts.update(tally_id=tid, pollutant=pol, effective_date=date, seq=self.seq, rulebook=body.get("rulebook"))
        if "source_name" not in meta and "measure" in meta:  # quota-chain-v1 issues: memo "<measure> <name>"
            memo = str(body.get("memo") or "")
            if memo.startswith(f"{meta['measure']} "):
                meta = {**meta, "source_name": memo[len(meta["measure"]) + 1:]}
        self.tallies[tid] = facts
        self.tally_lot[tid] = serial
        self.lots[serial] = {"tally_id": tid, "pollutant": pol, "zone": meta.get("zone"), "expires": meta.get("expires"),
                             "effective_date": date, "issued_g": g, "seq": self.seq}
        sid = meta.get("source_id")
        if sid is not None and sid not in self.sources:
            self.sources[sid] = {"name": meta.get("source_name"), "zone": meta.get("zone"), "seq": self.seq}
        credit = meta.get("creditable_g")
        if not isinstance(credit, int):
            self.bad(row, "meta", "issue_no_credit", tally=tid)
            return
        used = 0
        old = meta.get("supersedes")
        if old:
            old_serial = self.tally_lot.get(old)
            if old_serial is None:
                if not self.partial:
                    self.bad(row, "meta", "supersedes_unknown", tally=tid, old=old)
                return
            if old in self.superseded:
                self.bad(row, "meta", "superseded_twice", tally=old, by=self.superseded[old])
            self.superseded[old] = tid
            self.supersedes_of[tid] = old
            # what the whole chain it replaces gave out for good: allocated or expired grams (quota.tallies)
            seen, t = set(), old
            while t and t not in seen and t in self.tally_lot:
                seen.add(t)
                used += self.spent.get(self.tally_lot[t], 0)
                t = self.supersedes_of.get(t)
        if g != credit - used:
            self.bad(row, "postings", "issue_amount", grams=g, tally=tid, credit=credit, used=used) if used else self.bad(row, "postings", "issue_amount_plain", grams=g, tally=tid, credit=credit)

    def _register(self, meta: dict, seq: int, row: int) -> None:
        projects = meta.get("projects")
        if not isinstance(projects, dict) and not meta.get("tallies"):
            self.bad(row, "meta", "register_no_project")
        for pid, facts in sorted((projects or {}).items()):
            if pid in self.projects:
                self.bad(row, "meta", "registered_twice", project_id=pid, seq=self.projects[pid]["seq"])
                continue
            self.projects[pid] = {**facts, "seq": seq}
        # facts of tallies issued before issues carried them (committed once, by migration 0010)
        for tid, facts in sorted((meta.get("tallies") or {}).items()):
            have = self.tallies.get(tid)
            if have is None:
                self.bad(row, "meta", "register_unknown_tally", tally=tid)
                continue
            for k, v in sorted(facts.items()):
                if k == "source_name":
                    src = self.sources.get(have.get("source_id"))
                    if src is not None and src.get("name") is None:
                        src["name"] = v
                elif k in have and have[k] != v:
                    self.bad(row, "meta", "register_differs", tally=tid, key=k, value=repr(v), committed=repr(have[k]))
                else:
                    have[k] = v

    def finish(self) -> None:
        """Checks that need the whole chain."""
        if not self.partial:
            for pid, seq in sorted(self.used_projects.items(), key=lambda kv: kv[1]):
                # projects first used under quota-chain-v1 predate registration (migration 0010 registers them)
                if pid not in self.projects and self.v2_from is not None and seq >= self.v2_from:
                    self.bad(seq if self.source == "txn" else 0, "project", "unregistered_project", project_id=pid)
                    break
        sums: dict[str, int] = defaultdict(int)
        for (_, lot), pair in self.pairs.items():
            info = self.lots.get(lot)
            if info is not None:
                sums[info["pollutant"]] += pair[0]
        for pol, total in sorted(sums.items()):
            if total:
                self.bad(0, pol, "sum_not_zero", total=total)

    def check_head(self, row: int) -> None:
        """With a pinned head (`expect`, from --expect-head): the chain must end exactly there, so that a
        truncated tail (or a chain rewritten from some point on) is caught."""
        if self.expect is None or self.prev == self.expect:
            return
        if self.expect_at is not None:
            self.bad(row, "head", "head_followed", end=self.prev, seq=self.seq, expected=self.expect,
                     at=self.expect_at, after=self.seq - self.expect_at)
        else:
            self.bad(row, "head", "head_nowhere", end=self.prev, seq=self.seq, expected=self.expect)

    # ------------------------------------------------------------------ balances
    def expected(self, account: str, lot: str) -> dict | None:
        """The replayed balance pair: grams, kind, pollutant, zone, project, nonneg, last date."""
        pair = self.pairs.get((account, lot))
        if pair is None:
            return None
        k = account_kind(account)
        info = self.lots.get(lot) or {}
        project = pair[2]
        zone = (self.projects.get(project) or {}).get("zone") if k in PROJECT_KINDS else info.get("zone")
        return {"amount_g": pair[0], "kind": k, "pollutant": info.get("pollutant"), "zone": zone,
                "project_id": project, "nonneg": k in NONNEG_KINDS, "last_date": pair[1]}

    def balance(self, account: str, lot: str, row: int, source: str, **stated) -> None:
        """One stated balance row; only the columns given are compared (an export states grams and pollutant)."""
        key = (account, lot)
        self._seen.add(key)
        want = self.expected(account, lot)
        if want is None:
            if stated.get("amount_g"):
                self.bad(row, f"{account} {lot}", "balance_untouched", source, grams=stated["amount_g"])
            elif self.source == "txn":
                self.bad(row, f"{account} {lot}", "balance_row_untouched", source)
            return
        for column, value in stated.items():
            if value != want[column] and not (want[column] is None and (self.partial or column in ("zone", "pollutant"))):
                # (an unknown zone or pollutant comes from an unregistered project or an unissued lot: named already)
                if column == "amount_g":
                    code, facts = "balance_differs", {"value": repr(value), "replay": repr(want[column])}
                else:
                    code, facts = "balance_column_differs", {"column": column, "value": repr(value),
                                                             "replay": repr(want[column])}
                self.bad(row, f"{account} {lot}", code, source, **facts)
                return

    def balances_done(self, source: str, every_pair: bool) -> None:
        """Pairs the replay holds that no stated row gave (any, when `every_pair`; else non-zero ones)."""
        for key in sorted(set(self.pairs) - self._seen):
            amount = self.pairs[key][0]
            if amount or every_pair:
                self.bad(0, f"{key[0]} {key[1]}", "balance_missing", source, grams=amount)
        for key, pair in sorted(self.pairs.items()):
            if pair[0] < 0 and account_kind(key[0]) in NONNEG_KINDS:
                self.bad(0, f"{key[0]} {key[1]}", "negative_balance", source, grams=pair[0])

    def totals(self) -> dict[tuple, int]:
        """balance_total recomputed: (kind, pollutant, zone, lot expiry or NEVER) -> grams, non-zero only."""
        out: dict[tuple, int] = defaultdict(int)
        for (account, lot), pair in self.pairs.items():
            k = account_kind(account)
            if k in TOTAL_KINDS and pair[0]:
                want = self.expected(account, lot)
                info = self.lots.get(lot) or {}
                exp = (info.get("expires") or NEVER.isoformat()) if k == "lot" else NEVER.isoformat()
                out[(k, want["pollutant"], want["zone"], str(exp))] += pair[0]
        return {k: v for k, v in out.items() if v}

