"""Typed reading of one input row's text cells, collecting problems instead of raising."""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from decimal import Decimal

from quota import identity
from quota import units
from quota.errors import Problem

_DATE_RE = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T]00:00:00)?$")
TRUE = {"true", "yes", "y", "1", "是", "t"}
FALSE = {"false", "no", "n", "0", "否", "f", ""}


class RowReader:
    """Reads the cells of one row; each bad cell adds a Problem naming file, row and column."""

    def __init__(self, source: str, row: int, cells: dict[str, str], problems: list[Problem]):
        self.source, self.row, self.cells, self.problems = source, row, cells, problems

    def fail(self, column: str, code: str, /, **facts) -> None:
        """A problem at this row and `column`, named by its code (the catalogue renders it, quota.report.findings)."""
        self.problems.append(Problem.of(self.source, self.row, column, code, **facts))

    def raw(self, col: str) -> str:
        """The cell as NFKC text, trimmed (full-width digits and letters read as ASCII)."""
        value = self.cells.get(col, "")
        return (value if value.isascii() else unicodedata.normalize("NFKC", value)).strip()

    def text(self, col: str, required: bool = True, max_len: int = 200, multiline: bool = False) -> str:
        """A free-text cell (a name, a method): kept as typed, trimmed; control characters, line
        breaks and bidi controls are refused (identity.free_text; `multiline` admits LF and TAB)."""
        try:
            value = identity.free_text(self.cells.get(col, ""), col, multiline=multiline)
        except identity.BadId as exc:
            self.fail(col, exc.code, **exc.facts)
            return ""
        if not value:
            if required:
                self.fail(col, "empty_value")
        elif len(value) > max_len:
            self.fail(col, "too_long", max=max_len)
            return value[:max_len]
        return value

    def code(self, col: str, required: bool = True, max_len: int = 64) -> str:
        """An id or code cell in its normal form (identity.code: NFKC, trimmed, upper-case); a cell
        with invisible, bidi or control characters is refused naming the character."""
        raw = self.cells.get(col, "")
        if not raw.strip():
            if required:
                self.fail(col, "empty_value")
            return ""
        try:
            return identity.code(raw, col, max_len=max_len)
        except identity.BadId as exc:
            self.fail(col, exc.code, **exc.facts)
            return ""

    def amount(self, col: str, required: bool = True, unit: str | None = None) -> Decimal | None:
        """A non-negative amount by the one number grammar (units.parse_decimal); with its `unit`,
        also within the physical bound of one row (units.MAX_ROW_G)."""
        raw = self.cells.get(col, "").strip()
        if not raw:
            if required:
                self.fail(col, "empty_amount")
            return None
        try:
            value = units.parse_decimal(raw)
        except units.AmountError as exc:
            self.fail(col, exc.code, **exc.facts)
            return None
        if value < 0:
            self.fail(col, "negative_amount", value=raw)
            return None
        if unit in units.GRAMS_PER_UNIT:
            too_big = units.check_row_g(units.grams_exact(value, unit), unit)
        else:
            too_big = units.check_row_g(value * units.GRAMS_PER_UNIT["t/a"], "t/a")
        if too_big:
            self.fail(col, "amount_too_big", value=raw, **too_big)
            return None
        return value

    def date(self, col: str, required: bool = True) -> dt.date | None:
        raw = self.raw(col)
        if not raw:
            if required:
                self.fail(col, "empty_date")
            return None
        m = _DATE_RE.match(raw)
        try:
            if not m:
                raise ValueError
            value = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            self.fail(col, "bad_date", value=raw)
            return None
        if not (1950 <= value.year <= 2100):
            self.fail(col, "date_range", value=raw)
            return None
        return value

    def integer(self, col: str, default: int | None, lo: int, hi: int) -> int | None:
        """A whole number by the same grammar as amounts (`1,000` yes; `1_000`, `1e3`, `12,5` no)."""
        raw = self.cells.get(col, "").strip()
        if not raw:
            if default is None:
                self.fail(col, "empty_integer")
            return default
        try:
            d = units.parse_decimal(raw)
            value = int(d) if d == d.to_integral_value() else None
        except units.AmountError:
            value = None
        if value is None or not (lo <= value <= hi):
            self.fail(col, "bad_integer", lo=lo, hi=hi, value=raw)
            return default
        return value

    def priority(self, col: str) -> int | Decimal:
        """A priority (units.parse_priority): 1 when empty; an int when whole, else the exact Decimal. A bad one is
        named by the number grammar's code (number_ambiguous_comma, number_exponent...) or by priority_range or
        priority_places."""
        raw = self.cells.get(col, "").strip()
        if not raw:
            return 1
        try:
            return units.parse_priority(raw)
        except units.AmountError as exc:
            self.fail(col, exc.code, **exc.facts)
            return 1

    def boolean(self, col: str) -> bool:
        raw = self.raw(col).lower()
        if raw in TRUE:
            return True
        if raw not in FALSE:
            self.fail(col, "bad_boolean", value=raw)
        return False

    def zone_pollutant_unit(self, book) -> tuple[str, str, str]:
        """The zone, pollutant and unit cells, checked against the rulebook (the unit must be the
        pollutant's own)."""
        zone = self.code("zone")
        if zone and zone not in book.zones:
            self.fail("zone", "unknown_zone", value=zone, known=sorted(book.zones))
        pollutant = self.code("pollutant")
        unit = self.raw("unit").lower()
        if not unit:
            self.fail("unit", "empty_value")
        if pollutant and pollutant not in book.pollutants:
            self.fail("pollutant", "unknown_pollutant", value=pollutant, known=sorted(book.pollutants))
        elif pollutant and unit and unit != book.pollutants[pollutant].unit:
            self.fail("unit", "wrong_unit", unit=unit, pollutant=pollutant, expected=book.pollutants[pollutant].unit)
        return zone, pollutant, unit

    def choice(self, col: str, options: dict[str, str]) -> str:
        raw = self.raw(col)
        value = options.get(raw) or options.get(raw.lower())
        if value is None:
            if not raw:
                self.fail(col, "empty_value")
            else:
                self.fail(col, "bad_choice", options=sorted(set(options.values())), value=raw)
            return ""
        return value
