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

            class _Console(Console):
                def on_broken_pipe(self) -> None:  # rich would exit 1: the CLI's edge ends quietly with 0
                    self.quiet = True
                    raise BrokenPipeError(32, "Broken pipe")
            self._console = _Console(**self._options)
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


def word(value) -> str:
    """A state or status word (approved, revoked, optimal...) in the current language."""
    return i18n.WORDS[value][1] if LANG["lang"] == "zh" and value in i18n.WORDS else str(value)


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


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2, default=str)


_SCALAR = json.JSONEncoder(ensure_ascii=False, default=str).encode  # the C encoder: no indent


def _item_text(item) -> str:
    """An item of a list at depth 2, as json.dumps(indent=2) writes it. A flat dict (a balance row) is written
    through the C encoder key by key: json's indenting encoder is pure Python, slower, and leaves a reference
    cycle per call for the garbage collector."""
    if not isinstance(item, (dict, list, tuple)):
        return _SCALAR(item)
    if isinstance(item, dict) and item and all(type(k) is str and not isinstance(v, (dict, list, tuple))
                                               for k, v in item.items()):
        return "{\n" + ",\n".join(f"      {_SCALAR(k)}: {_SCALAR(v)}" for k, v in item.items()) + "\n    }"
    return _dumps(item).replace("\n", "\n    ")


def emit_json(obj) -> None:
    """json.dumps(obj, indent=2) on stdout, byte for byte; a dict's lists are written item by item, so a result
    listing a million lots (`tally import --json`) never becomes one string."""
    if not isinstance(obj, dict) or not obj or any(type(k) is not str for k in obj):
        sys.stdout.write(_dumps(obj) + "\n")
        return
    write = sys.stdout.write
    for n, (key, value) in enumerate(obj.items()):
        write(("{\n  " if n == 0 else ",\n  ") + _SCALAR(key) + ": ")
        if isinstance(value, list) and value:
            for i, item in enumerate(value):
                write(("[\n    " if i == 0 else ",\n    ") + _item_text(item))
            write("\n  ]")
        else:
            write(_dumps(value).replace("\n", "\n  "))
    write("\n}\n")


def emit_json_stream(head: dict, key: str, items) -> None:
    """Write `{**head, key: list(items)}` exactly as emit_json would, byte for byte, one item at a time: the
    items (e.g. a million balance rows) are never all in memory, nor is the text."""
    write = sys.stdout.write
    opening = _dumps(head)[:-2] if head else "{"  # '{\n  "a": 1' without its closing '\n}'
    write(opening + ("," if head else "") + "\n  " + json.dumps(key, ensure_ascii=False) + ": ")
    first = True
    for item in items:
        write(("[\n    " if first else ",\n    ") + _item_text(item))
        first = False
    write("[]\n}\n" if first else "\n  ]\n}\n")


MAX_PROBLEM_LINES = 100  # a file of 10^5 bad rows is refused in a screenful; --json lists them all


def problems(items: list[Problem], heading: str = "refused") -> None:
    """One line per problem (file:row [column]: message), easy to read and to grep; at most MAX_PROBLEM_LINES,
    then a count of the rest."""
    err.print(msg(heading, n=len(items)), style="bold red")
    lang = LANG["lang"]
    for p in items[:MAX_PROBLEM_LINES]:
        err.print(f"  {p.located(lang)}", markup=False)
    if len(items) > MAX_PROBLEM_LINES:
        err.print("  " + msg("more_problems", n=len(items) - MAX_PROBLEM_LINES), markup=False)


def refusal(exc) -> None:
    """A library refusal (QuotaError) on stderr, in the user's language, rendered from its code and facts."""
    err.print(f"[bold red]{esc(msg('error_prefix'))}[/]", markup=True, highlight=False, end="")
    err.print(exc.text(LANG["lang"]), markup=False, highlight=False)


def read_note(name: str, read: dict) -> None:
    """Say on stderr how an input file was read when it is not plain UTF-8 CSV: its encoding, or the sheet and
    header row of a workbook (when not the first sheet's first row)."""
    if read.get("encoding") not in (None, "utf-8"):
        note(msg("read_encoding", file=name, encoding=read["encoding"].upper()))
    if read.get("sheet") is not None and (read.get("header_row") != 1 or not read.get("first_sheet")):
        note(msg("read_sheet", file=name, sheet=read["sheet"], row=read.get("header_row", 1)))


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
                 word(r["state"]), units.display(r["issued_g"], r["unit"]), r["available"], r["reserved"],
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
    out.print(f"[bold]{esc(result['project_id'])}[/] {esc(result['name'])} — "
              + esc(msg("trace_head", zone=result["zone"], industry=result["industry"] or "-",
                        state=word(result["state"]))), markup=True)
    out.print(table(h("Requirement"), ["Pollutant", "Increment", "Ratio", "Why", "Required", "Held", "Key", "Unit"],
                    [[n["pollutant"], units.display(n["increment_g"], n["unit"]), n["ratio"], "; ".join(n["why"]),
                      units.display(n["required_g"], n["unit"]), units.display(n["held_g"], n["unit"]), n["key"],
                      n["unit"]] for n in result["needs"]], right={"Increment", "Required", "Held", "Ratio"}))
    out.print(table(h("Sources of the quota"), ["Pollutant", "Lot", "State", "Amount", "Tally", "Source", "Report"],
                    [[d["pollutant"], d["lot"] + ("" if d["lot_state"] == "active" else f" ({d['lot_state'].upper()})"),
                      word(d["state"]), d["amount"], d["tally_id"],
                      f"{d['source_id']} {d['source_name']} ({d['measure']})", d["report_no"]]
                     for d in result["draws"]], right={"Amount"}))


