"""Conversion between display units (t/a, kg/a as Decimal) and integer grams per year."""
from __future__ import annotations

import re
import unicodedata
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

GRAMS_PER_UNIT: dict[str, int] = {"t/a": 1_000_000, "kg/a": 1_000}
DISPLAY_PLACES: dict[str, int] = {"t/a": 4, "kg/a": 3}


class AmountError(ValueError):
    """A text could not be read as a finite, non-negative amount. `code` and `facts` name why, for the catalogue
    (quota.report.findings), which renders the message in English and Chinese."""

    def __init__(self, code: str, /, **facts):
        from quota.report.findings import problem_text
        self.code, self.facts = code, facts
        super().__init__(problem_text(code, facts, "en"))


# The number grammar (one for every file and option): an optional sign, digits with an optional
# fraction after a dot; a comma only as a thousands separator in groups of exactly three.
_PLAIN = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$")
MAX_TEXT = 40  # characters: more digits than any amount needs (and no billion-digit Decimal)
# The physical bound of one row: 10^6 t/a (10^12 g) of any pollutant. A district's whole COD load is
# ~10^4-10^5 t/a; a kg/a pollutant is held to the same grams. 9.2 million rows at the bound still fit
# a 64-bit total; imports also check the ledger's issued total (MAX_TOTAL_G).
MAX_ROW_G = 10 ** 12
MAX_TOTAL_G = 2 ** 63 - 1


def parse_decimal(text: object) -> Decimal:
    """Read a user-supplied amount exactly by the one number grammar; AmountError says why not.

    Plain decimals (`12.5`, `-3`, `+4`); thousands separators only in valid groups of three
    (`1,234.5`, `12,345,678`); full-width digits and punctuation read as ASCII (NFKC first:
    `１２．５`, `１，２３４`). Refused: `12,5` (ambiguous), `1,2,3.4`, `1_000`, `1 000`, exponents
    (`1e3`), NaN and infinities, and more than MAX_TEXT characters."""
    if isinstance(text, bool):
        raise AmountError("not_a_number", value=repr(text))
    if isinstance(text, float):
        raise AmountError("number_float")
    if isinstance(text, int):
        return Decimal(text)
    if isinstance(text, Decimal):
        if not text.is_finite():
            raise AmountError("number_not_finite", value=repr(str(text)))
        return text
    s = unicodedata.normalize("NFKC", str(text)).strip() if text is not None else ""
    if not s:
        raise AmountError("number_empty")
    if len(s) > MAX_TEXT:
        raise AmountError("number_too_long", length=len(s), max=MAX_TEXT)
    if _PLAIN.match(s):
        return Decimal(s.replace(",", ""))
    code = _why_not(s)
    raise AmountError(code, value=repr(s))


def _why_not(s: str) -> str:
    """The code of why `s` is not a number (the catalogue says it in words)."""
    low = s.lower().lstrip("+-")
    if low in ("nan", "snan", "inf", "infinity"):
        return "number_not_finite"
    if "_" in s:
        return "number_underscore"
    if re.fullmatch(r"[+-]?[\d.]+e[+-]?\d+", low):
        return "number_exponent"
    if re.fullmatch(r"[+-]?\d+,\d{1,2}", s) or re.fullmatch(r"[+-]?\d+,\d{4,}", s):
        return "number_ambiguous_comma"
    if "," in s and re.fullmatch(r"[+-]?[\d,]+(\.\d+)?", s):
        return "number_comma_groups"
    if re.fullmatch(r"[+-]?(\.\d+|\d+\.)", s):
        return "number_bare_dot"
    if re.fullmatch(r"[+-]?[\d.]+,\d+", s):
        return "number_decimal_comma"
    if re.search(r"\d\s+\d", s):
        return "number_spaces"
    return "not_a_number"


def check_row_g(grams: Decimal | int, unit: str) -> dict | None:
    """The facts of an amount in grams past the physical bound of one row (the `amount_too_big` problem), or None."""
    if grams > MAX_ROW_G:
        return {"max": f"{MAX_ROW_G // GRAMS_PER_UNIT[unit]:,}", "unit": unit, "max_g": f"{MAX_ROW_G:,}"}
    return None


