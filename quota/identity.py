"""What an id is, and what free text may hold: one rule at the input edge (no database).

Stable API (every importer and command calls these on what a user typed):

- ``code(text, what, max_len=64) -> str`` normalises an id or code: Unicode NFKC (full-width
  ``Ｓ01`` reads as ``S01``), trimmed, inner runs of spaces made one space, upper-cased. Every id
  is case-insensitive: tally, source, project, lot serial, zone and pollutant codes. ``s01``,
  `` S01 `` and ``Ｓ01`` are one id, ``S01``. It raises ``BadId`` when the text is empty, longer
  than ``max_len``, or holds a character a reader cannot see or that changes how text is shown:
  control characters (category Cc, e.g. ESC of an ANSI escape, CR, LF, TAB), format characters
  (category Cf: zero-width spaces and joiners, the byte-order mark, bidi controls such as U+202E
  RIGHT-TO-LEFT OVERRIDE), line and paragraph separators, surrogates and private-use characters.
- ``free_text(text, what, multiline=False, max_len=None) -> str`` checks a name, memo, ``--doc``
  or actor. It is kept as typed (no NFKC, no case change), only trimmed, and ``BadId`` is raised
  for control characters (so no ANSI escape reaches a terminal, a statement or a CSV), bidi
  controls and line/paragraph separators. Line breaks are refused in every import (a CR in a name
  made fake rows in a Markdown statement); ``multiline=True`` admits LF and TAB only, never CR, for
  a caller that renders them safely (none does today).
- ``BadId`` is a ``ValueError`` whose message names what is wrong in plain English, e.g.
  ``project id 'P2026-01\\u200b' contains an invisible character U+200B (ZERO WIDTH SPACE)``.
  ``str(exc)`` is ready to show; ``exc.reason`` is the message without the leading
  ``<what> <repr>`` part, for a Problem whose column already says what is wrong.
- ``loose(stored) -> str`` / ``same(a, b) -> bool`` compare ids already stored (perhaps before this
  rule existed) by their normal form, never raising: look a typed id up with ``code`` and compare
  stored ids with ``loose``.
- ``name_key(name) -> str`` is how names are compared for a likely duplicate source (NFKC,
  case-folded, letters, digits and marks only).
"""
from __future__ import annotations

import re
import unicodedata

# bidirectional controls (all are category Cf; named here so free text can refuse them and keep ZWJ)
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SPACES = re.compile(r"\s+")


class BadId(ValueError):
    """An id or a text refused at the input edge; the message says what is wrong. `code` and `facts` name it for
    the catalogue (quota.report.findings), which renders `reason` (English) and its Chinese."""

    def __init__(self, what: str, text: str, code: str, /, **facts):
        from quota.report.findings import problem_text
        self.what, self.text, self.code, self.facts = what, text, code, facts
        self.reason = problem_text(code, facts, "en")
        super().__init__(f"{what} {text!r} {self.reason}")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}" + (f" ({name})" if name else "")


def _refused_char(text: str, free: bool, multiline: bool) -> tuple[str, dict] | None:
    """The code and facts of the first unacceptable character of `text`, or None."""
    if text.isprintable():  # no Cc, Cf, Cs, Co, Cn, Zl or Zp character (checked at C speed)
        return None
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc":
            if free and multiline and ch in "\n\t":
                continue
            kind = "char_line_break" if ch in "\r\n" else "char_escape" if ch == "\x1b" else "char_control"
            return kind, {"char": _describe(ch)}
        if ch in BIDI:
            return "char_bidi", {"char": _describe(ch)}
        if cat in ("Zl", "Zp"):
            return "char_line_break", {"char": _describe(ch)}
        if cat in ("Cs", "Co", "Cn") and (not free or cat == "Cs"):
            return "char_private", {"char": _describe(ch)}
        if cat == "Cf" and not free:
            return "char_invisible", {"char": _describe(ch)}
    return None


BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")  # Hangul fillers, the blank Braille pattern


def blank(text: object) -> bool:
    """True if `text` shows nothing: only spaces, format characters (zero-width space, joiners, BOM) and
    letters drawn as blanks. A required document number or memo like that is missing, not given."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" or ch in BLANK_LETTERS
               for ch in ("" if text is None else str(text)))


def code(text: object, what: str = "id", max_len: int = 64) -> str:
    """The normal form of an id or code (NFKC, trimmed, one space inside, upper-case); BadId if unfit."""
    raw = "" if text is None else str(text)
    if raw.isascii() and raw.isprintable():  # the common case at C speed: NFKC leaves printable ASCII as is
        value = " ".join(raw.split()).upper()
        if value and len(value) <= max_len:
            return value
    reason = _refused_char(raw, free=False, multiline=False)
    if reason:
        raise BadId(what, raw, reason[0], **reason[1])
    value = unicodedata.normalize("NFKC", raw)
    value = unicodedata.normalize("NFKC", _SPACES.sub(" ", value).strip().upper())
    reason = _refused_char(value, free=False, multiline=False)  # NFKC can reveal what it composed
    if reason:
        raise BadId(what, raw, reason[0], **reason[1])
    if not value:
        raise BadId(what, raw, "id_empty")
    if len(value) > max_len:
        raise BadId(what, raw, "id_too_long", max=max_len)
    return value


def free_text(text: object, what: str = "text", multiline: bool = False, max_len: int | None = None) -> str:
    """A name, memo, document number or actor, trimmed and otherwise kept as typed; BadId if unfit.

    Empty text is returned as ''; the caller decides whether it is required."""
    value = ("" if text is None else str(text)).strip()
    if multiline:
        value = value.replace("\r\n", "\n")
    reason = _refused_char(value, free=True, multiline=multiline)
    if reason:
        raise BadId(what, value, reason[0], **reason[1])
    if max_len is not None and len(value) > max_len:
        raise BadId(what, value, "id_too_long", max=max_len)
    return value


def same(a: str, b: str) -> bool:
    """Whether two stored ids are one id (ids stored before normalisation compare by their normal form)."""
    return loose(a) == loose(b)


def loose(text: str) -> str:
    """The normal form of an id already stored, never raising (an unfit stored id compares as itself)."""
    try:
        return code(text, max_len=10_000)
    except BadId:
        return str(text)


def name_key(name: str) -> str:
    """How two names are compared for a likely duplicate: NFKC, case-folded, without spaces or
    punctuation ('金坛华源化工有限公司' and '金坛 华源化工有限公司 ' compare equal)."""
    value = unicodedata.normalize("NFKC", str(name)).casefold()
    if value.isalnum():
        return value
    return "".join(ch for ch in value if unicodedata.category(ch)[0] in "LNM")
