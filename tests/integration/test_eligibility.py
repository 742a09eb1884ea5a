"""Hostile cases for the one eligibility rule: which lot may serve which project, where grams go back
to, what approve and plan apply re-check, which dates a mutation may carry. Each through the library and, where a
user meets it, through the CLI; on SQLite and PostgreSQL."""
import datetime as dt
import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace as audit
from quota.ledger import balances
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import operations
from quota.rules import versions
from quota.intake import tallies
from quota.errors import Refused, ValidationFailed
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

D = dt.date
TODAY = D(2026, 11, 30)
runner = CliRunner()


@pytest.fixture
def book(engine, pin_today, write_csv):
    """Two COD lots in watershed DJ: L-OLD (JT-YT, vintage 2021-06-01, expired on 2026-06-01) and L-NEW (JT-DC,
    2024), one COD
    lot in watershed CDH; projects in DJ, one needed by a date already past."""
    pin_today(TODAY)
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        "T-OLD,S-OLD,老厂,closure,JT-YT,COD,10,,,t/a,2020,2021-06-01,m,a,R-OLD",
        "T-NEW,S-NEW,新厂,closure,JT-DC,COD,5,,,t/a,2023,2024-01-01,m,a,R-NEW",
        "T-CDH,S-CDH,东厂,closure,JT-XB,COD,50,,,t/a,2023,2024-01-01,m,a,R-CDH",
        "T-PB,S-PB,铅厂,closure,JT-YT,PB,30,,,kg/a,2023,2024-01-01,m,a,R-PB"]), actor="clerk")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        "P-PAST,过期项目,JT-YT,food,COD,3,t/a,1,2026-01-01,false,",
        "P-A,甲,JT-YT,food,COD,2,t/a,1,,false,",
        "P-B,乙,JT-YT,food,COD,2,t/a,1,,false,",
        "P-PB,铅项目,JT-YT,food,PB,1,kg/a,1,,false,"]), actor="clerk")
    return engine


def lots(engine) -> dict:
    return {r["tally_id"]: r for r in balances.balance(engine, by="lot")["rows"]}


def account(engine, name: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(sum(amount_g), 0) FROM balance WHERE account = :a"),
                                {"a": name}).scalar_one())


def cli(url, *args):
    return runner.invoke(app, ["--db", url, *args])


def test_a_lot_expired_today_serves_no_project_even_if_its_needed_by_is_past(book, db_url):
    # P-PAST needed COD by 2026-01-01; L-OLD was still valid then but expired on 2026-06-01: reserving today must
    # not draw it (the old rule compared the expiry with needed_by alone)
    r = cli(db_url, "reserve", "P-PAST", "--date", TODAY.isoformat(), "--json")
    assert r.exit_code == 0, r.output
    draws = json.loads(r.stdout)["draws"]
    assert {d["lot"] for d in draws} == {lots(book)["T-NEW"]["lot"]}
    assert sum(d["amount_g"] for d in draws) == 3_000_000
    assert cli(db_url, "approve", "P-PAST", "--doc", "D-1", "--date", TODAY.isoformat()).exit_code == 0
    assert audit.verify(book)[1] == []


@pytest.mark.parametrize("args", [
    ["reserve", "P-A", "--date", "2040-01-01"],
    ["approve", "P-A", "--doc", "D", "--date", "2206-01-01"],
    ["expire", "--as-of", "2062-11-30"],
    ["reserve", "P-A", "--date", "2026-11-30", "--expires", "2026-11-01"],
    ["release", "P-A", "--date", "2027-01-01"],
    ["cancel", "P-A", "--date", "2099-01-01"],
])
def test_dates_out_of_reason_are_refused_and_nothing_is_written(book, db_url, args):
    before = snapshot(book)
    r = cli(db_url, *args)
    assert r.exit_code == 1, r.output
    assert "after today" in r.output or "must be after" in r.output
    assert snapshot(book) == before


def test_back_dated_mutations_are_refused(book):
    operations.reserve(book, "P-A", actor="c", date=TODAY)
    with pytest.raises(Refused) as info:
        operations.reserve(book, "P-B", actor="c", date=D(2026, 11, 1))
    assert info.value.code == "bad_date" and "before the ledger's last transaction" in str(info.value)