# --------------------------------------------------------------------------- views of one command

def rulebook(info: dict, book) -> None:
    """`quota rules show`: the rulebook in force."""
    version = info["version"]
    out.print(f"Rulebook v{version}: {book.jurisdiction_name} {book.jurisdiction_name_zh} "
              f"({book.jurisdiction_code})")
    out.print(table(h("Pollutants"), ["Pollutant", "Name", "Unit", "Key"],
                           [[p["code"], f"{p['name']} {p['name_zh']}", p["unit"],
                             f"{p['medium']} -> {info['matching'][p['medium']]}"] for p in info["pollutants"]]))
    out.print(table(h("Zones"), ["Zone", "Name", "Key", "State"],
                           [[z["code"], f"{z['name']} {z['name_zh']}", f"{z['watershed']} / {z['airshed']}",
                             "non-attainment: " + ", ".join(z["non_attainment"]) if z["non_attainment"] else ""]
                            for z in info["zones"]]))
    r = info["ratios"]
    out.print(f"Ratios: default {r['default']}, non-attainment {r['non_attainment']}; rules: "
              + ("; ".join(", ".join(f"{k}={v}" for k, v in x.items() if v) for x in r["rules"]) or "none"))
    c = info["crediting"]
    out.print(f"Crediting: baseline {c['baseline']}, discount {c['discount']}, life {c['life_years']} years")


def credited(result: dict, dry_run: bool) -> None:
    """`quota tally import`: what was (or would be) credited, by pollutant."""
    title = msg("would_credit" if dry_run else "credited", n=result["tallies"])
    out.print(table(title, ["Pollutant", "Amount", "Unit"],
                           [[c["pollutant"], c["amount"], c["unit"]] for c in result["credited"]],
                           right={"Amount"}))
    for c in result.get("capped", []):  # a source credited from an earlier upgrade's emissions
        out.print(msg("capped", tally=c["tally_id"], by=c["by"], amount=c["amount"], unit=c["unit"]),
                  markup=False, highlight=False)


def projects(rows: list[dict]) -> None:
    """`quota project list`: one line per project and pollutant."""
    from quota import units
    out.print(table(h("Projects"), ["Project", "Name", "Zone", "Priority", "Needed by", "State",
                                        "Pollutant", "Increment", "Ratio", "Required", "Unit"],
                           [[p["project_id"], p["name"], p["zone"], p["priority"], p["needed_by"], word(p["state"]),
                             n["pollutant"], units.display(n["increment_g"], n["unit"]), n["ratio"],
                             units.display(n["required_g"], n["unit"]), n["unit"]]
                            for p in rows for n in p["needs"]], right={"Increment", "Required", "Ratio"}))


def plan(result: dict) -> None:
    """A solved plan: its head line, draws, unfunded projects, shadow prices, binding expiries, candidates."""
    from quota import units
    unit = result["units"]

    def amount(pol: str, grams: int, up: bool = False) -> str:
        return f"{(units.display_up if up else units.display)(grams, unit[pol])} {unit[pol]}"

    status = result["status"]
    out.print(msg("plan_head", id=result["plan_id"], day=result["as_of"], status=word(status),
                         obj=result.get("objective_exact") or f"{result['objective']:g}", bound=f"{result['bound']:g}",
                         lp=f"{result['lp_bound']:.4g}", gap=f"{100 * result['gap']:.2f}%",
                         solver=result["solver"], secs=f"{result['seconds']:.2f}")
              + (f", scenario {result['scenario']!r}" if result.get("scenario") else ""), markup=False)
    if status == "infeasible":
        out.print(table(msg("infeasible"), ["Pollutant", "Key", "Amount",
                                                                                   "Unit"],
                               [[s["pollutant"], s["key"], s["short"], s["unit"]] for s in result["short"]],
                               right={"Amount"}))
        return
    rows = []
    for f in result["funded"]:
        for d in f["draws"]:
            rows.append([f["project_id"], f["priority"], d["pollutant"], d["lot"], d["zone"],
                  amount(d["pollutant"], d["amount_g"])])
    out.print(table(msg("funded", n=len(result["funded"])), ["Project", "Priority", "Pollutant",
                                                                        "Lot", "Zone", "Amount"], rows,
                           right={"Priority", "Amount"}))
    if result["unfunded"]:
        out.print(table(msg("unfunded", n=len(result["unfunded"])), ["Project", "Priority", "Short"],
                               [[u["project_id"], u["priority"],
                                 ", ".join(f"{p} {amount(p, g, up=True)}" for p, g in u["shortfall_g"].items()) or "-"]
                                for u in result["unfunded"]], right={"Priority"}))
    if result["shadow_prices"]:
        out.print(table(msg("shadow"),
                               ["Pollutant", "Key", "Value"],
                               [[s["pollutant"], s["key"], f"{s['value']:.4g} per {s['per']}"]
                                for s in result["shadow_prices"]]))
    if result["binding"]:
        out.print(table(msg("binding"),
                               ["Pollutant", "Key", "Expires after", "Supply", "Used", "Blocks"],
                               [[b["pollutant"], b["key"], b["after"], amount(b["pollutant"], b["supply_g"]),
                                 amount(b["pollutant"], b["used_g"]), ", ".join(b["blocks"])]
                                for b in result["binding"]], right={"Supply", "Used"}))
    if result.get("candidates") is not None:
        out.print(table(msg("candidates", cost=result.get("cost", 0)),
                               ["Candidate", "Cost", "State"],
                               [[c["candidate_id"], c["cost"], msg("chosen") if c["chosen"] else ""]
                                for c in result["candidates"]], right={"Cost"}))


