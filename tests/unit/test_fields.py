"""fields.RowReader: typed reading of one row's cells, each bad cell a Problem naming file, row and column."""
import datetime as dt
from decimal import Decimal

import pytest

from quota.intake.fields import RowReader


def reader(**cells):
    problems = []
    return RowReader("f.csv", 7, {k: str(v) for k, v in cells.items()}, problems), problems


@pytest.mark.parametrize("raw,value", [("12.5", Decimal("12.5")), ("1,000", Decimal("1000")), (" 3 ", Decimal(3)),
                                       ("１２", Decimal(12)), ("0", Decimal(0))])
def test_amounts_by_the_one_grammar(raw, value):
    r, problems = reader(a=raw)
    assert r.amount("a", unit="t/a") == value and problems == []


@pytest.mark.parametrize("raw", ["12,5", "1_000", "1e3", "-1", "nan", "inf", "1,2,3.4", "12 t", "1000000000000"])
def test_bad_amounts_are_problems_naming_the_cell(raw):
    r, problems = reader(a=raw)
    assert r.amount("a", unit="t/a") is None
    assert [(p.source, p.row, p.column) for p in problems] == [("f.csv", 7, "a")]


def test_required_and_optional_cells():
    r, problems = reader(a="", d="", n="")
    assert r.amount("a", required=False) is None and r.date("d", required=False) is None and problems == []
    assert r.integer("n", 5, 1, 10) == 5 and problems == []
    r.amount("a"), r.date("d"), r.integer("n", None, 1, 10), r.code("a"), r.text("a")
    assert [p.column for p in problems] == ["a", "d", "n", "a", "a"]


@pytest.mark.parametrize("raw,value", [("2026-11-30", dt.date(2026, 11, 30)), ("2026/1/5", dt.date(2026, 1, 5)),
                                       ("2026.01.05 00:00:00", dt.date(2026, 1, 5))])
def test_dates(raw, value):
    r, problems = reader(d=raw)
    assert r.date("d") == value and problems == []


@pytest.mark.parametrize("raw", ["2026-02-30", "30/11/2026", "1900-01-01", "2101-01-01", "20261130", "tomorrow"])
def test_bad_dates(raw):
    r, problems = reader(d=raw)
    assert r.date("d") is None and [p.column for p in problems] == ["d"]


def test_codes_are_normalised_and_invisible_characters_refused():
    r, problems = reader(a=" ｊｔ-yt ", b="JT\u200b-YT", c="JT\u202e-YT")
    assert r.code("a") == "JT-YT" and problems == []
    assert r.code("b") == "" and r.code("c") == ""
    assert [p.column for p in problems] == ["b", "c"]


@pytest.mark.parametrize("raw,value,ok", [("true", True, True), ("是", True, True), ("", False, True),
                                          ("否", False, True), ("maybe", False, False), ("false ", False, True)])
def test_booleans(raw, value, ok):
    r, problems = reader(b=raw)
    assert r.boolean("b") is value and (problems == []) is ok


@pytest.mark.parametrize("raw,value", [("7", 7), ("1,000", 1000), ("10", 10)])
def test_whole_numbers_in_range(raw, value):
    r, problems = reader(n=raw)
    assert r.integer("n", None, 1, 1000) == value and problems == []


@pytest.mark.parametrize("raw", ["7.5", "0", "1001", "1e2", "x"])
def test_whole_numbers_out_of_range_or_not_whole(raw):
    r, problems = reader(n=raw)
    assert r.integer("n", 3, 1, 1000) == 3 and [p.column for p in problems] == ["n"]


def test_free_text_refuses_control_characters_and_long_values():
    r, problems = reader(a="老厂", b="a\x07b", c="x" * 201, d="line\nbreak")
    assert r.text("a") == "老厂"
    r.text("b"), r.text("c"), r.text("d")
    assert [p.column for p in problems] == ["b", "c", "d"]
    r2, p2 = reader(d="line\nbreak")
    assert r2.text("d", multiline=True) == "line\nbreak" and p2 == []


def test_choice_reads_case_insensitively():
    r, problems = reader(k="Closure", j="other")
    options = {"closure": "closure", "关停": "closure", "upgrade": "upgrade"}
    assert r.choice("k", options) == "closure" and r.choice("j", options) == ""
    assert [p.column for p in problems] == ["j"]
