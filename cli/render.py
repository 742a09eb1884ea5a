"""All terminal output: rich tables on stdout, diagnostics on stderr, JSON for --json."""
from __future__ import annotations

import json
import os
import sys

from quota.report import catalogue as i18n
from quota.errors import Problem


class _LazyConsole:
    """A rich Console created on first use, so `--json` commands never import rich.console."""

    def __init__(self, **options):
        self._options, self._console = options, None

    def __getattr__(self, name):
        if self._console is None:
            from rich.console import Console
            self._console = Console(**self._options)
        return getattr(self._console, name)


# When stdout is a file or a pipe, render wide (COLUMNS or 160) so data is not folded needlessly.
# Data is never markup: the consoles parse no markup or :emoji: codes unless a call asks for markup
# (and then escapes every value it puts in, with esc), and table cells are Text objects.
out = _LazyConsole(highlight=False, soft_wrap=True, markup=False, emoji=False,
                   width=None if sys.stdout.isatty() else int(os.environ.get("COLUMNS", "160")))
err = _LazyConsole(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)


def esc(value) -> str:
    """A value to put into a string printed with markup=True: its brackets are printed literally."""
    from rich.markup import escape
    return escape(str(value))


LANG = {"lang": "en"}


def h(text: str) -> str:
    return i18n.header(text, LANG["lang"])


def msg(key: str, **params) -> str:
    """A catalogue message in the current language."""
    return i18n.t(key, LANG["lang"], **params)


def table(title: str | None, headers: list[str], rows: list[list], right: set[str] = frozenset()):
    from rich.table import Table
    from rich.text import Text
    t = Table(title=None if title is None else Text(title), title_justify="left", show_lines=False)
    for name in headers:
        # cells fold rather than being cut with an ellipsis: a statement never hides data
        t.add_column(Text(h(name)), justify="right" if name in right else "left", overflow="fold")
    for row in rows:  # Text cells: a value is printed as it is, never read as markup
        t.add_row(*[Text("" if v is None else str(v)) for v in row])
    return t


def emit_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n")


MAX_PROBLEM_LINES = 100  # a file of 10^5 bad rows is refused in a screenful; --json lists them all


def problems(items: list[Problem], heading: str = "refused") -> None:
    """One line per problem (file:row [column]: message), easy to read and to grep; at most MAX_PROBLEM_LINES,
    then a count of the rest."""
    err.print(msg(heading, n=len(items)), style="bold red")
    lang = LANG["lang"]
    for p in items[:MAX_PROBLEM_LINES]:
        shown = Problem(p.source, p.row, p.column, i18n.translate_error(p.message, lang)) if lang == "zh" else p
        err.print(f"  {shown}", markup=False)
    if len(items) > MAX_PROBLEM_LINES:
        err.print("  " + msg("more_problems", n=len(items) - MAX_PROBLEM_LINES), markup=False)


def error(message: str) -> None:
    err.print(f"[bold red]{msg('error')}:[/] ", markup=True, highlight=False, end="")
    err.print(i18n.translate_error(message, LANG["lang"]), markup=False, highlight=False)


def refusal(exc) -> None:
    """A library refusal (QuotaError) on stderr, in the user's language, rendered from its code and facts."""
    err.print(f"[bold red]{msg('error')}:[/] ", markup=True, highlight=False, end="")
    err.print(i18n.refusal(exc.code, str(exc), exc.facts, LANG["lang"]), markup=False, highlight=False)


def done(message: str) -> None:
    """A success line: stdout (diagnostics go to stderr)."""
    out.print(message, markup=False, highlight=False)


def note(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def balances(result: dict) -> None:
    by = result["by"]
    if by == "lot":
        headers = ["Lot", "Pollutant", "Zone", "Tally", "Source", "Expires", "State", "Issued", "Available",
                   "Reserved", "Allocated", "Unit"]
        from quota import units
        rows = [[r["lot"], r["pollutant"], r["zone"], r["tally_id"], r["source_id"], r["expires"] or "never",
                 r["state"], units.display(r["issued_g"], r["unit"]), r["available"], r["reserved"],
                 r["allocated"], r["unit"]] for r in result["rows"]]
    else:
        from quota import units
        headers = ["Pollutant"] + (["Zone"] if by == "zone" else []) + ["Available", "Reserved", "Allocated",
                                                                         "Lapsed", "Unit"]
        rows = [[r["pollutant"]] + ([r["zone"]] if by == "zone" else []) +
                [r["available"], r["reserved"], r["allocated"], units.display(r["lapsed_g"], r["unit"]), r["unit"]]
                for r in result["rows"]]
    out.print(table(msg("balance_title", day=result["as_of"]), headers, rows,
                    right={"Available", "Reserved", "Allocated", "Lapsed", "Issued"}))


def trace(result: dict) -> None:
    from quota import units
    out.print(f"[bold]{esc(result['project_id'])}[/] {esc(result['name'])} — zone {esc(result['zone'])}, "
              f"industry {esc(result['industry'] or '-')}, state [bold]{esc(result['state'])}[/]", markup=True)
    out.print(table(h("Requirement"), ["Pollutant", "Increment", "Ratio", "Why", "Required", "Held", "Key", "Unit"],
                    [[n["pollutant"], units.display(n["increment_g"], n["unit"]), n["ratio"], "; ".join(n["why"]),
                      units.display(n["required_g"], n["unit"]), units.display(n["held_g"], n["unit"]), n["key"],
                      n["unit"]] for n in result["needs"]], right={"Increment", "Required", "Held", "Ratio"}))
    out.print(table(h("Sources of the quota"), ["Pollutant", "Lot", "State", "Amount", "Tally", "Source", "Report"],
                    [[d["pollutant"], d["lot"] + ("" if d["lot_state"] == "active" else f" ({d['lot_state'].upper()})"),
                      d["state"], d["amount"], d["tally_id"],
                      f"{d['source_id']} {d['source_name']} ({d['measure']})", d["report_no"]]
                     for d in result["draws"]], right={"Amount"}))
