"""Error records (errors as data) and the few exceptions that stop an operation."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """One validation finding: where it is (file, row, column) and which rule it broke.

    `row` is the 1-based line number in the file as a spreadsheet user sees it
    (the header is row 1, the first data row is row 2); 0 means the whole file.
    """

    source: str
    row: int
    column: str
    message: str
    code: str = ""  # the rule broken, where one is named (e.g. bad_number, bad_priority)

    def __str__(self) -> str:
        where = self.source
        if self.row:
            where += f":{self.row}"
        if self.column:
            where += f" [{self.column}]"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict:
        return asdict(self)


class QuotaError(Exception):
    """Base of every error the library raises; the CLI turns it into exit code 1. `code` names it from a
    finite list (README, "Refusals"); `facts` carry its data."""

    code = "error"
    facts: dict = {}

    def to_dict(self) -> dict:
        """The refusal as data: {"error": {"code", "message", ...facts}} (what `--json` prints)."""
        return {"error": {"code": self.code, "message": str(self), **self.facts}}


class ValidationFailed(QuotaError):
    """Input was refused; `problems` lists every finding. Nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems)
        first = "; ".join(str(p) for p in self.problems[:3])
        more = f" (+{len(self.problems) - 3} more)" if len(self.problems) > 3 else ""
        super().__init__(f"{len(self.problems)} problem(s): {first}{more}")

    code = "invalid_input"

    @property
    def facts(self) -> dict:
        return {"problems": [p.to_dict() for p in self.problems]}


class Refused(QuotaError):
    """A ledger operation cannot be carried out (short quota, wrong state...).

    `code` names the refusal from a finite list (see README, "Refusals"), `facts` are its data
    (pollutant, key, grams, lot...), so front ends can render it without reading the message back."""

    def __init__(self, message: str, code: str = "refused", **facts):
        super().__init__(message)
        self.code = code
        self.facts = facts


class NotFound(QuotaError):
    """A project, lot or plan named by the user does not exist."""

    code = "not_found"


class IdempotencyConflict(QuotaError):
    """The same --key was used before with different content."""

    code = "key_conflict"
