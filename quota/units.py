"""Conversion between display units (t/a, kg/a as Decimal) and integer grams per year."""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation

GRAMS_PER_UNIT: dict[str, int] = {"t/a": 1_000_000, "kg/a": 1_000}
DISPLAY_PLACES: dict[str, int] = {"t/a": 4, "kg/a": 3}


class AmountError(ValueError):
    """A text could not be read as a finite, non-negative amount."""


def parse_decimal(text: object) -> Decimal:
    """Read a user-supplied amount exactly; refuse NaN, infinities and junk."""
    if isinstance(text, float):
        raise AmountError("floating-point value given; amounts must be exact text")
    if isinstance(text, Decimal):
        value = text
    else:
        s = str(text).strip().replace(",", "") if text is not None else ""
        if not s:
            raise AmountError("empty amount")
        try:
            value = Decimal(s)
        except InvalidOperation:
            raise AmountError(f"not a number: {s!r}") from None
    if not value.is_finite():
        raise AmountError(f"not a finite number: {value}")
    return value


def grams_exact(amount: Decimal, unit: str) -> Decimal:
    """Amount in `unit` as (possibly fractional) grams, exactly."""
    if unit not in GRAMS_PER_UNIT:
        raise AmountError(f"unknown unit {unit!r} (expected one of {sorted(GRAMS_PER_UNIT)})")
    return amount * GRAMS_PER_UNIT[unit]


def floor_g(value: Decimal) -> int:
    """Round down to the gram (credits: never credit more than measured)."""
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def ceil_g(value: Decimal) -> int:
    """Round up to the gram (requirements: never require less than needed)."""
    return int(value.to_integral_value(rounding=ROUND_CEILING))


def to_credit_g(amount: Decimal, unit: str) -> int:
    return floor_g(grams_exact(amount, unit))


def to_requirement_g(amount: Decimal, unit: str) -> int:
    return ceil_g(grams_exact(amount, unit))


def from_g(grams: int, unit: str) -> Decimal:
    """Exact Decimal of `grams` in `unit` (no rounding)."""
    return Decimal(grams) / GRAMS_PER_UNIT[unit]


def display(grams: int, unit: str) -> str:
    """Fixed-point text in the unit, rounded down to DISPLAY_PLACES (e.g. '12.3400')."""
    places = DISPLAY_PLACES[unit]
    q = Decimal(1).scaleb(-places)
    return str(from_g(grams, unit).quantize(q, rounding=ROUND_FLOOR))


def exact(grams: int, unit: str) -> str:
    """Plain exact text of `grams` in `unit`, without exponent (for exports)."""
    value = from_g(grams, unit)
    places = len(str(GRAMS_PER_UNIT[unit])) - 1
    return str(value.quantize(Decimal(1).scaleb(-places)))


def display_up(grams: int, unit: str) -> str:
    """Like `display` but rounded up: for shortfalls, which must never look smaller than they are."""
    places = DISPLAY_PLACES[unit]
    q = Decimal(1).scaleb(-places)
    return str(from_g(grams, unit).quantize(q, rounding=ROUND_CEILING))
