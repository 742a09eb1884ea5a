"""What an id is, what free text may hold, and what a number is (pure functions, no database)."""
from decimal import Decimal

import pytest

from quota import identity
from quota import units


@pytest.mark.parametrize("typed", ["S01", "s01", " S01 ", "Ｓ０１", "ｓ01"])
def test_one_id_whatever_its_case_width_or_padding(typed):
    assert identity.code(typed, "source id") == "S01"


@pytest.mark.parametrize("typed, what", [
    ("S01\u200b", "invisible character U+200B (ZERO WIDTH SPACE)"),
    ("P2026-01\u2060", "invisible character U+2060"),
    ("\ufeffP1", "invisible character U+FEFF"),
    ("P\u202e10-6202", "bidirectional control U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("P\u2067x", "bidirectional control U+2067"),
    ("P\x1b[31m1", "escape character U+001B"),
    ("P\n1", "line break U+000A"),
    ("P\x00", "control character U+0000"),
    ("   ", "is empty"),
    ("", "is empty"),
    ("X" * 65, "longer than 64"),
])
def test_an_unfit_id_is_refused_naming_what_is_wrong(typed, what):
    with pytest.raises(identity.BadId) as info:
        identity.code(typed, "project id")
    assert what in str(info.value) and str(info.value).startswith("project id ")
    assert isinstance(info.value, ValueError)


def test_free_text_is_kept_as_typed_but_refuses_controls_bidi_and_line_breaks():
    assert identity.free_text("  金坛华源化工 Ｃo., Ltd  ", "name") == "金坛华源化工 Ｃo., Ltd"
    assert identity.free_text("👩\u200d🔬 lab", "name") == "👩\u200d🔬 lab"  # a joiner in an emoji stays
    for bad, why in [("a\x1b[2Jb", "escape character U+001B"), ("doc\r\nfake | row", "line break U+000D"),
                     ("x\u202ey", "bidirectional control U+202E"), ("a\u2028b", "line break U+2028"),
                     ("tab\there", "control character U+0009")]:
        with pytest.raises(identity.BadId, match=why.replace("+", r"\+")):
            identity.free_text(bad, "--doc")
    assert identity.free_text("two\r\nlines\tok", "memo", multiline=True) == "two\nlines\tok"
    with pytest.raises(identity.BadId, match="U\\+000D"):
        identity.free_text("lone\rcr", "memo", multiline=True)


def test_stored_ids_compare_by_their_normal_form_and_names_by_their_letters():
    assert identity.same("s01", "S01") and not identity.same("S01", "S02")
    assert identity.loose("bad\u200b") == "bad\u200b"  # never raises on what is already stored
    assert identity.name_key("金坛 华源化工（有限公司）") == identity.name_key("金坛华源化工(有限公司)")
    assert identity.name_key("Acme Ltd.") == identity.name_key("ACME LTD")


@pytest.mark.parametrize("typed, value", [
    ("12.5", "12.5"), ("1,234.5", "1234.5"), ("12,345,678", "12345678"), ("１２．５", "12.5"),
    ("１，２３４", "1234"), ("+4", "4"), ("-3", "-3"), (" 7 ", "7"), ("0.000001", "0.000001"),
])
def test_the_number_grammar_reads_plain_decimals_and_full_width_alike(typed, value):
    assert units.parse_decimal(typed) == Decimal(value)


@pytest.mark.parametrize("typed, why", [
    ("12,5", "ambiguous number '12,5': use a dot for decimals; a comma only separates thousands in groups of three"),
    ("0,25", "ambiguous"), ("12,3456", "ambiguous"), ("１２，５", "ambiguous"),
    ("1,2,3.4", "groups of three"), ("1,234,5", "groups of three"), ("1.234,5", "use a dot for decimals"),
    ("1_000", "no underscores"), ("1e3", "no exponent"), ("1.5E+2", "no exponent"), ("1 000", "no spaces"),
    ("NaN", "not a finite"), ("-inf", "not a finite"), (".5", "both sides of the dot"), ("9" * 41, "longer"),
])
def test_the_number_grammar_refuses_what_could_be_misread(typed, why):
    with pytest.raises(units.AmountError) as info:
        units.parse_decimal(typed)
    assert why in str(info.value)


def test_the_row_bound_is_the_same_grams_in_every_unit():
    assert units.check_row_g(units.grams_exact(Decimal(1_000_000), "t/a"), "t/a") is None
    assert units.check_row_g(units.grams_exact(Decimal("1000000.000001"), "t/a"), "t/a")["max"] == "1,000,000"
    assert units.check_row_g(units.grams_exact(Decimal("1000000001"), "kg/a"), "kg/a")["max"] == "1,000,000,000"


def test_rulebook_codes_are_ids_in_the_same_normal_form():
    from quota.rules.book import parse_rulebook
    from tests.conftest import DATA
    text = (DATA / "rules.toml").read_text(encoding="utf-8")
    book, problems = parse_rulebook(text.replace('code = "COD"', 'code = "cod"').replace('code = "JT-YT"', 'code = "ｊｔ-ｙｔ"'))
    assert problems == [] and "COD" in book.pollutants and "JT-YT" in book.zones
    book, problems = parse_rulebook(text.replace('code = "COD"', 'code = "CO\u200bD"'))
    assert book is None and any("invisible character U+200B" in p.message and p.column == "pollutants[1].code"
                                for p in problems)
