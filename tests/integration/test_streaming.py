"""Streams, not lists, where the size is the user's (docs/performance.md, Memory at 10^6 lots).

The streamed `balance` rows equal what the list implementation gave (kept here as the reference), and
`quota balance --by lot --json` writes byte for byte what json.dumps of the whole result wrote; memory
measured with tracemalloc does not grow with the number of lots (figures at 10^6 lots: bench/memory.py).
"""
from __future__ import annotations

import datetime as dt
import io
import json
import sys
import tracemalloc

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli import render
from cli.main import app
from quota import clock, units
from quota.audit import jsonl as export
from quota.clock import as_date as _as_date
from quota.errors import Refused
from quota.intake import project_files as projects
from quota.intake import tallies
from quota.ledger import balances
from quota.ledger import balances as audit  # balance() and balance_stream() live beside the queries
from quota.ledger import operations as quota_ops
from quota.rules import versions as rulebooks
from quota.store import db
from quota.audit import trace
from tests.conftest import DATA, TALLY_HEADER


# ----------------------------------------------------------------- the list implementation, as it was (reference)

def _old_pair_balances(conn, as_of=None):
    if as_of is None:
        yield from conn.execute(text(
            "SELECT kind, pollutant, zone, account, lot, project_id, amount_g FROM balance"))
        return
    yield from conn.execute(text(
        "SELECT b.kind, b.pollutant, b.zone, b.account, b.lot, b.project_id, SUM(p.amount_g) "
        "FROM posting p JOIN txn t ON t.seq = p.txn_seq "
        "JOIN balance b ON b.account = p.account AND b.lot = p.lot "
        "WHERE t.effective_date <= :d "
        "GROUP BY b.kind, b.pollutant, b.zone, b.account, b.lot, b.project_id"), {"d": as_of})


def old_balance_rows(conn, units_of, *, by="pollutant", pollutant=None, zone=None, as_of=None, today=None):
    day = as_of or today or clock.today()
    if as_of is None and by in ("pollutant", "zone"):
        return balances._current_totals(conn, units_of, by, pollutant, zone, day)
    lots = {r[0]: r for r in conn.execute(text(
        "SELECT l.serial, l.zone, l.tally_id, t.source_id, l.issued_g, l.expires, l.effective_date, "
        "l.pollutant FROM lot l JOIN tally t ON t.tally_id = l.tally_id"))}
    status = dict(conn.execute(text("SELECT s.serial, s.status FROM lot_status s JOIN txn t ON t.seq = s.txn_seq "
                                    "WHERE t.effective_date <= :d"), {"d": day}).all()) if by == "lot" else {}
    groups = {}
    for kind, pol, z, account, lot, project, amount in _old_pair_balances(conn, as_of):
        if pollutant and pol != pollutant:
            continue
        if zone and z != zone:
            continue
        key = {"pollutant": (pol,), "zone": (pol, z), "lot": (pol, lot)}[by]
        g = groups.setdefault(key, {"available_g": 0, "reserved_g": 0, "allocated_g": 0,
                                    "lapsed_g": 0, "expired_g": 0, "revoked_g": 0, "superseded_g": 0})
        expires = _as_date(lots[lot][5]) if lot in lots else None
        if kind == "lot":
            if expires is not None and expires <= day:
                g["lapsed_g"] += int(amount)
            else:
                g["available_g"] += int(amount)
        elif kind in ("reserved", "allocated", "expired", "revoked", "superseded"):
            g[f"{kind}_g"] += int(amount)
    if by == "lot":
        for serial, row in lots.items():
            if (pollutant and row[7] != pollutant) or (zone and row[1] != zone):
                continue
            if as_of and _as_date(row[6]) > day:
                continue
            groups.setdefault((row[7], serial), {"available_g": 0, "reserved_g": 0, "allocated_g": 0,
                                                 "lapsed_g": 0, "expired_g": 0, "revoked_g": 0, "superseded_g": 0})
    out = []
    for key in sorted(groups):
        g = groups[key]
        pol = key[0]
        unit = units_of.get(pol, "t/a")
        row = {"pollutant": pol}
        if by == "zone":
            row["zone"] = key[1]
        if by == "lot":
            lot = lots[key[1]]
            expires = _as_date(lot[5])
            row.update({"lot": key[1], "zone": lot[1], "tally_id": lot[2], "source_id": lot[3],
                        "issued_g": int(lot[4]), "expires": expires.isoformat() if expires else None})
        row.update({k: g[k] for k in ("available_g", "reserved_g", "allocated_g")})
        if by == "lot":
            row.update({"lapsed_g": g["lapsed_g"], "expired_g": g["expired_g"], "revoked_g": g["revoked_g"],
                        "superseded_g": g["superseded_g"],
                        "state": balances._lot_state(g, expires, day, status.get(key[1]))})
        else:
            row["lapsed_g"] = g["lapsed_g"]
        row.update({"unit": unit, "available": units.display(row["available_g"], unit),
                    "reserved": units.display(row["reserved_g"], unit),
                    "allocated": units.display(row["allocated_g"], unit)})
        out.append(row)
    return out


