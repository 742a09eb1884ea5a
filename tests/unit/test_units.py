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