def test_a_tally_effective_after_today_is_refused(book, write_csv):
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(book, write_csv("f.csv", TALLY_HEADER, [
            "T-FUT,S-FUT,未来厂,closure,JT-YT,COD,10,,,t/a,2026,2026-12-15,m,a,R-F"]), actor="clerk")
    assert [(p.row, p.column) for p in info.value.problems] == [(2, "effective_date")]


def test_revoked_quota_never_comes_back(book, db_url):
    new = lots(book)["T-NEW"]["lot"]
    operations.reserve(book, "P-A", actor="c", date=TODAY)                   # 2 t of L-NEW's 5 t
    assert cli(db_url, "revoke", new, "--memo", "report withdrawn", "--date", TODAY.isoformat()).exit_code == 0
    assert account(book, "revoked:COD") == 3_000_000                      # the unallocated part
    # the reservation drawn from it can no longer be approved ...
    r = cli(db_url, "approve", "P-A", "--doc", "D-1", "--date", TODAY.isoformat())
    assert r.exit_code == 1 and "revoked" in r.output
    # ... and released, its grams go to revoked:, never back to the lot
    operations.release(book, "P-A", actor="c", date=TODAY)
    assert account(book, "revoked:COD") == 5_000_000
    row = lots(book)["T-NEW"]
    assert row["available_g"] == 0 and row["state"] == "revoked"
    with pytest.raises(Refused) as info:                                    # nothing left in DJ to draw
        operations.reserve(book, "P-A", actor="c", date=TODAY)
    assert info.value.code == "insufficient_quota"
    assert audit.verify(book)[1] == []


def test_reserve_moves_a_holding_off_a_revoked_lot_and_approve_then_passes(book, write_csv):
    tallies.import_tallies(book, write_csv("more.csv", TALLY_HEADER, [
        "T-2,S-2,二厂,closure,JT-DC,COD,4,,,t/a,2024,2025-01-01,m,a,R-2"]), actor="clerk")
    first = operations.reserve(book, "P-A", actor="c", date=TODAY)
    drawn = {d["lot"] for d in first["draws"]}
    assert drawn == {lots(book)["T-NEW"]["lot"]}                            # earliest expiry first
    operations.revoke(book, drawn.pop(), actor="admin", memo="invalid", date=TODAY)
    again = operations.reserve(book, "P-A", actor="c", date=TODAY)           # rebalance
    assert [(x["to"], x["amount_g"]) for x in again["returned"]] == [("revoked:COD", 2_000_000)]
    assert {d["lot"] for d in again["draws"]} == {lots(book)["T-2"]["lot"]}
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    assert audit.verify(book)[1] == []


def test_allocations_from_a_lot_revoked_later_stay_flagged_and_never_return_to_it(book, db_url):
    new = lots(book)["T-NEW"]["lot"]
    operations.reserve(book, "P-A", actor="c", date=TODAY)
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    operations.revoke(book, new, actor="admin", memo="invalid", date=TODAY)
    trace = audit.trace(book, "P-A")
    assert [(d["lot"], d["state"], d["lot_state"]) for d in trace["draws"]] == [(new, "allocated", "revoked")]
    r = cli(db_url, "trace", "P-A", "--format", "md")
    assert "REVOKED" in r.stdout
    operations.cancel(book, "P-A", actor="c", date=TODAY)
    assert account(book, "revoked:COD") == 5_000_000 and lots(book)["T-NEW"]["available_g"] == 0


def test_a_fully_reserved_lot_can_be_revoked_and_its_grams_do_not_return(book, write_csv):
    tallies.import_tallies(book, write_csv("small.csv", TALLY_HEADER, [
        "T-S,S-S,小厂,closure,JT-XB,COD,1,,,t/a,2024,2025-01-01,m,a,R-S"]), actor="clerk")
    project_files.import_projects(book, write_csv("q.csv", PROJECT_HEADER, [
        "P-X,丙,JT-XB,food,COD,51,t/a,1,,false,"]), actor="clerk")
    operations.reserve(book, "P-X", actor="c", date=TODAY)                  # all of CDH's 51 t
    small = lots(book)["T-S"]["lot"]
    result = operations.revoke(book, small, actor="admin", memo="invalid", date=TODAY)
    assert result["revoked_g"] == 0                                         # nothing unallocated: only marked
    operations.release(book, "P-X", actor="c", date=TODAY)
    assert lots(book)["T-S"]["available_g"] == 0 and account(book, "revoked:COD") == 1_000_000
    assert audit.verify(book)[1] == []


