"""Reserve / approve / release / cancel / expire / revoke, idempotency, append-only, verify."""
import datetime as dt

import pytest
from sqlalchemy import text

from quota.audit import trace
from quota.ledger import balances
from quota.ledger import drawing
from quota.intake import project_files
from quota.ledger import projects
from quota.ledger import operations as quota_ops
from quota.rules import versions
from quota.intake import tallies
from quota.errors import IdempotencyConflict, QuotaError, Refused
from tests.conftest import DATA, snapshot

D = dt.date


@pytest.fixture
def sample(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    return engine


def totals(engine, **kw):
    return {r["pollutant"]: r for r in balances.balance(engine, **kw)["rows"]}


@pytest.mark.parametrize("first_rows", [drawing.DRAW_LIMIT, 1])
def test_reserve_takes_ratio_matching_and_earliest_expiry(sample, monkeypatch, first_rows):
    """With first_rows=1, PostgreSQL's first read of each pollutant's lots (one row) cannot cover the
    draws, so the reservation reads them again in full and must draw exactly the same."""
    monkeypatch.setattr(drawing, "DRAW_LIMIT", first_rows)
    r = quota_ops.reserve(sample, "P2026-03", actor="clerk", date=D(2026, 11, 29))
    draws = {(d["pollutant"], d["lot"]): d["amount_g"] for d in r["draws"]}
    # COD in watershed DJ: the 2021 lot (expires 2026-12-15) is drawn before the 2022 lot
    assert draws[("COD", "COD-2021-00005")] == 6_000_000
    # NOX at ratio 2 (non-attainment) in airshed JTN: earliest expiry first = the 2022 boiler lot
    assert draws[("NOX", "NOX-2022-00009")] == 10_000_000
    assert sum(g for (p, _), g in draws.items() if p == "SO2") == 6_000_000
    t = totals(sample, as_of=None)
    assert t["NOX"]["reserved_g"] == 10_000_000
    assert trace.verify(sample)[1] == []


def test_lots_that_expire_before_needed_by_are_not_drawn(sample):
    # P2026-01 needs COD in DJ by 2027-06-30: the lot expiring 2026-12-15 must not be used
    r = quota_ops.reserve(sample, "P2026-01", actor="clerk", date=D(2026, 11, 29))
    lots = {d["lot"] for d in r["draws"] if d["pollutant"] == "COD"}
    assert lots == {"COD-2022-00001"}


def test_shortfall_is_refused_naming_pollutant_key_and_amount(sample):
    before = snapshot(sample)
    with pytest.raises(Refused) as info:
        quota_ops.reserve(sample, "P2026-04", actor="clerk", date=D(2026, 11, 29))
    assert "TP short by 0.1000 t/a (100000 g) in CDH" in str(info.value)
    assert snapshot(sample) == before  # all pollutants or nothing


def test_full_lifecycle_keeps_every_gram(sample):
    day = D(2026, 11, 29)
    start = totals(sample, as_of=None)
    quota_ops.reserve(sample, "P2026-02", actor="a", date=day)
    quota_ops.approve(sample, "P2026-02", doc="金环审〔2026〕1号", actor="b", date=day)
    t = totals(sample, as_of=None)
    assert t["VOCS"]["allocated_g"] == 4_000_000 and t["VOCS"]["reserved_g"] == 0
    assert t["VOCS"]["available_g"] == start["VOCS"]["available_g"] - 4_000_000
    with pytest.raises(Refused):
        quota_ops.reserve(sample, "P2026-02", actor="a", date=day)
    quota_ops.cancel(sample, "P2026-02", actor="b", date=day)
    assert totals(sample, as_of=None) == start
    quota_ops.reserve(sample, "P2026-05", actor="a", date=day)
    quota_ops.release(sample, "P2026-05", actor="a", date=day)
    assert totals(sample, as_of=None) == start
    assert projects.project_rows(sample)[4]["state"] == "pipeline"
    summary, problems = trace.verify(sample)
    assert problems == [] and summary["transactions"] == 23 + 1 + 5  # issues, the projects' register, operations


def test_operations_on_a_held_connection_are_each_their_own_transaction(sample):
    """A caller may hold one Connection for many operations (as a service would): each still commits on
    its own, a refused one rolls back alone and leaves the connection usable, and a connection already in
    a transaction is refused before anything is written."""
    day = D(2026, 11, 29)
    start = totals(sample, as_of=None)
    with sample.connect() as conn:
        quota_ops.reserve(conn, "P2026-02", actor="a", date=day)
        with pytest.raises(Refused):
            quota_ops.reserve(conn, "P2026-04", actor="a", date=day)  # short of TP: nothing of it is kept
        quota_ops.approve(conn, "P2026-02", doc="D-1", actor="b", date=day)
        assert not conn.in_transaction()
        assert totals(sample, as_of=None)["VOCS"]["allocated_g"] == 4_000_000  # committed, seen by the pool
        before = snapshot(sample)
        conn.execute(text("SELECT 1"))  # the caller's own transaction is left open
        with pytest.raises(QuotaError, match="already in a transaction"):
            quota_ops.reserve(conn, "P2026-05", actor="a", date=day)
        conn.rollback()
        assert snapshot(sample) == before
        quota_ops.cancel(conn, "P2026-02", actor="b", date=day)
    assert totals(sample, as_of=None) == start
    summary, problems = trace.verify(sample)
    assert problems == [] and summary["transactions"] == 23 + 1 + 3


def test_expire_moves_lots_and_lapsed_reservations(sample, pin_today):
    pin_today(D(2026, 11, 30))
    quota_ops.reserve(sample, "P2026-03", actor="a", date=D(2026, 11, 29), expires=D(2026, 12, 31))
    pin_today(D(2027, 1, 1))
    result = quota_ops.expire(sample, D(2027, 1, 1), actor="a")
    assert "P2026-03" in result["lapsed_reservations"]
    rows = {r["lot"]: r for r in balances.balance(sample, by="lot", as_of=None)["rows"]}
    cod = rows["COD-2021-00005"]  # expired 2026-12-15: its remaining 20.8 t and the released 6 t
    assert cod["available_g"] == 0 and cod["state"] == "expired"
    assert totals(sample, as_of=None)["COD"]["reserved_g"] == 0
    with sample.connect() as conn:
        expired = conn.execute(text("SELECT amount_g FROM balance WHERE account = 'expired:COD' "
                                    "AND lot = 'COD-2021-00005'")).scalar_one()
    assert expired == 26_800_000
    assert trace.verify(sample)[1] == []


def test_cancel_after_lot_expiry_returns_quota_to_expired(sample, pin_today):
    pin_today(D(2026, 11, 30))
    quota_ops.reserve(sample, "P2026-03", actor="a", date=D(2026, 11, 29))
    quota_ops.approve(sample, "P2026-03", doc="D1", actor="a", date=D(2026, 11, 30))
    pin_today(D(2027, 1, 5))  # time passes: the COD lot expired on 2026-12-15
    quota_ops.cancel(sample, "P2026-03", actor="a", date=D(2027, 1, 5))
    rows = {r["lot"]: r for r in balances.balance(sample, by="lot", as_of=D(2027, 1, 5))["rows"]}
    assert rows["COD-2021-00005"]["expired_g"] == 6_000_000
    assert rows["COD-2021-00005"]["lapsed_g"] == 20_800_000  # not yet expired by `quota expire`: lapsed
    assert rows["COD-2021-00005"]["available_g"] == 0 and rows["COD-2021-00005"]["state"] == "expired"


def test_balance_as_of_a_date_replays_history(sample):
    quota_ops.reserve(sample, "P2026-11", actor="a", date=D(2026, 11, 29))
    before = totals(sample, as_of=D(2026, 11, 28))
    assert before["NOX"]["reserved_g"] == 0
    assert totals(sample, as_of=D(2026, 11, 29))["NOX"]["reserved_g"] == 1_000_000
    # before any lot existed
    assert balances.balance(sample, as_of=D(2020, 1, 1))["rows"] == []
    with pytest.raises(Refused):  # history cannot be rewritten by back-dating
        quota_ops.release(sample, "P2026-11", actor="a", date=D(2026, 11, 1))


def test_revoke_only_the_unallocated_part(sample):
    quota_ops.reserve(sample, "P2026-06", actor="a", date=D(2026, 11, 29))
    result = quota_ops.revoke(sample, "PB-2023-00014", actor="auditor", memo="report withdrawn", date=D(2026, 11, 29))
    assert result["revoked_g"] == 14_200 - 10_000
    with pytest.raises(Refused):
        quota_ops.revoke(sample, "PB-2023-00014", actor="auditor", memo="again", date=D(2026, 11, 29))


def test_idempotency_key_gives_exactly_one_effect(sample):
    day = D(2026, 11, 29)
    first = quota_ops.reserve(sample, "P2026-11", actor="a", date=day, key="k-1")
    again = quota_ops.reserve(sample, "P2026-11", actor="a", date=day, key="k-1")
    assert again["replayed"] is True and again["txn"] == first["txn"] and again["draws"] == first["draws"]
    with pytest.raises(IdempotencyConflict):
        quota_ops.reserve(sample, "P2026-10", actor="a", date=day, key="k-1")
    assert totals(sample, as_of=None)["NOX"]["reserved_g"] == 1_000_000


@pytest.mark.parametrize("sql", ["UPDATE posting SET amount_g = amount_g + 1",
                                 "DELETE FROM txn", "UPDATE lot SET issued_g = 1", "DELETE FROM tally",
                                 "UPDATE matching SET key = 'X'", "DELETE FROM matching"])
def test_the_database_refuses_edits_to_the_ledger(sample, sql):
    with pytest.raises(Exception) as info:
        with sample.begin() as conn:
            conn.execute(text(sql))
    assert "append-only" in str(info.value)


def test_verify_detects_tampering_below_the_triggers(sample):
    with sample.begin() as conn:
        if sample.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER posting_no_UPDATE"))
        else:
            conn.execute(text("ALTER TABLE posting DISABLE TRIGGER posting_append_only"))
        conn.execute(text("UPDATE posting SET amount_g = amount_g + 1 WHERE id = 1"))
    summary, problems = trace.verify(sample)
    columns = {(p.source, p.column) for p in problems}
    assert ("txn", "hash") in columns  # the content no longer matches its hash
    assert any(p.source == "balance" for p in problems)  # and the balances no longer replay
    assert summary["ok"] is False


def test_verify_detects_an_edited_balance(sample):
    with sample.begin() as conn:
        conn.execute(text("UPDATE balance SET amount_g = amount_g + 5 WHERE account = 'lot:COD-2022-00001'"))
    problems = trace.verify(sample)[1]
    assert [p.column for p in problems][:1] == ["lot:COD-2022-00001 COD-2022-00001"]


def test_verify_detects_edited_balance_totals(sample):
    with sample.begin() as conn:
        conn.execute(text("UPDATE balance_total SET amount_g = amount_g + 1 WHERE kind = 'lot' AND pollutant = 'COD'"))
    problems = trace.verify(sample)[1]
    assert [p.source for p in problems] == ["balance_total"]


def test_verify_detects_a_forged_matching_key(sample):
    """A matching row added for a zone the rulebook maps elsewhere would let a reservation draw across
    watersheds: verify compares the stored keys with the rulebooks."""
    with sample.begin() as conn:
        conn.execute(text("INSERT INTO matching (version, pollutant, zone, key) VALUES (1, 'COD', 'JT-NEW', 'DJ')"))
    problems = trace.verify(sample)[1]
    assert [p.source for p in problems] == ["matching"] and "JT-NEW" in problems[0].message


def test_a_draw_over_many_lots_reads_past_the_first_rows(engine, write_csv, monkeypatch):
    """A need that takes four of five lots: on PostgreSQL, with the first read cut at two lots per
    pollutant, the reservation reads the lots again in full and draws them, earliest expiry first."""
    header = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,"
              "baseline_year,effective_date,method,assessor,report_no")
    rows = [f"T{i},S{i},源{i},closure,JT-YT,COD,1.0,,,t/a,2020,2025-0{i + 1}-01,m,x,R{i}" for i in range(5)]
    tallies.import_tallies(engine, write_csv("t.csv", header, rows), actor="clerk")
    project_files.import_projects(engine, write_csv(
        "p.csv", "project_id,name,zone,industry,pollutant,increment,unit,priority,needed_by,must_fund,ratio",
        ["PX,项目,JT-YT,x,COD,3.5,t/a,1,,false,1"]), actor="clerk")
    lots = {r["lot"]: r for r in balances.balance(engine, by="lot")["rows"]}
    order = sorted(lots, key=lambda s: lots[s]["expires"])
    monkeypatch.setattr(drawing, "DRAW_LIMIT", 2)
    r = quota_ops.reserve(engine, "PX", actor="clerk", date=D(2026, 11, 29))
    drawn = [d["lot"] for d in r["draws"]]
    assert drawn == order[:len(drawn)] and len(drawn) > 2
    assert sum(d["amount_g"] for d in r["draws"]) == 3_500_000
    assert all(d["amount_g"] == lots[d["lot"]]["available_g"] for d in r["draws"][:-1])  # emptied in order