# ----------------------------------------------------------------- a ledger with every lot state

@pytest.fixture
def busy(engine, tmp_path):
    """The sample tallies and projects; projects reserved, approved, released and cancelled; a lot revoked, a
    tally superseded, a lot with a code outside ASCII (sort order), and lots expired by `quota expire`."""
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="t")
    projects.import_projects(engine, str(DATA / "projects.csv"), actor="t")
    with engine.connect() as c:
        ids = [r[0] for r in c.execute(text("SELECT project_id FROM project ORDER BY project_id"))]
    for i, pid in enumerate(ids):
        try:
            quota_ops.reserve(engine, pid, actor="t")
            if i % 4 == 1:
                quota_ops.approve(engine, pid, doc=f"D{i}", actor="t")
            elif i % 4 == 2:
                quota_ops.release(engine, pid, actor="t")
            elif i % 4 == 3:
                quota_ops.approve(engine, pid, doc=f"D{i}", actor="t")
                quota_ops.cancel(engine, pid, actor="t")
        except Refused:
            pass
    with engine.connect() as c:
        lots = [r[0] for r in c.execute(text("SELECT serial FROM lot ORDER BY serial"))]
    quota_ops.revoke(engine, lots[-1], actor="t", memo="found invalid")
    more = tmp_path / "more.csv"
    more.write_text(TALLY_HEADER + ",supersedes\n"
                    "T2022-001B,S01,金坛华源化工有限公司,closure,JT-YT,COD,18.00,20.00,,t/a,2020,2022-09-15,m,a,R1,"
                    "T2022-001\n"
                    "tz-1,Sz1,新源,closure,JT-ZL,NOX,2,,,t/a,2020,2019-01-01,m,a,R2,\n", encoding="utf-8")
    tallies.import_tallies(engine, str(more), actor="t")
    quota_ops.expire(engine, clock.today(), actor="t")
    return engine


CASES = [dict(by=by, pollutant=p, zone=z, as_of=d)
         for by in ("lot", "pollutant", "zone")
         for p, z in ((None, None), ("COD", None), (None, "JT-YT"), ("NOX", "JT-ZL"))
         for d in (None, dt.date(2022, 9, 14), dt.date(2023, 1, 1), dt.date(2099, 1, 1))]


