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

    def fail(self, column: str, message: str) -> None:
        self.problems.append(Problem(self.source, self.row, column, message))

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
            self.fail(col, exc.reason)
            return ""
        if not value:
            if required:
                self.fail(col, "required value is empty")
        elif len(value) > max_len:
            self.fail(col, f"longer than {max_len} characters")
            return value[:max_len]
        return value

    def code(self, col: str, required: bool = True, max_len: int = 64) -> str:
        """An id or code cell in its normal form (identity.code: NFKC, trimmed, upper-case); a cell
        with invisible, bidi or control characters is refused naming the character."""
        raw = self.cells.get(col, "")
        if not raw.strip():
            if required:
                self.fail(col, "required value is empty")
            return ""
        try:
            return identity.code(raw, col, max_len=max_len)
        except identity.BadId as exc:
            self.fail(col, exc.reason)
            return ""

    def amount(self, col: str, required: bool = True, unit: str | None = None) -> Decimal | None:
        """A non-negative amount by the one number grammar (units.parse_decimal); with its `unit`,
        also within the physical bound of one row (units.MAX_ROW_G)."""
        raw = self.cells.get(col, "").strip()
        if not raw:
            if required:
                self.fail(col, "required amount is empty")
            return None
        try:
            value = units.parse_decimal(raw)
        except units.AmountError as exc:
            self.fail(col, f"{exc}")
            return None
        if value < 0:
            self.fail(col, f"amount must not be negative, got {raw}")
            return None
        if unit in units.GRAMS_PER_UNIT:
            too_big = units.check_row_g(units.grams_exact(value, unit), unit)
        else:
            too_big = units.check_row_g(value * units.GRAMS_PER_UNIT["t/a"], "t/a")
        if too_big:
            self.fail(col, f"amount {raw} {too_big}")
            return None
        return value

    def date(self, col: str, required: bool = True) -> dt.date | None:
        raw = self.raw(col)
        if not raw:
            if required:
                self.fail(col, "required date is empty (use YYYY-MM-DD)")
            return None
        m = _DATE_RE.match(raw)
        try:
            if not m:
                raise ValueError
            value = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            self.fail(col, f"not a valid date {raw!r} (use YYYY-MM-DD)")
            return None
        if not (1950 <= value.year <= 2100):
            self.fail(col, f"date {raw} is outside 1950-2100")
            return None
        return value

    def integer(self, col: str, default: int | None, lo: int, hi: int) -> int | None:
        """A whole number by the same grammar as amounts (`1,000` yes; `1_000`, `1e3`, `12,5` no)."""
        raw = self.cells.get(col, "").strip()
        if not raw:
            if default is None:
                self.fail(col, "required whole number is empty")
            return default
        try:
            d = units.parse_decimal(raw)
            value = int(d) if d == d.to_integral_value() else None
        except units.AmountError:
            value = None
        if value is None or not (lo <= value <= hi):
            self.fail(col, f"must be a whole number from {lo} to {hi}, got {raw!r}")
            return default
        return value

    def boolean(self, col: str) -> bool:
        raw = self.raw(col).lower()
        if raw in TRUE:
            return True
        if raw not in FALSE:
            self.fail(col, f"must be true or false, got {raw!r}")
        return False

    def zone_pollutant_unit(self, book) -> tuple[str, str, str]:
        """The zone, pollutant and unit cells, checked against the rulebook (the unit must be the
        pollutant's own)."""
        zone = self.code("zone")
        if zone and zone not in book.zones:
            self.fail("zone", f"unknown zone {zone!r} (rulebook has {', '.join(sorted(book.zones))})")
        pollutant = self.code("pollutant")
        unit = self.raw("unit").lower()
        if not unit:
            self.fail("unit", "required value is empty")
        if pollutant and pollutant not in book.pollutants:
            self.fail("pollutant", f"unknown pollutant {pollutant!r} (rulebook has "
                      f"{', '.join(sorted(book.pollutants))})")
        elif pollutant and unit and unit != book.pollutants[pollutant].unit:
            self.fail("unit", f"unit {unit!r} is not {pollutant}'s unit {book.pollutants[pollutant].unit!r}")
        return zone, pollutant, unit

    def choice(self, col: str, options: dict[str, str]) -> str:
        raw = self.raw(col)
        value = options.get(raw) or options.get(raw.lower())
        if value is None:
            if not raw:
                self.fail(col, "required value is empty")
            else:
                self.fail(col, f"must be one of {', '.join(sorted(set(options.values())))}, got {raw!r}")
            return ""
        return value