def test_a_superseded_lot_gets_nothing_back(book, write_csv):
    operations.reserve(book, "P-A", actor="c", date=TODAY)
    tallies.import_tallies(book, write_csv("sup.csv", TALLY_HEADER + ",supersedes", [
        "T-NEW2,S-NEW,新厂,closure,JT-DC,COD,4,,,t/a,2023,2024-01-01,m,a,R-NEW2,T-NEW"]), actor="clerk")
    operations.release(book, "P-A", actor="c", date=TODAY)
    row = lots(book)["T-NEW"]
    assert row["state"] == "superseded" and row["available_g"] == 0
    assert account(book, "superseded:COD") == 5_000_000
    assert audit.verify(book)[1] == []


def _rules_with(tmp_path, old: str, new: str) -> str:
    text_ = (DATA / "rules.toml").read_text(encoding="utf-8")
    assert old in text_
    path = tmp_path / "rules2.toml"
    path.write_text(text_.replace(old, new, 1), encoding="utf-8")
    return str(path)


def test_approve_refuses_a_shortfall_after_a_ratio_rises_and_reserve_tops_it_up(book, db_url, tmp_path):
    operations.reserve(book, "P-A", actor="c", date=TODAY)                   # 2 t at ratio 1
    versions.load(book, _rules_with(tmp_path, "default = 1.0", "default = 1.5"), "admin")
    r = cli(db_url, "approve", "P-A", "--doc", "D-1", "--date", TODAY.isoformat())
    assert r.exit_code == 1 and "3.0000" in r.output and "quota reserve P-A" in r.output
    top = operations.reserve(book, "P-A", actor="c", date=TODAY)
    assert sum(d["amount_g"] for d in top["draws"]) == 1_000_000 and top["returned"] == []
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    assert account(book, "project:P-A:allocated") == 3_000_000
    assert audit.verify(book)[1] == []


def test_a_lowered_requirement_gives_the_surplus_back_before_approval(book, tmp_path):
    versions.load(book, _rules_with(tmp_path, "default = 1.0", "default = 2.0"), "admin")
    operations.reserve(book, "P-A", actor="c", date=TODAY)                   # 4 t at ratio 2
    versions.load(book, _rules_with(tmp_path, "default = 1.0", "default = 1.0"), "admin")
    with pytest.raises(Refused) as info:
        operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    assert info.value.code == "holding_mismatch" and info.value.facts["problems"][0]["problem"] == "surplus"
    back = operations.reserve(book, "P-A", actor="c", date=TODAY)
    assert [x["amount_g"] for x in back["returned"]] == [2_000_000] and back["draws"] == []
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    assert account(book, "project:P-A:allocated") == 2_000_000
    assert audit.verify(book)[1] == []


def test_plan_apply_refuses_draws_outside_the_projects_watershed_after_a_zone_moves(book, db_url, tmp_path):
    plan = plans.run_plan(book, as_of=TODAY)
    funded = {f["project_id"] for f in plan["funded"]}
    assert "P-A" in funded
    # JT-YT moves to watershed CDH: the plan's DJ lots can no longer serve P-A
    versions.load(book, _rules_with(tmp_path, 'code = "JT-YT"\nname = "Yaotang Subdistrict"\nname_zh = "尧塘街道"\n'
                                               'watershed = "DJ"', 'code = "JT-YT"\nname = "Yaotang Subdistrict"\n'
                                               'name_zh = "尧塘街道"\nwatershed = "CDH"'), "admin")
    before = snapshot(book)
    r = cli(db_url, "plan", "apply", plan["plan_id"], "--date", TODAY.isoformat())
    assert r.exit_code == 1 and "the project needs CDH" in r.output
    assert snapshot(book) == before


