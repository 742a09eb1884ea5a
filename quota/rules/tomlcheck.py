"""Strict reading of a TOML file's tables (the rulebook, a scenario): every key known, every value of its type.

A `Checker` collects problems (errors.Problem with a code and facts) instead of raising: an unknown key is refused
with its path and a "did you mean" when one is close (difflib), a value of the wrong type names what was expected
and what was given (`must_fund = "false"` is a string, not false), and numbers are finite Decimals.
"""
from __future__ import annotations

import datetime as dt
import difflib
import tomllib
from decimal import Decimal
from pathlib import Path

from quota import identity
from quota.errors import Problem, ValidationFailed


def read_toml(path: str, shown: str, parse_float) -> tuple[str, dict]:
    """(text, table) of a TOML file; ValidationFailed with one problem when it cannot be read or parsed."""
    def refuse(code: str, row: int = 0, /, **facts):
        raise ValidationFailed([Problem.of(shown, row, "", code, **facts)]) from None
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        refuse("file_not_found")
    except IsADirectoryError:
        refuse("is_directory")
    except PermissionError:
        refuse("no_permission")
    except OSError as exc:
        refuse("cannot_read_file", detail=exc.strerror or type(exc).__name__)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        refuse("not_utf8", byte=exc.start)
    from quota import units
    try:
        return text, tomllib.loads(text, parse_float=parse_float)
    except units.AmountError as exc:
        refuse(exc.code, units.toml_problem_line(text, exc), **exc.facts)
    except tomllib.TOMLDecodeError as exc:
        raise ValidationFailed([toml_problem(shown, text, exc)]) from None


def toml_line(message: str) -> int:
    """The line tomllib names in its error ("... (at line 3, column 5)"), or 0: tomllib gives no attribute."""
    return _toml_position(message)[1]


def _toml_position(message: str) -> tuple[str, int, int]:
    """(tomllib's own sentence, line, column) from its error "... (at line 3, column 5)"; line 0 when it names
    none ("(at end of document)"). tomllib (before Python 3.14) gives no attributes, only this text."""
    at = message.rfind(" (at ")
    if at < 0:
        return message, 0, 0
    where = message[at + 5:].rstrip(")").replace("line ", "").replace("column ", "").split(", ")
    if len(where) == 2 and all(w.isdigit() for w in where):
        return message[:at], int(where[0]), int(where[1])
    return message[:at], 0, 0


def toml_problem(source: str, text: str, exc: Exception) -> Problem:
    """The finding of a TOML syntax error: its line and column (the end of the document when tomllib names no
    line), and tomllib's own sentence as third-party detail (quoted as such in Chinese)."""
    detail, line, column = _toml_position(str(exc))
    if not line:
        lines = text.split("\n")
        line, column = len(lines), len(lines[-1]) + 1
    return Problem.of(source, line, "", "toml_syntax", line=line, column=column, detail=detail)


def kind_of(value) -> str:
    """The word (catalogue WORDS) for a TOML value's type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (Decimal, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "table"
    if isinstance(value, list):
        return "array"
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return "date"
    return "value"


def shown(value) -> str:
    """A value as TOML would write it, cut at 40 characters (never a Python repr such as Decimal('0.5'))."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = '"' + value + '"'
    elif isinstance(value, dict):
        text = "{" + ", ".join(f"{k} = {shown(v)}" for k, v in value.items()) + "}"
    elif isinstance(value, list):
        text = "[" + ", ".join(shown(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


class Checker:
    """Reads the tables of one TOML file; each unfit key or value adds a Problem (row 0: the caller may locate)."""

    def __init__(self, source: str):
        self.source = source
        self.problems: list[Problem] = []

    def err(self, where: str, code: str, /, **facts) -> None:
        self.problems.append(Problem.of(self.source, 0, where, code, **facts))

    def wrong(self, where: str, expected: str, value) -> None:
        self.err(where, "wrong_type", expected=expected, got_kind=kind_of(value), got=shown(value))

    def keys(self, table: dict, allowed, where: str = "") -> None:
        """Refuse keys the schema does not know, with a "did you mean" when one is close (a misspelt `life_year`
        must not silently leave lots never expiring)."""
        for key in sorted(set(table) - set(allowed), key=str):
            path = f"{where}.{key}" if where else str(key)
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            if close:
                self.err(path, "unknown_key", suggestion=close[0])
            else:
                self.err(path, "unknown_key_known", known=sorted(allowed))

    def table(self, value, where: str) -> dict:
        """A table ({} when absent or refused)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.wrong(where, "table", value)
            return {}
        return value

    def tables(self, value, where: str) -> list[tuple[str, dict]]:
        """The entries of an array of tables ([[where]]), each with its path."""
        if value is None:
            return []
        if not isinstance(value, list):
            self.wrong(where, "tables", value)
            return []
        out = []
        for i, item in enumerate(value, 1):
            if isinstance(item, dict):
                out.append((f"{where}[{i}]", item))
            else:
                self.wrong(f"{where}[{i}]", "table", item)
        return out

    def string(self, table: dict, key: str, where: str, required: bool = True) -> str:
        value = table.get(key)
        path = f"{where}.{key}" if where else key
        if value is None:
            if required:
                self.err(path, "missing_key")
            return ""
        if not isinstance(value, str):
            self.wrong(path, "string", value)
            return ""
        return value.strip()

    def free(self, table: dict, key: str, where: str) -> str:
        """A name (identity.free_text: no control, bidi or line-break characters)."""
        value = self.string(table, key, where, required=False)
        try:
            return identity.free_text(value, key)
        except identity.BadId as exc:
            self.err(f"{where}.{key}" if where else key, exc.code, **exc.facts)
            return ""

    def code(self, value, path: str, required: bool = True) -> str:
        """An id or code by identity.code ('' and a problem when it is unfit)."""
        if value is None or value == "":
            if required:
                self.err(path, "missing_key")
            return ""
        if not isinstance(value, str):
            self.wrong(path, "string", value)
            return ""
        try:
            return identity.code(value, path)
        except identity.BadId as exc:
            self.err(path, exc.code, **exc.facts)
            return ""

    def boolean(self, table: dict, key: str, where: str, default: bool = False) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            self.wrong(f"{where}.{key}" if where else key, "boolean", value)
            return default
        return value

    def integer(self, value, path: str, lo: int, hi: int, default: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.wrong(path, "integer", value)
            return default
        if not lo <= value <= hi:
            self.err(path, "integer_range", lo=lo, hi=hi, value=value)
            return default
        return value

    def number(self, value, path: str) -> Decimal | None:
        """A finite number (TOML integer or float read as Decimal); None and a problem otherwise."""
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            self.wrong(path, "number", value)
            return None
        value = Decimal(value)
        if not value.is_finite():
            self.err(path, "number_not_finite", value=str(value))
            return None
        return value

    def date(self, value, path: str) -> dt.date | None:
        if value is None:
            return None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value.strip())
            except ValueError:
                self.err(path, "bad_date", value=value)
                return None
        self.wrong(path, "date", value)
        return None

    def strings(self, value, path: str) -> list[str]:
        """A list of strings (a lone string is refused, not split into characters)."""
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.wrong(path, "strings", value)
            return []
        return list(value)