def test_streamed_balances_equal_the_list_implementation(busy):
    with db.reading(busy) as conn:
        _, book = rulebooks.current(conn)
        unit_of = {p.code: p.unit for p in book.pollutants.values()}
        seen_states = set()
        for case in CASES:
            old = old_balance_rows(conn, unit_of, today=clock.today(), **case)
            new = balances.balance_rows(conn, unit_of, today=clock.today(), **case)
            assert new == old, case
            assert [list(r) for r in new] == [list(r) for r in old], case  # key order too
            if case["by"] == "lot":
                assert list(balances.lot_rows(conn, unit_of, today=clock.today(), pollutant=case["pollutant"],
                                              zone=case["zone"], as_of=case["as_of"])) == old
                seen_states |= {r["state"] for r in new}
    assert {"active", "expired", "revoked", "superseded"} <= seen_states  # the ledger exercises the states


def test_balance_json_is_byte_for_byte_what_json_dumps_wrote(busy, db_url):
    runner = CliRunner()
    for args in (["--by", "lot"], ["--by", "lot", "--pollutant", "NOX"], ["--by", "lot", "--as-of", "2000-01-01"],
                 ["--by", "zone"], []):
        got = runner.invoke(app, ["--db", db_url, "balance", "--json", *args])
        assert got.exit_code == 0, got.output
        day = dt.date(2000, 1, 1) if "2000-01-01" in args else None
        by = args[1] if args else "pollutant"
        pol = "NOX" if "NOX" in args else None
        want = audit.balance(busy, by=by, pollutant=pol, as_of=day)
        assert got.stdout == json.dumps(want, ensure_ascii=False, indent=2, default=str) + "\n"
    empty = runner.invoke(app, ["--db", db_url, "balance", "--json", "--by", "lot", "--as-of", "2000-01-01"])
    assert '"rows": []' in empty.stdout  # no lot yet: the empty list as json.dumps writes it


@pytest.mark.parametrize("head", [{}, {"as_of": "2026-01-01", "by": "lot"}, {"x": {"nested": [1, "二"]}}])
@pytest.mark.parametrize("items", [[], [{}], [{"a": 1}], [{"a": [1, {"b": None}], "名": "值\n"}, {"c": 1.5}, []],
                                   [{"d": dt.date(2026, 1, 2), "n": None, "t": True, "i": -3, "s": "\u202e\"\\"},
                                    {1: "a"}, "x", 7]])
def test_emit_json_stream_writes_what_emit_json_writes(head, items, monkeypatch):
    def captured(fn, *args):
        buf = io.StringIO()
        monkeypatch.setattr(sys, "stdout", buf)
        fn(*args)
        monkeypatch.undo()
        return buf.getvalue()
    want = json.dumps({**head, "rows": items}, ensure_ascii=False, indent=2, default=str) + "\n"
    assert captured(render.emit_json_stream, head, "rows", iter(items)) == want
    assert captured(render.emit_json, {**head, "rows": items, "after": items, "n": 1}) == \
        json.dumps({**head, "rows": items, "after": items, "n": 1}, ensure_ascii=False, indent=2, default=str) + "\n"
    for other in ([], {}, "x", [items], {1: items}, {"a": {}}):
        assert captured(render.emit_json, other) == json.dumps(other, ensure_ascii=False, indent=2, default=str) + "\n"


# ----------------------------------------------------------------- memory does not grow with the lots