@pytest.mark.parametrize("forge", ["other_pollutant", "other_watershed", "expired_lot", "negative", "missing_lot"])
def test_a_forged_plan_row_cannot_make_apply_skip_a_check(book, forge):
    plan = plans.run_plan(book, as_of=TODAY)
    by = {r["tally_id"]: r["lot"] for r in balances.balance(book, by="lot")["rows"]}
    funded = [f for f in plan["funded"] if f["project_id"] == "P-PB"]
    assert funded
    target = {"other_pollutant": ("P-PB", by["T-NEW"], "PB", 1_000),           # a COD lot for a PB need
              "other_watershed": ("P-A", by["T-CDH"], "COD", 2_000_000),
              "expired_lot": ("P-A", by["T-OLD"], "COD", 2_000_000),
              "negative": ("P-A", by["T-NEW"], "COD", -2_000_000),
              "missing_lot": ("P-A", "COD-1999-99999", "COD", 2_000_000)}[forge]
    plan["funded"] = [f for f in plan["funded"] if f["project_id"] != target[0]] + [
        {"project_id": target[0], "draws": [{"lot": target[1], "pollutant": target[2], "amount_g": target[3]}]}]
    with book.begin() as conn:  # the plan table is not the ledger: whoever may write it could do this
        conn.execute(text("UPDATE plan SET result = :r WHERE plan_id = :p"),
                     {"r": json.dumps(plan), "p": plan["plan_id"]})
    before = snapshot(book)
    with pytest.raises(Refused) as info:
        plans.apply_plan(book, plan["plan_id"], actor="p", date=TODAY)
    assert info.value.code == "plan_stale"
    assert snapshot(book) == before