def grams_exact(amount: Decimal, unit: str) -> Decimal:
    """Amount in `unit` as (possibly fractional) grams, exactly."""
    if unit not in GRAMS_PER_UNIT:
        raise AmountError("unknown_unit", value=unit, known=sorted(GRAMS_PER_UNIT))
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


def toml_decimal(text: str) -> Decimal:
    """tomllib's parse_float: a TOML float as an exact Decimal, by the same grammar (TOML's own
    underscores and exponents refused, and nan/inf); TOML integers are read by TOML itself."""
    if not re.fullmatch(r"[+-]?\d+\.\d+", text):
        raise AmountError("toml_number", value=repr(text))
    return Decimal(text)


def toml_problem_line(text: str, exc: AmountError) -> int:
    """The first line of a TOML text holding the number an AmountError names (0 if not found)."""
    value = str(exc.facts.get("value", "")).strip("'")
    if value:
        for i, line in enumerate(text.splitlines(), 1):
            if value in line.split("#")[0]:
                return i
    return 0


# Priorities (a score like 7.5, or an economic value): greater than 0, at most MAX_PRIORITY, at most
# PRIORITY_PLACES decimal places. Stored exactly as integer ten-thousandths (project.priority_e4).
# At most 10 significant digits each, so a priority's JSON number is its decimal text, and a total over
# 100,000 projects has at most 15 (the float the solver carries is exact; reports sum Decimals).
MAX_PRIORITY = Decimal(10) ** 6
PRIORITY_PLACES = 4
PRIORITY_SCALE = 10 ** PRIORITY_PLACES


def parse_priority(value: object) -> int | Decimal:
    """A priority exactly: an int when whole, else a normalised Decimal (`7.50` is 7.5). Text by the
    one number grammar (`7,5`, `1e3`, nan refused with the grammar's codes: number_ambiguous_comma,
    number_exponent, number_not_finite...); then greater than 0 and at most MAX_PRIORITY (else
    priority_range), with at most PRIORITY_PLACES decimal places (else priority_places). Raises AmountError."""
    d = parse_decimal(value)
    shown = value if isinstance(value, str) else str(d)
    if d <= 0 or d > MAX_PRIORITY:
        raise AmountError("priority_range", value=shown, max=f"{MAX_PRIORITY:,}")
    if d != d.quantize(Decimal(1).scaleb(-PRIORITY_PLACES)):
        raise AmountError("priority_places", value=shown, places=PRIORITY_PLACES)
    return priority_from_e4(int(d.scaleb(PRIORITY_PLACES)))


def priority_e4(priority: int | Decimal) -> int:
    """A valid priority in integer ten-thousandths (7.5 -> 75000), as stored."""
    return int(Decimal(priority).scaleb(PRIORITY_PLACES))


def priority_from_e4(e4: int) -> int | Decimal:
    """A stored priority: an int when whole (as priorities always were), else the exact Decimal."""
    e4 = int(e4)
    if e4 % PRIORITY_SCALE == 0:
        return e4 // PRIORITY_SCALE
    return Decimal(e4).scaleb(-PRIORITY_PLACES).normalize()


def priority_json(priority: int | Decimal) -> int | float:
    """A priority for JSON: an int, or the float whose shortest text is the decimal itself (at most 10
    significant digits, so `7.5` is written `7.5`; read it back with a decimal parser to keep it exact)."""
    return priority if isinstance(priority, int) else float(priority)


def priority_text(priority: int | Decimal) -> str:
    """A priority as committed to the chain (`register`) and shown: `7` or `7.5`."""
    return str(priority)


def priority_from_json(value: int | float | str | Decimal) -> int | Decimal:
    """A priority read back from JSON (a stored plan: a number whose text was the exact decimal)."""
    return priority_from_e4(priority_e4(Decimal(str(value))))


def decimal_text(d: Decimal) -> str:
    """An exact total as plain text: `10` rather than `10.0`, `7.5` rather than `7.50`, never an exponent."""
    return str(int(d)) if d == d.to_integral_value() else format(d.normalize(), "f")