def _lots(engine, tmp_path, n: int, start: int = 0) -> None:
    """n lots, written straight through the import (one closure per source)."""
    path = tmp_path / f"t{n}-{start}.csv"
    zones, pols = ["JT-JC", "JT-YT", "JT-DC", "JT-ZL", "JT-XB", "JT-ZQ"], ["COD", "NH3-N", "TN", "SO2", "NOX", "PM"]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(TALLY_HEADER + "\n")
        for i in range(start, start + n):
            fh.write(f"T{i},S{i},源{i},closure,{zones[i % 6]},{pols[(i // 6) % 6]},{5 + i % 50}.25,,,t/a,2020,"
                     f"2025-01-0{1 + i % 9},m,x,R{i}\n")
    tallies.import_tallies(engine, str(path), actor="t")


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_balance_by_lot_json_memory_does_not_grow_with_the_lots(engine, tmp_path, monkeypatch):
    """The traced peak of writing `balance --by lot --json` for 20,000 lots is within 1.5x of 2,000 lots', with the
    stream's batch made 100 rows (it is 5,000, as large as the test's ledgers). The list implementation grows 10x:
    every row was in memory twice, as a dict and as text."""
    monkeypatch.setattr(balances, "BATCH", 100)
    def write_all():
        with audit.balance_stream(engine, by="lot") as (head, rows):
            render.emit_json_stream(head, "rows", rows)

    monkeypatch.setattr(sys, "stdout", io.StringIO())
    peaks = {}
    _lots(engine, tmp_path, 2000)
    write_all()  # warm: imports, the rulebook's caches
    monkeypatch.setattr(sys, "stdout", _Sink())
    peaks[2000] = _peak(write_all)
    _lots(engine, tmp_path, 18_000, start=2000)
    peaks[20_000] = _peak(write_all)
    assert peaks[20_000] < 1.5 * peaks[2000], peaks


class _Sink(io.TextIOBase):
    """stdout that counts what is written and keeps none of it."""
    def __init__(self):
        self.n = 0

    def write(self, s):
        self.n += len(s)
        return len(s)


# ----------------------------------------------------------------- the JSONL export's balances

@pytest.mark.parametrize("as_of", [None, dt.date(2022, 9, 15), dt.date(2099, 1, 1)])
def test_jsonl_balance_lines_are_the_sums_of_its_transactions(busy, as_of):
    """The balance lines (summed and sorted by the database, streamed) are exactly what summing the file's own
    txn lines per (account, lot, pollutant) gives, non-zero ones, in code-point order."""
    records = list(export.export_lines(busy, as_of))
    sums: dict[tuple, int] = {}
    for rec in records:
        if rec["type"] == "txn":
            for account, lot, pol, amount in rec["postings"]:
                sums[(account, lot, pol)] = sums.get((account, lot, pol), 0) + amount
    want = [{"type": "balance", "account": a, "lot": l, "pollutant": p, "amount_g": g}
            for (a, l, p), g in sorted(sums.items()) if g]
    assert [r for r in records if r["type"] == "balance"] == want and want
    assert all(type(r["amount_g"]) is int for r in want)


# ----------------------------------------------------------------- the tally import reads its file in passes

def old_settle_ledger(conn, name, sha, records, book):
    """The ledger's checks as they were, reading every tally and source (the reference)."""
    import dataclasses
    from decimal import Decimal
    from quota import identity
    from quota.errors import Problem
    from quota.intake import sources
    problems = []
    prior = conn.execute(text("SELECT id, imported_at FROM import_batch WHERE kind = 'tally' AND sha256 = :s"),
                         {"s": sha}).first()
    if prior:
        problems.append(Problem.of(name, 0, "", "already_imported", batch=prior[0], at=str(prior[1])))
    rows = conn.execute(text("SELECT source_id, pollutant, measure, tally_id, supersedes, effective_date, post, "
                             "unit FROM tally")).all()
    stored_ids = {identity.loose(r[3]): r[3] for r in rows}
    superseded = {identity.loose(r[4]) for r in rows if r[4]}
    current = [r for r in rows if identity.loose(r[3]) not in superseded]
    measures = {(identity.loose(r[0]), r[1], r[2]): r[3] for r in current}
    for r in records:
        if identity.loose(r.tally_id) in stored_ids:
            problems.append(Problem.of(name, r.row, "tally_id", "tally_exists", tally=r.tally_id))
        if r.supersedes:
            now = measures.get((identity.loose(r.source_id), r.pollutant, r.measure))
            if now is None or not identity.same(now, r.supersedes):
                problems.append(Problem.of(name, r.row, "supersedes", "not_current_tally", tally=r.supersedes,
                                           measure=r.measure, pollutant=r.pollutant, source=r.source_id,
                                           current=now or ""))
    records = [dataclasses.replace(r, supersedes=stored_ids.get(identity.loose(r.supersedes), r.supersedes))
               if r.supersedes else r for r in records]
    known = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT source_id, name, zone FROM source"))}
    history = [sources.Prior(r[3], r[0], r[1], r[2], _as_date(r[5]),
                             units.grams_exact(Decimal(r[6]), r[7]) if r[2] == "upgrade" and r[6] else None)
               for r in current]
    records, found = sources.settle(name, records, book, history, known, credit=tallies._credit)
    return records, problems + found