def plans(rows: list[dict]) -> None:
    """`quota plan list`: the stored plans."""
    out.print(table(None, ["Plan", "As of", "Status", "Scenario", "Created", "Actor", "Applied"],
                           [[p["plan_id"], p["as_of"], word(p["status"]), p["scenario"] or "-", p["created_at"],
                             p["actor"], p["applied_at"] or "-"] for p in rows]))


def outlook(result: dict) -> None:
    """`quota plan outlook`: quota left at each year's end per pollutant and key, and the candidates."""
    from quota import units
    span = result["years"]
    rows = []
    for g in result["groups"]:
        cells = []
        for r in g["years"]:
            cell = units.display(r["closing_g"], g["unit"])
            cells.append(cell + (f" (short {units.display_up(r['unmet_g'], g['unit'])})" if r["unmet_g"] > 0 else ""))
        rows.append([g["pollutant"], g["key"], g["unit"], str(g["first_short_year"] or "-"), *cells])
    out.print(table(f"Outlook from {result['as_of']}: quota left at each year's end (plan "
                           f"{word(result['plan']['status'])})", ["Pollutant", "Key", "Unit", "First short",
                                                             *map(str, span)], rows,
                           right=set(map(str, span))))
    if result["candidates"]:
        out.print(table("Candidate measures", ["Candidate", "Chosen", "Tally by"],
                               [[c["candidate_id"], "yes" if c["chosen"] else "", c["tally_by"] or "-"]
                                for c in result["candidates"]]))


def stdout_gone() -> None:
    """The reader of stdout went away (`quota ... | head`): point stdout at /dev/null, so nothing more is written
    and the final flush does not fail."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def usage_message(exc, lang: str) -> str:
    """A click usage error in `lang`: from its type and attributes (option name, parameter), never from its text.
    A message click (or a type converter) wrote is third-party detail: under zh it is quoted in a Chinese sentence.
    An option value quota refused (core.OptionRefused) is rendered from its refusal's code and facts."""
    from cli.core import click_exceptions
    click = click_exceptions()
    refusal = getattr(exc, "refusal", None)
    if refusal is not None:
        return refusal.text(lang)
    if lang != "zh":
        return exc.format_message()

    def name_of(param) -> tuple[str, str]:
        if param is None:
            return "参数", exc.param_hint or ""
        if getattr(param, "param_type_name", "") == "option":
            return "选项", " / ".join(param.opts)
        return "参数", param.name or exc.param_hint or ""

    if isinstance(exc, click.MissingParameter):
        kind, name = name_of(exc.param)
        return f"缺少{kind} {name}".rstrip()
    if isinstance(exc, click.BadParameter):
        kind, name = name_of(exc.param)
        return f"{kind} {name} 的值无效：“{exc.message}”"
    if isinstance(exc, click.NoSuchOption):
        maybe = f"（是否要用 {'、'.join(sorted(exc.possibilities))}？）" if exc.possibilities else ""
        return f"没有选项 {exc.option_name}{maybe}"
    if isinstance(exc, click.BadOptionUsage):
        return f"选项 {exc.option_name} 用法有误：“{exc.message}”"
    if isinstance(exc, click.BadArgumentUsage):
        return f"参数用法有误：“{exc.message}”"
    return f"命令行有误：“{exc.message}”"


def usage_error(exc, lang: str) -> None:
    """A usage error on stderr as click lays it out (usage, hint, error), in `lang`; exit code 2 is the caller's."""
    ctx = exc.ctx
    if lang != "zh":
        exc.show()
        return
    lines = []
    if ctx is not None:
        pieces = " ".join(ctx.command.collect_usage_pieces(ctx))
        lines.append(f"用法：{ctx.command_path} {pieces}".rstrip())
        if ctx.command.get_help_option(ctx) is not None:
            lines.append(f"运行 '{ctx.command_path} {ctx.help_option_names[0]}' 查看帮助。")
        lines.append("")
    lines.append(f"错误：{usage_message(exc, lang)}")
    sys.stderr.write("\n".join(lines) + "\n")
