import datetime as dt
from decimal import Decimal

import pytest

from quota.errors import ValidationFailed
from quota.rules.book import load_rulebook_file, parse_rulebook
from tests.conftest import DATA

SAMPLE = (DATA / "rules.toml").read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def book():
    return load_rulebook_file(str(DATA / "rules.toml"))


def test_sample_rulebook_meets_the_issue(book):
    assert len(book.zones) >= 5
    assert len({z.watershed for z in book.zones.values()}) >= 2
    assert len({z.airshed for z in book.zones.values()}) >= 2
    assert {"COD", "NH3-N", "TP", "TN", "SO2", "NOX", "VOCS", "PM"} <= set(book.pollutants)
    assert any(p.unit == "kg/a" and p.medium == "metal" for p in book.pollutants.values())
    assert any(z.non_attainment for z in book.zones.values())
    assert isinstance(book.ratio_default, Decimal)


def test_ratio_takes_the_strictest_rule(book):
    # default 1.0 everywhere
    assert book.ratio("COD", "food", "JT-XB")[0] == Decimal("1.0")
    # VOCS rule 2.0
    assert book.ratio("VOCS", "food", "JT-XB")[0] == Decimal("2.0")
    # JT-JC is out of attainment for air: NOX at 2.0, water unaffected
    ratio, why = book.ratio("NOX", "chemical", "JT-JC")
    assert ratio == Decimal("2.0") and why == ["JT-JC non-attainment (air)"]
    assert book.ratio("COD", "chemical", "JT-JC")[0] == Decimal("1.0")
    # TP 1.5 for the chemical industry only; a project's own ratio wins when stricter
    assert book.ratio("TP", "chemical", "JT-YT")[0] == Decimal("1.5")
    assert book.ratio("TP", "food", "JT-YT")[0] == Decimal("1.0")
    assert book.ratio("TP", "chemical", "JT-YT", Decimal("3"))[0] == Decimal("3")
    assert book.ratio("TP", "chemical", "JT-YT", Decimal("1.2"))[0] == Decimal("1.5")


def test_matching_keys_follow_the_medium(book):
    assert book.matching_key("COD", "JT-JC") == "DJ" == book.matching_key("COD", "JT-ZL")
    assert book.matching_key("COD", "JT-XB") == "CDH"
    assert book.matching_key("NOX", "JT-ZL") == "JTS"
    assert book.matching_key("PB", "JT-XB") == "JT-XB"


def test_lot_expiry_after_life_years(book):
    assert book.lot_expiry(dt.date(2022, 3, 15)) == dt.date(2027, 3, 15)
    assert book.lot_expiry(dt.date(2024, 2, 29)) == dt.date(2029, 2, 28)


@pytest.mark.parametrize("edit, column, words", [
    (('medium = "water"', 'medium = "soil"', 1), "pollutants[1].medium", "unknown medium"),
    (('code = "NH3-N"', 'code = "COD"', 1), "pollutants[2].code", "duplicate pollutant"),
    (('code = "JT-YT"', 'code = "JT-JC"', 1), "zones[2].code", "duplicate zone"),
    (('non_attainment = 2.0', 'non_attainment = 0.5', 1), "ratios.non_attainment", "ratio must be"),
    (('watershed = "DJ"\nairshed = "JTN"\nnon_attainment', 'airshed = "JTN"\nnon_attainment', 1),
     "zones[1].watershed", "required key is missing"),
    (('unit = "kg/a"', 'unit = "kg"', 1), "pollutants[9].unit", "unknown unit"),
    (('discount = 0.0', 'discount = 1.5', 1), "crediting.discount", "[0, 1)"),
    (('life_years = 5', 'life_years = -1', 1), "crediting.life_years", "whole number"),
])
def test_malformed_rulebook_is_refused_with_the_key(edit, column, words):
    old, new, count = edit
    assert old in SAMPLE
    book, problems = parse_rulebook(SAMPLE.replace(old, new, count), "bad.toml")
    assert book is None
    assert any(p.column == column and words in p.message for p in problems), problems


def test_problems_name_the_line_of_the_key():
    book, problems = parse_rulebook(SAMPLE.replace("discount = 0.0", "discount = 2", 1), "bad.toml")
    assert SAMPLE.splitlines()[problems[0].row - 1].startswith("discount")
    book, problems = parse_rulebook(SAMPLE.replace('code = "JT-YT"', 'code = "JT-JC"', 1), "bad.toml")
    assert problems[0].column == "zones[2].code" and SAMPLE.splitlines()[problems[0].row - 1] == 'code = "JT-YT"'