FILLER = [f"Z{i},ZS{i},填充厂{i},closure,JT-JC,TP,0.{i + 1:02d},,,t/a,2020,2024-01-01,m,x,RZ{i}" for i in range(40)]
BAD = ["B1,S02,金城印染厂,closure,JT-JC,TP,1,,,t/a,2020,2024-01-01,m,x,R",           # known source, new pollutant
       "t2022-003,N1,新厂,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R",        # already in the ledger
       "B2,S01,金坛华源化工有限公司,closure,JT-YT,COD,5,,,t/a,2023,2024-03-01,m,x,R",  # a second closure
       "B3,S88,金坛华源化工 有限公司,closure,JT-YT,SO2,1,,,t/a,2023,2024-03-01,m,x,R",  # S01's name: duplicate
       "B4,S77,新厂甲,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R",
       "B5,S76,新厂甲,closure,JT-YT,TN,1,,,t/a,2023,2024-03-01,m,x,R",              # S77's name, this file
       "B6,S75,某厂,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R",
       "B6,S74,某厂二,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R",             # B6 repeats
       "B7,S75,某厂改名,closure,JT-YT,TN,1,,,t/a,2023,2024-03-01,m,x,R",            # S75, another name
       "B8,U01,薛埠纺织印染有限公司,upgrade,JT-XB,COD,52,,30,t/a,2022,2023-06-01,m,x,R"]  # before T2023-017
GOOD = ["G1,s02,金城印染厂,closure,JT-JC,TP,1,,,t/a,2020,2024-01-01,m,x,R",          # S02 in another case
        "G2,U01,薛埠纺织印染有限公司,closure,JT-XB,COD,52,,,t/a,2022,2024-06-01,m,x,R",  # capped by T2023-017
        "G3,F9,甲厂,upgrade,JT-YT,COD,20,,5,t/a,2022,2023-01-01,m,x,R",
        "G4,F9,甲厂,closure,JT-YT,COD,20,,,t/a,2024,2025-01-01,m,x,R"]              # capped by G3


def _reference(engine, path, book):
    from quota.intake.tables import file_sha256
    records, problems = tallies.validate_rows(path, book)
    if problems:
        return problems, None
    with db.reading(engine) as conn:
        records, problems = old_settle_ledger(conn, "t.csv", file_sha256(path), records, book)
    if problems:
        return problems, None
    totals = {}
    for r in records:
        totals[r.pollutant] = totals.get(r.pollutant, 0) + r.creditable_g
    return [], (len(records), sorted(totals.items()), [(r.tally_id, r.capped_by, r.creditable_g) for r in records
                                                       if r.capped_by])


@pytest.mark.parametrize("rows", [BAD, BAD[:1] + FILLER + BAD[1:], FILLER[:20] + GOOD + FILLER[20:], GOOD[::-1] + FILLER,
                                  FILLER + ["Q1,S01,金坛华源化工有限公司,closure,JT-YT,COD,18,20,,t/a,2020,2022-09-15,m,"
                                            "x,R,T2022-001"], FILLER + ["Q2,S01,x,closure,JT-YT,COD,18,,,t/a,2020,"
                                                                       "2022-09-15,m,x,R,T2022-002"]],
                         ids=["bad", "bad-among-good", "good", "good-reversed", "supersedes", "supersedes-wrong"])