def test_a_plan_from_an_unnamed_scenario_is_never_applied(book, tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('remove_projects = ["P-B"]\n', encoding="utf-8")  # no name, only real lots drawn
    plan = plans.run_plan(book, as_of=TODAY, scenario_path=str(path))
    assert plan["funded"]
    before = snapshot(book)
    with pytest.raises(Refused, match="is a scenario") as info:
        plans.apply_plan(book, plan["plan_id"], actor="p", date=TODAY)
    assert info.value.code == "plan_state" and snapshot(book) == before


def test_a_partial_reservation_keeps_the_projects_lapse_date(book, write_csv):
    """One lapse date per project: a later `reserve --pollutant` without --expires keeps it, one with it replaces
    it (it used to be overwritten with nothing)."""
    tallies.import_tallies(book, write_csv("nh3.csv", TALLY_HEADER, [
        "T-N,S-N,氮厂,closure,JT-YT,NH3-N,5,,,t/a,2023,2024-01-01,m,a,R-N"]), actor="clerk")
    project_files.import_projects(book, write_csv("two.csv", PROJECT_HEADER, [
        "P-2,两项,JT-YT,food,COD,1,t/a,1,,false,", "P-2,两项,JT-YT,food,NH3-N,1,t/a,1,,false,"]), actor="clerk")

    def lapse():
        with book.connect() as conn:
            return conn.execute(text("SELECT reserved_until FROM project WHERE project_id = 'P-2'")).scalar_one()

    operations.reserve(book, "P-2", actor="c", pollutant="COD", expires=D(2027, 1, 31), date=TODAY)
    operations.reserve(book, "P-2", actor="c", pollutant="NH3-N", date=TODAY)
    assert str(lapse()) == "2027-01-31"
    with pytest.raises(Refused) as info:
        operations.reserve(book, "P-2", actor="c", date=TODAY)
    assert info.value.code == "nothing_to_reserve"


@pytest.mark.parametrize("typed", ["p-a", " P-A ", "Ｐ-Ａ"])
def test_a_project_id_typed_another_way_is_the_same_project(book, db_url, typed):
    r = cli(db_url, "reserve", typed, "--date", TODAY.isoformat(), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["project_id"] == "P-A" and account(book, "project:P-A:reserved") == 2_000_000


@pytest.mark.parametrize("args", [["reserve", "P-A\u200b"], ["reserve", "P\u202eA-"], ["trace", "P-A\u200b"],
                                  ["approve", "P-A", "--doc", "D\x1b[31m1"], ["reserve", "P-A", "--actor-x"]])
def test_look_alike_ids_and_escape_codes_are_refused_at_the_edge(book, db_url, args):
    if args[-1] == "--actor-x":
        args = ["--actor", "clerk\x1b]8;;http://x\x07", *args[:-1]]
    before = snapshot(book)
    r = cli(db_url, *args)
    assert r.exit_code == 1 and "Traceback" not in r.output and "\x1b" not in r.output
    assert snapshot(book) == before


def test_a_correction_never_extends_the_life_of_the_grams_it_corrects(book, write_csv):
    """T-NEW (vintage 2024-01-01, expires 2029-01-01) corrected by a tally effective 2026-11-01: the new lot keeps
    2029-01-01, not 2031-11-01."""
    tallies.import_tallies(book, write_csv("fix.csv", TALLY_HEADER + ",supersedes", [
        "T-FIX,S-NEW,新厂,closure,JT-DC,COD,6,,,t/a,2023,2026-11-01,m,a,R-FIX,T-NEW"]), actor="clerk")
    assert lots(book)["T-FIX"]["expires"] == lots(book)["T-NEW"]["expires"] == "2029-01-01"
    assert audit.verify(book)[1] == []


@pytest.mark.parametrize("lot_of", ["T-OLD", "T-CDH"])  # expired; another watershed
def test_verify_judges_every_reservation_by_the_eligibility_rule(book, lot_of):
    """A reservation written around the library (correctly hashed and balanced, as an insider with the write
    path could) from a lot that could not serve the project fails `verify`."""
    from quota.store import db
    from quota.ledger import posting
    serial = lots(book)[lot_of]["lot"]
    zone = lots(book)[lot_of]["zone"]

    def forge(conn):
        version, _ = versions.current(conn)
        legs = [posting.Leg(posting.lot_account(serial), serial, "COD", -1_000_000, zone),
                posting.Leg(posting.project_account("P-A", "reserved"), serial, "COD", 1_000_000, "JT-YT", "P-A")]
        return posting.post_many(conn, [posting.TxnSpec("reserve", TODAY, legs, "forged", "", "P-A", {})],
                                actor="insider", rulebook=version)

    db.run_write(book, forge)
    problems = audit.verify(book)[1]
    assert any(serial in p.message and ("expires" in p.message or "needs DJ" in p.message) for p in problems), problems


def test_the_report_flags_quota_held_from_a_lot_revoked_later(book):
    from quota.report import html
    new = lots(book)["T-NEW"]["lot"]
    operations.reserve(book, "P-A", actor="c", date=TODAY)
    operations.approve(book, "P-A", doc="D-1", actor="c", date=TODAY)
    assert new not in html.build(book).split("Quota held from revoked or superseded lots")[1].split("<h2>")[0]
    operations.revoke(book, new, actor="admin", memo="invalid", date=TODAY)
    flagged = html.build(book).split("Quota held from revoked or superseded lots")[1].split("<h2>")[0]
    assert new in flagged and "revoked" in flagged and "2.0000" in flagged
    assert new in html.build(book, lang="zh").split("来自已注销或已被替代批次的指标")[1].split("<h2>")[0]


@pytest.mark.parametrize("op", ["release", "cancel", "expire"])
def test_a_back_dated_return_goes_where_reserve_would_send_it_today(engine, pin_today, write_csv, op):
    """release, cancel and the release of a lapsed reservation by `expire --as-of` choose where grams go as
    reserve does, on the later of the operation's date and the clock's today: a lot that expired after the
    back-dated day but before today takes nothing back (docs/design.md, "Grams never return to a lot that
    cannot serve")."""
    pin_today(D(2026, 11, 30))
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        "T-SOON,S-SOON,将到期厂,closure,JT-YT,COD,10,,,t/a,2020,2021-12-10,m,a,R-SOON"]), actor="clerk")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        "P-A,甲,JT-YT,food,COD,2,t/a,1,,false,"]), actor="clerk")
    pin_today(D(2026, 12, 1))
    operations.reserve(engine, "P-A", actor="c", date=D(2026, 12, 1), expires=D(2026, 12, 3))  # lapses 12-03
    assert lots(engine)["T-SOON"]["expires"] == "2026-12-10"
    pin_today(D(2026, 12, 20))  # the lot has expired by now
    if op == "expire":  # back-dated to before the lot's expiry: the lot itself is not expired by this run
        result = operations.expire(engine, D(2026, 12, 5), actor="c")
        assert result["lapsed_reservations"] == ["P-A"] and result["expired"] == []
    else:
        getattr(operations, op)(engine, "P-A", actor="c", date=D(2026, 12, 5))
    assert account(engine, "expired:COD") == 2_000_000
    serial = lots(engine)["T-SOON"]["lot"]
    assert account(engine, f"lot:{serial}") == 8_000_000  # the 2 t did not go back to the expired lot