def test_contradictory_ratio_rules_are_refused():
    text = SAMPLE.replace('[[ratios.rule]]\npollutant = "TP"',
                          '[[ratios.rule]]\npollutant = "VOCS"\nratio = 3.0\n\n[[ratios.rule]]\npollutant = "TP"', 1)
    book, problems = parse_rulebook(text, "bad.toml")
    assert book is None and "contradicts ratios.rule[1]" in problems[0].message
    assert text.splitlines()[problems[0].row - 1] == "ratio = 3.0"


def test_toml_syntax_error_names_the_line():
    text = SAMPLE.replace('name_zh = "金坛区"', 'name_zh = "金坛区', 1)
    book, problems = parse_rulebook(text, "bad.toml")
    assert book is None and problems[0].row == 5 and "TOML syntax error" in problems[0].message


def test_load_rulebook_file_raises_with_all_problems(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(SAMPLE.replace('medium = "air"', 'medium = "gas"'), encoding="utf-8")
    with pytest.raises(ValidationFailed) as info:
        load_rulebook_file(str(path))
    assert len(info.value.problems) == 4  # SO2, NOX, VOCS, PM


@pytest.mark.parametrize("old,new,column,words", [
    ("life_years = 5", "life_year = 5", "crediting.life_year", "did you mean 'life_years'"),
    ("default = 1.0", "defualt = 1.0", "ratios.defualt", "did you mean 'default'"),
    ("discount = 0.0", "dicount = 0.0", "crediting.dicount", "did you mean 'discount'"),
    ('non_attainment = ["air"]', 'non_attainmnet = ["air"]', "zones[1].non_attainmnet",
     "did you mean 'non_attainment'"),
    ("discount = 0.0", "discount = nan", "crediting.discount", "not a finite number"),
    ("default = 1.0", "default = inf", "ratios.default", "not a finite number"),
])
def test_misspelt_keys_and_odd_numbers_are_refused_with_their_path(old, new, column, words):
    assert old in SAMPLE
    book, problems = parse_rulebook(SAMPLE.replace(old, new, 1))
    assert book is None
    assert any(p.column == column and words in p.message and p.row > 0 for p in problems), problems


@pytest.mark.parametrize("section", ["zones", "pollutants"])
def test_entries_that_are_not_tables_are_refused_not_a_traceback(section):
    text = f"{section} = [1]\n" + SAMPLE.replace(f"[[{section}]]", "[[ignored]]")
    book, problems = parse_rulebook(text)
    assert book is None and any(p.column == f"{section}[1]" and "must be a table" in p.message for p in problems)


def test_a_ratio_rule_entry_that_is_not_a_table_is_refused():
    book, problems = parse_rulebook(SAMPLE.replace("[ratios]\n", "[ratios]\nrule = [1]\n", 1).replace(
        "[[ratios.rule]]", "[[ignored]]"))
    assert book is None and any(p.column == "ratios.rule[1]" for p in problems)


def test_a_missing_rulebook_or_a_directory_is_a_problem_not_a_traceback(tmp_path):
    for path in (tmp_path / "nope.toml", tmp_path):
        with pytest.raises(ValidationFailed) as info:
            load_rulebook_file(str(path))
        assert info.value.problems[0].code in ("file_not_found", "is_directory")


def test_industry_matches_ratio_rules_whatever_its_case(book):
    rule = [r for r in book.ratio_rules if r.industry][0]
    assert rule.matches(rule.pollutant or "COD", rule.industry.upper(), rule.zone or "JT-YT")


def test_units_and_media_are_read_in_any_case_as_the_imports_read_units(book):
    """`unit = "T/A"`, `medium = "Water"` and `non_attainment = ["AIR"]` mean what their lower case means."""
    text = (DATA / "rules.toml").read_text(encoding="utf-8")
    shouted = (text.replace('unit = "t/a"', 'unit = "T/A"').replace('medium = "water"', 'medium = "Water"')
               .replace('non_attainment = ["air"]', 'non_attainment = ["AIR"]'))
    assert shouted != text and 'unit = "T/A"' in shouted and 'medium = "Water"' in shouted
    loud, _ = parse_rulebook(shouted, source="r.toml")
    assert {c: (p.unit, p.medium) for c, p in loud.pollutants.items()} == \
        {c: (p.unit, p.medium) for c, p in book.pollutants.items()}
    assert {c: z.non_attainment for c, z in loud.zones.items()} == {c: z.non_attainment for c, z in book.zones.items()}