def test_the_streamed_import_finds_what_the_whole_file_in_memory_found(engine, tmp_path, rows):
    """Problems (the same, in the same order) or credits (the same totals and caps) as the reference: every row a
    record, the ledger read whole. The rows kept as records are picked by hashes; a missed one shows here."""
    from quota.errors import ValidationFailed
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="t")
    path = tmp_path / "t.csv"
    path.write_text(TALLY_HEADER + ",supersedes\n" + "\n".join(r if r.count(",") == 15 else r + "," for r in rows)
                    + "\n", encoding="utf-8")
    with db.reading(engine) as conn:
        _, book = rulebooks.current(conn)
    problems, summary = _reference(engine, str(path), book)
    try:
        got = tallies.import_tallies(engine, str(path), actor="t", dry_run=True)
    except ValidationFailed as exc:
        assert exc.problems == sorted(problems) and problems  # ValidationFailed sorts them
        return
    assert not problems
    assert (got["tallies"], [(c["pollutant"], c["amount_g"]) for c in got["credited"]],
            [(c["tally_id"], c["by"], c["creditable_g"]) for c in got["capped"]]) == summary
    written = tallies.import_tallies(engine, str(path), actor="t")
    assert written["credited"] == got["credited"] and written["capped"] == got["capped"]
    assert len(written["lots"]) == summary[0]


def _ledger_rows(engine) -> dict:
    """What an import writes, without what differs from run to run (booking times, hence hashes)."""
    out = {}
    with engine.connect() as conn:
        for table, cols in [("source", "*"), ("lot", "*"), ("lot_status", "serial, status, txn_seq"),
                            ("tally", "tally_id, source_id, measure, zone, pollutant, baseline_actual, permitted, "
                                      "post, unit, baseline_year, effective_date, method, assessor, report_no, "
                                      "creditable_g, supersedes, row"),
                            ("txn", "seq, kind, effective_date, memo, ref, meta"),
                            ("posting", "txn_seq, account, lot, pollutant, amount_g"),  # not its surrogate id
                            ("balance", "*"), ("balance_total", "*")]:
            out[table] = sorted(tuple(str(v) for v in r) for r in conn.execute(text(f"SELECT {cols} FROM {table}")))
    return out


def test_the_ledger_written_does_not_depend_on_the_batch_size(engine, db_url, tmp_path, monkeypatch):
    """Batches of 3 rows and of 5,000 write the same rows, transactions and balances (the chain in the same order)."""
    from quota.intake import tables
    from tests.databases import fresh_url
    path = tmp_path / "t.csv"
    path.write_text(TALLY_HEADER + ",supersedes\n" + "\n".join(
        r + "," for r in GOOD + FILLER + ["R1,S01,金坛华源化工有限公司,closure,JT-YT,COD,18,20,,t/a,2020,2022-09-15,m,x,R"]
    ).replace("R,\n", "R,\n", 1) + "\n", encoding="utf-8")
    kind = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    other_url, drop = fresh_url(kind, tmp_path)
    other = db.make_engine(other_url)
    try:
        rulebooks.init(other, str(DATA / "rules.toml"), "tester")
        for eng in (engine, other):
            tallies.import_tallies(eng, str(DATA / "tallies.csv"), actor="t")
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[-1] = lines[-1] + "T2022-001"  # the last row supersedes a stored tally (revoke first in the chain)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tallies.import_tallies(engine, str(path), actor="t")
        monkeypatch.setattr(tallies, "BATCH", 3)
        monkeypatch.setattr(tables, "CHUNK", 7)
        tallies.import_tallies(other, str(path), actor="t")
        assert _ledger_rows(other) == _ledger_rows(engine)
        assert trace.verify(other)[1] == [] and trace.verify(engine)[1] == []
    finally:
        other.dispose()
        drop()


