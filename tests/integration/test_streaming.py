"""Streams, not lists, where the size is the user's (issue 14 item 6; DESIGN 9 "Memory").

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
    assert captured(render.emit_json_stream, head, "rows", iter(items)) == \
        captured(render.emit_json, {**head, "rows": items})


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
