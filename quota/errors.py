"""Error records (errors as data) and the few exceptions that stop an operation."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding: where it is (file, row, column) and which rule it broke.

    `row` is the 1-based line number in the file as a spreadsheet user sees it
    (the header is row 1, the first data row is row 2); 0 means the whole file. `code` names the rule from the
    documented list (README, "Refusals"), `facts` are its data; the catalogue (quota.report.findings) renders the
    message in English and Chinese from them, and `message` is the English text. Build one with `Problem.of`.
    """

    source: str
    row: int
    column: str
    message: str
    code: str = field(default="", compare=False)
    facts: dict = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def of(cls, source: str, row: int, column: str, code: str, /, **facts) -> "Problem":
        """A finding named by its code; its English message is rendered from the catalogue."""
        from quota.report.findings import problem_text
        return cls(source, row, column, problem_text(code, facts, "en"), code, facts)

    def at(self, **where) -> "Problem":
        """The same finding at another place (source, row or column)."""
        from dataclasses import replace
        return replace(self, **where)

    def text(self, lang: str = "en") -> str:
        """The message in `lang`, rendered from the code and facts (the stored message when there is no code)."""
        if not self.code:
            return self.message
        from quota.report.findings import problem_text
        return problem_text(self.code, self.facts, lang)

    def __str__(self) -> str:
        where = self.source
        if self.row:
            where += f":{self.row}"
        if self.column:
            where += f" [{self.column}]"
        return f"{where}: {self.message}"

    def located(self, lang: str = "en") -> str:
        """file:row [column]: message, the message in `lang`."""
        return str(self.at(message=self.text(lang)))

    def to_dict(self) -> dict:
        return {"source": self.source, "row": self.row, "column": self.column, "message": self.message,
                "code": self.code, "facts": dict(self.facts)}


class Reason(str):
    """A reason given as text (its English rendering) that keeps its `code` and `facts`, so that a front end renders
    it in any language from the catalogue (quota.report.findings) without reading the text back."""

    code: str
    facts: dict

    def __new__(cls, code: str, /, **facts):
        from quota.report.findings import problem_text
        self = super().__new__(cls, problem_text(code, facts, "en"))
        self.code, self.facts = code, facts
        return self

    def text(self, lang: str = "en") -> str:
        from quota.report.findings import problem_text
        return problem_text(self.code, self.facts, lang)


class QuotaError(Exception):
    """Base of every error the library raises; the CLI turns it into exit code 1. `code` names it from a
    finite list (README, "Refusals"); `facts` carry its data. The message is never written where the error is
    raised: `str(exc)` is its English rendering and `text(lang)` its rendering in `lang`, both from the
    catalogue (quota.report.catalogue.refusal) over the code and the facts. Raise one as `Refused(code, **facts)`
    (or a subclass with its own code: `NotFound(what=..., value=...)`)."""

    code = "error"
    facts: dict = {}

    def __init__(self, code: str | None = None, /, **facts):
        if code is not None:
            self.code = code
        self.facts = facts
        super().__init__(self.text("en"))

    def text(self, lang: str = "en") -> str:
        """The refusal in `lang` (en, zh), rendered from its code and facts."""
        from quota.report.catalogue import refusal
        return refusal(self.code, self.facts, lang)

    def to_dict(self) -> dict:
        """The refusal as data: {"error": {"code", "message", ...facts}} (what `--json` prints)."""
        return {"error": {"code": self.code, "message": str(self), **self.facts}}


class ValidationFailed(QuotaError):
    """Input was refused; `problems` lists every finding. Nothing was written."""

    code = "invalid_input"

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        Exception.__init__(self, self.text("en"))

    @property
    def facts(self) -> dict:
        return {"problems": [p.to_dict() for p in self.problems]}


class Refused(QuotaError):
    """A ledger operation cannot be carried out (short quota, wrong state...): `Refused(code, **facts)`.

    `code` names the refusal from a finite list (see README, "Refusals"), `facts` are its data
    (pollutant, key, grams, lot...), so front ends render it without reading a message back."""


class NotFound(QuotaError):
    """A project, lot or plan named by the user does not exist: `NotFound(what=..., value=...)`."""

    code = "not_found"


class IdempotencyConflict(QuotaError):
    """The same --key was used before with different content: `IdempotencyConflict(key=..., command=...)`, or
    by another database user: `IdempotencyConflict(key=..., user=who_recorded_it, by=who_asks)`."""

    code = "key_conflict"
