"""Tally and project import on SQLite and PostgreSQL: crediting, all-or-nothing, double counting."""
import pytest
from sqlalchemy import text

from quota.audit import trace
from quota.ledger import balances
from quota.intake import project_files
from quota.ledger import projects
from quota.intake import tallies
from quota.errors import ValidationFailed
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot


def test_sample_tallies_become_lots_with_hand_computed_amounts(engine):
    result = tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    assert result["tallies"] == 23 and len(result["lots"]) == 23
    rows = {r["lot"]: r for r in balances.balance(engine, by="lot")["rows"]}
    by_tally = {r["tally_id"]: r for r in rows.values()}
    assert by_tally["T2022-002"]["issued_g"] == 1_600_000      # min(1.85 actual, 1.60 permitted)
    assert by_tally["T2023-017"]["issued_g"] == 30_500_000     # upgrade: min(52, 60) - 21.5
    assert by_tally["T2025-022"]["issued_g"] == 10_300_000     # upgrade: min(18, 16.5) - 6.2
    assert by_tally["T2023-014"]["issued_g"] == 14_200 and by_tally["T2023-014"]["unit"] == "kg/a"
    assert by_tally["T2021-005"]["expires"] == "2026-12-15"    # 5 years after the effective date
    totals = {r["pollutant"]: r["available_g"] for r in balances.balance(engine)["rows"]}
    assert totals["COD"] == (18_400_000 + 26_800_000 + 3_400_000 + 30_500_000)
    with engine.connect() as conn:
        actors = {r[0] for r in conn.execute(text("SELECT DISTINCT actor FROM txn"))}
    assert actors == {"clerk"}
    summary, problems = trace.verify(engine)
    assert problems == [] and summary["transactions"] == 23


def test_a_bad_row_refuses_the_whole_file_and_writes_nothing(engine, write_csv):
    good = "G1,S1,甲厂,closure,JT-YT,COD,2,,,t/a,2020,2024-01-01,m,x,R1"
    bad = "G2,S2,乙厂,closure,JT-YT,COD,-3,,,t/a,2020,2024-01-01,m,x,R2"
    path = write_csv("t.csv", TALLY_HEADER, [good, bad])
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, path, actor="clerk")
    assert [(p.source, p.row, p.column) for p in info.value.problems] == [("t.csv", 3, "baseline_actual")]
    assert snapshot(engine) == before


def test_double_counting_is_refused(engine, write_csv):
    first = write_csv("a.csv", TALLY_HEADER, ["D1,S1,甲厂,closure,JT-YT,COD,2,,,t/a,2020,2024-01-01,m,x,R1"])
    tallies.import_tallies(engine, first, actor="clerk")
    before = snapshot(engine)
    # the same file again
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, first, actor="clerk")
    assert any("already imported" in p.message for p in info.value.problems)
    # same tally_id, and the same source + pollutant + measure under a new id
    again = write_csv("b.csv", TALLY_HEADER, ["D1,S9,丙厂,closure,JT-YT,NOX,2,,,t/a,2020,2024-01-01,m,x,R9",
                                              "D2,S1,甲厂,closure,JT-YT,COD,3,,,t/a,2020,2024-02-01,m,x,R2"])
    with pytest.raises(ValidationFailed) as info:
        tallies.import_tallies(engine, again, actor="clerk")
    got = {(p.row, p.column): p.message for p in info.value.problems}
    assert "already in the ledger" in got[(2, "tally_id")]
    assert "double counting" in got[(3, "pollutant")]
    assert snapshot(engine) == before


def test_a_superseding_tally_replaces_only_the_unused_part(engine, write_csv):
    tallies.import_tallies(engine, write_csv("a.csv", TALLY_HEADER, [
        "S-1,S1,甲厂,closure,JT-YT,COD,10,,,t/a,2020,2024-01-01,m,x,R1"]), actor="clerk")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        "P1,项目,JT-DC,food,COD,4,t/a,1,,false,"]), actor="clerk")
    from quota.ledger import operations
    operations.reserve(engine, "P1", actor="clerk", date=__import__("datetime").date(2024, 6, 1))
    header = TALLY_HEADER + ",supersedes"
    tallies.import_tallies(engine, write_csv("b.csv", header, [
        "S-2,S1,甲厂,closure,JT-YT,COD,7,,,t/a,2020,2024-07-01,m,x,R1b,S-1"]), actor="clerk")
    rows = {r["tally_id"]: r for r in balances.balance(engine, by="lot", as_of=None)["rows"]}
    assert rows["S-1"]["available_g"] == 0 and rows["S-1"]["reserved_g"] == 4_000_000
    assert rows["S-1"]["state"] == "superseded"  # what it still lends to P1 never returns to it
    # 7 t credited: nothing of S-1 was allocated or expired, so the new lot holds 7 t; the 4 t P1 reserved on S-1
    # can never be approved from it and go to superseded: when released (they are not spent)
    assert rows["S-2"]["issued_g"] == 7_000_000
    assert trace.verify(engine)[1] == []


def test_project_import_checks_rows_and_groups(engine, write_csv):
    path = write_csv("p.csv", PROJECT_HEADER, [
        "P1,甲,JT-YT,chemical,COD,1.5,t/a,2,2027-01-01,true,",
        "P1,甲,JT-DC,chemical,NOX,1,t/a,2,2027-01-01,true,",       # zone differs from row 2
        "P2,乙,JT-YT,food,COD,0,t/a,1,,false,",                      # zero increment
        "P3,丙,JT-YT,food,COD,1,t/a,x,,maybe,0.5",                   # bad priority, flag, ratio
    ])
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as info:
        project_files.import_projects(engine, path, actor="clerk")
    got = {(p.row, p.column) for p in info.value.problems}
    assert got == {(3, "zone"), (4, "increment"), (5, "priority"), (5, "must_fund"), (5, "ratio")}
    assert snapshot(engine) == before
    ok = project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    assert ok["projects"] == 12 and ok["rows"] == 31
    rows = {p["project_id"]: p for p in projects.project_rows(engine)}
    nox = {n["pollutant"]: n for n in rows["P2026-03"]["needs"]}["NOX"]
    assert (nox["ratio"], nox["required_g"]) == ("2.0", 10_000_000)  # non-attainment zone


def test_xlsx_with_chinese_headers(engine, tmp_path):
    import pandas as pd
    path = tmp_path / "t.xlsx"
    pd.DataFrame([{"测算编号": "X1", "平衡源编号": "S1", "企业名称": "甲厂", "措施": "提升改造", "区域": "JT-XB",
                   "污染物": "COD", "实际排放量": "10.5", "改造后排放量": "4.25", "单位": "t/a",
                   "生效日期": "2024-05-01", "报告编号": "R-1", "测算单位": "某所"}]).to_excel(path, index=False)
    result = tallies.import_tallies(engine, str(path), actor="clerk")
    assert result["credited"][0]["amount_g"] == 6_250_000
