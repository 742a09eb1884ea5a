"""Holes found by a hostile test of the eligibility rule's rewrite (which lot may serve which project, where grams
go back to, which dates a mutation may carry), each fixed since; every test states the behaviour the rule promises; on SQLite and PostgreSQL, through the CLI where a user meets it."""
import datetime as dt
import json

import pytest
from sqlalchemy import text

from quota.audit import trace
from quota.ledger import balances
from quota.planning import plans
from quota.ledger import operations
from quota.intake import tallies
from quota.errors import Refused, ValidationFailed
from tests.conftest import TALLY_HEADER, snapshot
from tests.integration import test_eligibility
from tests.integration.test_eligibility import D, TODAY, account, cli, lots

book = test_eligibility.book  # the fixture, shared with test_eligibility

SUPERSEDING = TALLY_HEADER + ",supersedes"


def source_total(engine, *tally_ids: str) -> int:
    """Grams of these tallies' lots still available, reserved or allocated (what the source is credited with)."""
    by = lots(engine)
    return sum(by[t]["available_g"] + by[t]["reserved_g"] + by[t]["allocated_g"] for t in tally_ids if t in by)


def cod_available(engine) -> int:
    return next(r["available_g"] for r in balances.balance(engine)["rows"] if r["pollutant"] == "COD")


def test_superseding_twice_credits_a_source_no_more_than_its_latest_tally(book, write_csv):
    # S-NEW's T-NEW credits 5 t; P-A is allocated 2 t of it
    operations.reserve(book, "P-A", actor="c", date=TODAY)
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    # corrected to 6 t: the new lot holds 6 - 2 = 4 t; P-B is allocated 2 t of it
    tallies.import_tallies(book, write_csv("s1.csv", SUPERSEDING, [
        "T-N2,S-NEW,新厂,closure,JT-DC,COD,6,,,t/a,2023,2024-01-01,m,a,R-N2,T-NEW"]), actor="clerk")
    operations.reserve(book, "P-B", actor="c", date=TODAY)
    operations.approve(book, "P-B", doc="D-2", actor="c", date=TODAY)
    # corrected again to 7 t: 4 t are already given out (2 t + 2 t), so at most 3 t may be issued
    tallies.import_tallies(book, write_csv("s2.csv", SUPERSEDING, [
        "T-N3,S-NEW,新厂,closure,JT-DC,COD,7,,,t/a,2023,2024-01-01,m,a,R-N3,T-N2"]), actor="clerk")
    assert source_total(book, "T-NEW", "T-N2", "T-N3") <= 7_000_000   # today: 2 + 2 + 5 = 9 t
    assert lots(book)["T-N3"]["issued_g"] == 3_000_000


def test_superseding_a_lapsed_lot_does_not_give_its_expired_grams_a_new_life(book, write_csv):
    # T-OLD (10 t) expired on 2026-06-01; `expire` has not run, so its 10 t still sit on the lot (lapsed).
    # After `expire` the same file is refused (10 t credited, 10 t already used): the order must not matter.
    before = cod_available(book)
    try:
        tallies.import_tallies(book, write_csv("s.csv", SUPERSEDING, [
            "T-OLD2,S-OLD,老厂,closure,JT-YT,COD,10,,,t/a,2025,2026-11-01,m,a,R-OLD2,T-OLD"]), actor="clerk")
    except ValidationFailed:
        pass
    assert cod_available(book) == before                               # today: +10 t, valid until 2031-11-01


def test_a_back_dated_reservation_cannot_draw_a_lot_expired_by_today(book, db_url):
    # the chain's last transaction is the 2024-01-01 issue, so 2026-05-01 is not "before the last transaction";
    # T-OLD expired on 2026-06-01, six months before today: the case that opened the eligibility rewrite
    old = lots(book)["T-OLD"]["lot"]
    cli(db_url, "reserve", "P-PAST", "--date", "2026-05-01")
    cli(db_url, "approve", "P-PAST", "--doc", "D-1", "--date", "2026-05-02")
    held = {d["lot"] for d in trace.trace(book, "P-PAST")["draws"]}
    assert old not in held                                             # today: allocated from COD-2021-00001


def test_plan_apply_refuses_a_project_funded_twice(book):
    plan = plans.run_plan(book, as_of=TODAY)
    entry = next(f for f in plan["funded"] if f["project_id"] == "P-A")
    plan["funded"] = [entry, json.loads(json.dumps(entry))]           # 2 x 2 t from a 5 t lot: fits the lot
    with book.begin() as conn:
        conn.execute(text("UPDATE plan SET result = :r WHERE plan_id = :p"),
                     {"r": json.dumps(plan), "p": plan["plan_id"]})
    before = snapshot(book)
    with pytest.raises(Refused) as info:
        plans.apply_plan(book, plan["plan_id"], actor="planner", date=TODAY)
    assert info.value.code == "plan_stale"
    assert snapshot(book) == before                                    # today: P-A holds 4 t of its 2 t