@pytest.mark.parametrize("first_rows", [3, 8])
def test_never_expiring_lots_are_drawn_after_every_expiring_one(engine, write_csv, monkeypatch, tmp_path,
                                                               first_rows):
    """Lots issued under a rulebook with life_years = 0 never expire: they come after every lot that
    expires, in serial order, also when the first read of lots is cut between the two kinds (3)."""
    header = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,"
              "baseline_year,effective_date,method,assessor,report_no")
    tallies.import_tallies(engine, write_csv("t1.csv", header, [
        f"E{i},SE{i},源{i},closure,JT-YT,COD,1.0,,,t/a,2020,2025-0{5 - i}-01,m,x,RE{i}" for i in range(2)]),
        actor="clerk")
    never = tmp_path / "rules-never.toml"
    never.write_text((DATA / "rules.toml").read_text(encoding="utf-8").replace("life_years = 5", "life_years = 0"),
                     encoding="utf-8")
    versions.load(engine, str(never), "admin")
    tallies.import_tallies(engine, write_csv("t2.csv", header, [
        f"N{i},SN{i},新源{i},closure,JT-YT,COD,1.0,,,t/a,2020,2024-0{5 - i}-01,m,x,RN{i}" for i in range(2)]),
        actor="clerk")
    project_files.import_projects(engine, write_csv(
        "p.csv", "project_id,name,zone,industry,pollutant,increment,unit,priority,needed_by,must_fund,ratio",
        ["PX,项目,JT-YT,x,COD,3.5,t/a,1,,false,1"]), actor="clerk")
    lots = {r["lot"]: r for r in balances.balance(engine, by="lot")["rows"]}
    expiring = sorted((lots[s]["expires"], s) for s in lots if lots[s]["expires"])
    forever = sorted(s for s in lots if not lots[s]["expires"])
    assert len(expiring) == 2 and len(forever) == 2 and expiring[0][0] < expiring[1][0]
    monkeypatch.setattr(drawing, "DRAW_LIMIT", first_rows)
    r = quota_ops.reserve(engine, "PX", actor="clerk", date=D(2026, 11, 29))
    assert [d["lot"] for d in r["draws"]] == [s for _, s in expiring] + forever
    assert [d["amount_g"] for d in r["draws"]] == [1_000_000, 1_000_000, 1_000_000, 500_000]
    assert trace.verify(engine)[1] == []
