import json
from decimal import Decimal

import pytest

from quota import units


def test_credits_round_down_and_requirements_round_up():
    assert units.to_credit_g(Decimal("1.0000009"), "t/a") == 1_000_000
    assert units.to_requirement_g(Decimal("1.0000001"), "t/a") == 1_000_001
    assert units.to_credit_g(Decimal("0.0015"), "kg/a") == 1
    assert units.to_requirement_g(Decimal("0.0015"), "kg/a") == 2


def test_display_rounds_down_to_four_places_and_exact_keeps_grams():
    assert units.display(12_345_678, "t/a") == "12.3456"
    assert units.exact(12_345_678, "t/a") == "12.345678"
    assert units.display(14_200, "kg/a") == "14.200"


@pytest.mark.parametrize("bad", ["nan", "NaN", "inf", "-Infinity", "abc", "", "1e", None])
def test_parse_decimal_refuses_nan_inf_and_junk(bad):
    with pytest.raises(units.AmountError):
        units.parse_decimal(bad)


def test_parse_decimal_refuses_floats_to_keep_amounts_exact():
    with pytest.raises(units.AmountError):
        units.parse_decimal(0.1)
    assert units.parse_decimal("1,234.5") == Decimal("1234.5")


@pytest.mark.parametrize("typed, value", [("7.5", Decimal("7.5")), ("7.50", Decimal("7.5")), ("3", 3), ("100.0000", 100),
                                          ("0.0001", Decimal("0.0001")), ("1,000.25", Decimal("1000.25")),
                                          ("1000000", 1_000_000), ("７．５", Decimal("7.5")), (4, 4)])
def test_a_priority_reads_exactly_whole_ones_as_ints(typed, value):
    got = units.parse_priority(typed)
    assert got == value and type(got) is type(value)
    assert units.priority_from_e4(units.priority_e4(got)) == got
    assert json.dumps(units.priority_json(got)) == units.priority_text(got)  # the JSON number is the decimal's text


@pytest.mark.parametrize("typed, code", [("7,5", "number_ambiguous_comma"), ("1e3", "number_exponent"),
                                         ("nan", "number_not_finite"), ("inf", "number_not_finite"),
                                         (7.5, "number_float"), (True, "not_a_number"), ("-3", "priority_range"),
                                         ("0", "priority_range"), ("7.12345", "priority_places"),
                                         ("1000000.0001", "priority_range")])
def test_an_odd_priority_names_its_rule(typed, code):
    with pytest.raises(units.AmountError) as info:
        units.parse_priority(typed)
    assert info.value.code == code


def test_every_priority_in_bounds_writes_as_its_own_json_number():
    import random
    rng = random.Random(7)
    for _ in range(20_000):
        e4 = rng.choice([rng.randint(1, 10 ** 10), rng.randint(1, 10 ** 5), 10 ** 10 - rng.randint(0, 10 ** 4)])
        p = units.priority_from_e4(e4)
        assert Decimal(json.dumps(units.priority_json(p))) == p


def test_decimal_text_is_plain():
    assert [units.decimal_text(Decimal(s)) for s in ("10.0", "7.50", "1E+2", "5.0001")] == ["10", "7.5", "100", "5.0001"]