def test_tally_import_memory_per_row_is_a_few_hashes(engine, tmp_path, monkeypatch):
    """Traced peak of importing 20,000 rows less that of 2,000, per extra row: the index (48 bytes) and the lot's
    serial in the result (about 80): under 400 bytes. Holding the rows (text cells, records, transactions) took
    several kilobytes a row."""
    from quota.intake import tables
    monkeypatch.setattr(tallies, "BATCH", 500)
    monkeypatch.setattr(tables, "CHUNK", 500)
    peaks = {}
    for n, start in ((2000, 0), (20_000, 100_000)):
        path = tmp_path / f"t{n}.csv"
        zones, pols = ["JT-JC", "JT-YT", "JT-DC", "JT-ZL", "JT-XB", "JT-ZQ"], ["COD", "NH3-N", "TN", "SO2", "NOX", "PM"]
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(TALLY_HEADER + "\n")
            for i in range(start, start + n):
                fh.write(f"T{i},S{i},源{i},closure,{zones[i % 6]},{pols[(i // 6) % 6]},{5 + i % 50}.25,,,t/a,2020,"
                         f"2025-01-0{1 + i % 9},m,x,R{i}\n")
        if n == 2000:
            tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="t")  # warm: imports, caches
        peaks[n] = _peak(lambda: tallies.import_tallies(engine, str(path), actor="t"))
    per_row = (peaks[20_000] - peaks[2000]) / 18_000
    assert per_row < 400, (peaks, per_row)


def test_a_small_import_does_not_read_the_ledger_into_memory(engine, tmp_path, monkeypatch):
    """Importing 50 rows into a ledger of 20,000 lots peaks within 1 MB of importing them into one of 2,000: the
    ledger's tallies and sources are streamed (500 rows at a time here) and only those the file can meet are
    kept. Reading them whole: about 10 MB more."""
    peaks = {}
    for n, start in ((2000, 0), (18_000, 2000)):
        _lots(engine, tmp_path, n, start)
        path = tmp_path / f"small{n}.csv"
        path.write_text(TALLY_HEADER + "\n" + "\n".join(
            f"M{n}-{i},MS{n}-{i},小厂{n}-{i},closure,JT-YT,COD,1,,,t/a,2020,2025-01-01,m,x,R" for i in range(50))
            + "\n", encoding="utf-8")
        monkeypatch.setattr(tallies, "BATCH", 500)
        peaks[n] = _peak(lambda: tallies.import_tallies(engine, str(path), actor="t"))
        monkeypatch.undo()
    assert peaks[18_000] - peaks[2000] < 1_000_000, peaks


@pytest.mark.parametrize("how", ["rename", "rewrite", "rewrite_keeping_mtime"])
def test_a_file_changed_between_the_passes_is_refused(engine, tmp_path, monkeypatch, how):
    """The streamed import reads its file more than once: a file swapped between the passes is refused, also a
    same-size rewrite whose mtime is set back (or too coarse to change: FAT, some network shares)."""
    import os
    from quota.errors import ValidationFailed
    from quota.intake import tallies
    from tests.conftest import DATA, snapshot
    rows = (DATA / "tallies.csv").read_text(encoding="utf-8").splitlines()
    first = "\n".join(rows[:4]) + "\n"
    second = first.replace("18.40", "98.40")  # the same size, another credit
    path, other = tmp_path / "t.csv", tmp_path / "other.csv"
    path.write_text(first, encoding="utf-8")
    other.write_text(second, encoding="utf-8")
    ledger = tallies._ledger

    def swap(conn, idx, sha):  # after the first pass
        st = os.stat(path)
        if how == "rename":
            os.replace(other, path)
        else:
            path.write_text(second, encoding="utf-8")
            if how == "rewrite_keeping_mtime":
                os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        monkeypatch.setattr(tallies, "_ledger", ledger)
        return ledger(conn, idx, sha)

    monkeypatch.setattr(tallies, "_ledger", swap)
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, str(path), actor="clerk")
    assert [p.code for p in info.value.problems] == ["file_changed"]
    assert snapshot(engine) == before
