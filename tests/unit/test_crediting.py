from decimal import Decimal

import pytest

from quota.ledger.projects import required_g
from quota.rules.book import load_rulebook_file
from quota.intake.tallies import creditable_g, validate_rows
from tests.conftest import DATA, TALLY_HEADER


@pytest.fixture(scope="module")
def book():
    return load_rulebook_file(str(DATA / "rules.toml"))


def test_closure_credits_min_of_actual_and_permitted(book):
    assert creditable_g(book, "closure", "t/a", Decimal("1.85"), Decimal("1.60"), None) == 1_600_000
    assert creditable_g(book, "closure", "t/a", Decimal("18.40"), Decimal("20"), None) == 18_400_000


def test_upgrade_credits_baseline_minus_post(book):
    # min(52, 60) - 21.5 = 30.5 t/a
    assert creditable_g(book, "upgrade", "t/a", Decimal("52"), Decimal("60"), Decimal("21.5")) == 30_500_000
    # min(18, 16.5) - 6.2 = 10.3 t/a
    assert creditable_g(book, "upgrade", "t/a", Decimal("18"), Decimal("16.5"), Decimal("6.2")) == 10_300_000


def test_discount_and_actual_baseline_round_down(book):
    from dataclasses import replace
    strict = replace(book, baseline="actual", discount=Decimal("0.1"))
    # baseline = actual 1.85 (permitted ignored), times 0.9 = 1.665 t/a
    assert creditable_g(strict, "closure", "t/a", Decimal("1.85"), Decimal("1.60"), None) == 1_665_000
    # 0.0000011 t/a = 1.1 g, * 0.9 = 0.99 g -> 0 g after rounding down
    assert creditable_g(strict, "closure", "t/a", Decimal("0.0000011"), None, None) == 0


def test_requirement_rounds_up_with_ratio():
    assert required_g(1_000_001, Decimal("1.5")) == 1_500_002  # 1500001.5 -> up
    assert required_g(3_500_000, Decimal("2.0")) == 7_000_000


def test_all_row_problems_are_reported_with_row_and_column(tmp_path, book):
    rows = [
        "A1,S1,甲厂,closure,JT-YT,COD,-1,,,t/a,2020,2024-01-01,m,x,R1",      # negative
        "A2,S2,乙厂,closure,JT-YT,COD,abc,,,t/a,2020,2024-01-01,m,x,R2",     # not a number
        "A3,S3,丙厂,closure,JT-YT,COD,nan,,,t/a,2020,2024-01-01,m,x,R3",     # NaN
        "A4,S4,丁厂,closure,JT-YT,XYZ,1,,,t/a,2020,2024-01-01,m,x,R4",       # unknown pollutant
        "A5,S5,戊厂,closure,NOWHERE,COD,1,,,t/a,2020,2024-01-01,m,x,R5",     # unknown zone
        "A6,S6,己厂,closure,JT-YT,COD,1,,,kg/a,2020,2024-01-01,m,x,R6",      # wrong unit
        "A7,S7,庚厂,closure,JT-YT,COD,1,,0.5,t/a,2020,2024-01-01,m,x,R7",    # closure with post
        "A8,S8,辛厂,upgrade,JT-YT,COD,1,,1.2,t/a,2020,2024-01-01,m,x,R8",    # post >= baseline
        "A9,S9,壬厂,closure,JT-YT,COD,1,,,t/a,2020,2024-13-01,m,x,R9",       # bad date
        "A10,S10,癸厂,closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,",       # missing report_no
        "A1,S11,子厂,closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,R11",     # repeated tally_id
        "A12,S12,丑厂,closure,JT-YT,COD,inf,,,t/a,2020,2024-01-01,m,x,R12",  # infinity
    ]
    path = tmp_path / "t.csv"
    path.write_text("\n".join([TALLY_HEADER, *rows]) + "\n", encoding="utf-8")
    records, problems = validate_rows(str(path), book)
    found = {(p.row, p.column) for p in problems}
    assert {(2, "baseline_actual"), (3, "baseline_actual"), (4, "baseline_actual"), (5, "pollutant"),
            (6, "zone"), (7, "unit"), (8, "post"), (9, "post"), (10, "effective_date"), (11, "report_no"),
            (12, "tally_id"), (13, "baseline_actual")} <= found
    assert all(p.source == "t.csv" for p in problems)
    assert records == []


def test_missing_column_and_chinese_headers(tmp_path, book):
    path = tmp_path / "zh.csv"
    path.write_text("测算编号,平衡源编号,企业名称,措施,区域,污染物,实际排放量,单位,生效日期,报告编号\n"
                    "Z1,S1,甲厂,关闭,JT-YT,COD,2.5,t/a,2024-01-01,R-1\n", encoding="utf-8")
    records, problems = validate_rows(str(path), book)
    assert problems == [] and records[0].measure == "closure" and records[0].creditable_g == 2_500_000
    path.write_text("tally_id,source_id\nA,B\n", encoding="utf-8")
    _, problems = validate_rows(str(path), book)
    assert {(p.row, p.column) for p in problems} >= {(1, "pollutant"), (1, "zone"), (1, "effective_date")}
    assert all("required column is missing" in p.message for p in problems)