def test_approve_refuses_a_reservation_whose_lapse_date_has_come(book, db_url, pin_today):
    operations.reserve(book, "P-A", actor="c", date=TODAY, expires=D(2026, 12, 2))
    pin_today(D(2026, 12, 3))                                          # lapsed on 2026-12-02
    before = snapshot(book)
    r = cli(db_url, "approve", "P-A", "--doc", "D-1")
    assert r.exit_code == 1, r.output
    assert snapshot(book) == before


def test_a_revoked_tally_is_superseded_or_refused_with_a_clear_message(book, db_url, write_csv):
    operations.revoke(book, lots(book)["T-NEW"]["lot"], actor="admin", memo="report withdrawn", date=TODAY)
    before = snapshot(book)
    r = cli(db_url, "tally", "import", write_csv("sup.csv", SUPERSEDING, [
        "T-NEW2,S-NEW,新厂,closure,JT-DC,COD,12,,,t/a,2023,2024-01-01,m,a,R-NEW2,T-NEW"]))
    assert "database error" not in r.output
    if r.exit_code == 0:
        assert lots(book)["T-NEW"]["state"] == "revoked" and trace.verify(book)[1] == []
    else:
        assert "supersedes" in r.output and snapshot(book) == before


def test_superseding_a_partly_reserved_lot_loses_no_quota(book, write_csv):
    operations.reserve(book, "P-A", actor="c", date=TODAY)              # 2 t of T-NEW's 5 t, not approved
    tallies.import_tallies(book, write_csv("sup.csv", SUPERSEDING, [
        "T-NEW2,S-NEW,新厂,closure,JT-DC,COD,4,,,t/a,2023,2024-01-01,m,a,R-NEW2,T-NEW"]), actor="clerk")
    operations.reserve(book, "P-A", actor="c", date=TODAY)              # moves off the superseded lot
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    # S-NEW is now credited 4 t: P-A's 2 t and 2 t still available
    assert account(book, "project:P-A:allocated") + lots(book)["T-NEW2"]["available_g"] == 4_000_000


def test_a_clock_set_back_cannot_date_a_mutation_before_the_last_transaction(book, db_url, pin_today):
    operations.reserve(book, "P-A", actor="c")                          # dated 2026-11-30
    pin_today(D(2026, 11, 1))                                          # QUOTA_TODAY, or a server clock, set back
    before = snapshot(book)
    r = cli(db_url, "revoke", lots(book)["T-CDH"]["lot"], "--memo", "invalid")  # a lot untouched since 2024
    assert r.exit_code == 1 and "last transaction" in r.output, r.output
    assert snapshot(book) == before                                    # today: balance --as-of 2026-11-15 changes


def test_a_today_pinned_decades_ahead_cannot_expire_every_lot(book, db_url, monkeypatch):
    far = dt.date.today().replace(year=dt.date.today().year + 36, day=1)
    monkeypatch.setenv("QUOTA_TODAY", far.isoformat())
    before = snapshot(book)
    r = cli(db_url, "expire", "--as-of", far.isoformat())
    assert r.exit_code == 1, r.output
    assert snapshot(book) == before


def test_an_unparsable_quota_today_is_one_clear_line(book, db_url, monkeypatch):
    monkeypatch.setenv("QUOTA_TODAY", "tomorrow")
    r = cli(db_url, "balance")
    assert r.exit_code == 1 and "QUOTA_TODAY" in r.output, (r.output, r.exception)


@pytest.mark.parametrize("day", ["2026-W49-1", "20261130"])
def test_dates_only_in_the_documented_format(book, db_url, day):
    before = snapshot(book)
    r = cli(db_url, "reserve", "P-A", "--date", day)
    assert r.exit_code != 0 and "YYYY-MM-DD" in r.output, r.output
    assert snapshot(book) == before


def test_a_back_dated_plan_apply_cannot_draw_a_lot_expired_by_today(book, db_url):
    old = lots(book)["T-OLD"]["lot"]
    plan = plans.run_plan(book, as_of=D(2026, 5, 1))                  # T-OLD was valid then
    cli(db_url, "plan", "apply", plan["plan_id"], "--date", "2026-05-01")
    held = {d["lot"] for p in ("P-A", "P-B", "P-PAST") for d in trace.trace(book, p)["draws"]}
    assert old not in held                                             # today: P-A, P-B, P-PAST hold 7 t of it


def test_balance_by_lot_shows_nothing_available_on_an_expired_lot(book, db_url):
    r = cli(db_url, "balance", "--by", "lot", "--json")
    rows = {x["tally_id"]: x for x in json.loads(r.stdout)["rows"]}
    assert rows["T-OLD"]["state"] == "expired"
    assert rows["T-OLD"]["available_g"] == 0                           # today: 10 t "available"
