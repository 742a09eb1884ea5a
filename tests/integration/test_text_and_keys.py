"""Data is never markup (rich on the terminal, Markdown statements, spreadsheet formulas in plan files),
and idempotency keys are checked (issue 18)."""
import csv
import datetime as dt
import io
import re

import pytest
from typer.testing import CliRunner

from cli import render
from cli.main import app
from quota.ledger import idempotency
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import operations
from quota.audit import statement
from quota.intake import tallies
from quota.errors import Refused
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

runner = CliRunner()
SOURCE = "[link=http://evil.example]华源[/link] [/] :smile:"
NAME = "[bold]甲[/bold] [/] 项目 :warning:"
DOC = "金环审[2026]12号 [/] [red]x[/red]"


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


@pytest.fixture
def marked(engine, db_url, write_csv, pin_today):
    """A ledger whose source name, project name and report number look like rich markup."""
    pin_today(dt.date(2026, 12, 31))
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [
        f'T1,S1,"{SOURCE}",closure,JT-YT,COD,20.0,,,t/a,2020,2024-01-01,m,"<b>检测</b> | x","R[/]1 <script>"']),
        actor="clerk")
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        f'PX1,"{NAME}",JT-YT,chemical,COD,1.0,t/a,5,2027-06-30,true,']), actor="clerk")
    return db_url


def test_markup_in_names_and_documents_prints_literally(marked):
    listing = quota(marked, "project", "list")
    assert listing.exit_code == 0, listing.output
    assert NAME in listing.stdout
    reserve = quota(marked, "reserve", "PX1", "--date", "2026-11-29")
    assert reserve.exit_code == 0, reserve.output
    approve = quota(marked, "approve", "PX1", "--doc", DOC, "--date", "2026-11-30")
    assert approve.exit_code == 0, approve.output
    assert DOC in approve.stdout
    again = quota(marked, "approve", "PX1", "--doc", DOC, "--date", "2026-11-30")  # a retry does not crash either
    assert "Traceback" not in again.output and "MarkupError" not in again.output
    trace = quota(marked, "trace", "PX1")
    assert trace.exit_code == 0, trace.output
    assert "[link=http://evil.example]华源[/link]" in trace.stdout and "R[/]1" in trace.stdout
    assert NAME in trace.stdout and "\x1b]8;" not in trace.stdout  # no hyperlink escape sequence
    lots = quota(marked, "balance", "--by", "lot")
    assert lots.exit_code == 0 and "S1" in lots.stdout


def test_render_prints_a_project_id_with_markup_literally(monkeypatch):
    from rich.console import Console
    buffer = io.StringIO()
    console = Console(file=buffer, width=200, markup=False, emoji=False, highlight=False)
    monkeypatch.setattr(render, "out", console)
    render.trace({"project_id": "P[/]1", "name": "[link=http://e.x]n[/link]", "zone": "[b]Z", "industry": None,
                  "state": "[/]", "needs": [], "draws": [{"pollutant": "COD", "lot": "[/]L", "state": "reserved",
                                                          "amount": "1", "tally_id": "T", "source_id": "S",
                                                          "source_name": "[link=http://e.x]s[/link]",
                                                          "measure": "closure", "report_no": "R", "lot_state": "active"}]})
    text = buffer.getvalue()
    assert "P[/]1 [link=http://e.x]n[/link] — zone [b]Z" in text and "state [/]" in text
    assert "[/]L" in text and "[link=http://e.x]s[/link]" in text


def test_the_markdown_statement_keeps_data_as_text(marked, tmp_path):
    assert quota(marked, "reserve", "PX1", "--date", "2026-11-29").exit_code == 0
    path = tmp_path / "s.md"
    assert quota(marked, "trace", "PX1", "--format", "md", "--out", str(path)).exit_code == 0
    md = path.read_text(encoding="utf-8")
    assert "<script>" not in md and "<b>" not in md and "&lt;script&gt;" in md
    assert "](http" not in md and "\\[link=http://evil.example\\]" in md
    rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = {len(re.findall(r"(?<!\\)\|", line)) for line in rows}
    assert len(cells) <= 2 and len(rows) == 2 + 1 + 2 + 1  # two headers + separators, one need, one draw


def test_line_breaks_and_pipes_in_a_statement_cell_cannot_make_rows_or_links():
    s = {"title": "T", "head": [("Project", "P1 名\r| fake | row |\n[click](http://evil.example)")],
         "needs_header": ["a", "b"], "needs": [["x\r\n| 1 | 2 |", "<script>alert(1)</script>"]],
         "draws_header": ["c"], "draws": [["y\u2028z"]], "labels": {"requirement": "R", "sources": "S"}}
    md = statement.to_markdown(s)
    lines = md.splitlines()
    assert not any(line.startswith("| fake") or line.startswith("[click]") for line in lines)
    assert "<script>" not in md and "[click](" not in md
    assert [line for line in lines if line.startswith("|")] == [
        "| a | b |", "|---|---|", "| x  \\| 1 \\| 2 \\| | &lt;script&gt;alert(1)&lt;/script&gt; |",
        "| c |", "|---|", "| y z |"]


def test_plan_files_neutralise_formulas(tmp_path):
    evil = ['=HYPERLINK("http://x","y")', "+1", "-2", "@SUM(A1)"]
    result = {"plan_id": "PLAN-0001", "as_of": "2026-12-01", "status": "optimal", "objective": 1.0, "bound": 1.0,
              "lp_bound": 1.0, "gap": 0.0, "solver": "x", "seconds": 0.1, "scenario": "=cmd|' /C calc'!A0",
              "funded": [{"project_id": p, "priority": 1,
                          "draws": [{"pollutant": "COD", "lot": "L1", "zone": "Z", "amount_g": 5}]} for p in evil],
              "unfunded": [{"project_id": "=1+1", "priority": 2, "shortfall_g": {"COD": 7}}],
              "shadow_prices": []}
    files = plans.write_plan_files(result, str(tmp_path / "plan"))
    assert len(files) == 5
    with open(tmp_path / "plan" / "draws.csv", newline="", encoding="utf-8") as fh:
        got = [r["project_id"] for r in csv.DictReader(fh)]
    assert got == ["'" + p for p in evil]
    with open(tmp_path / "plan" / "summary.csv", newline="", encoding="utf-8") as fh:
        assert next(csv.DictReader(fh))["scenario"].startswith("'=")
    from openpyxl import load_workbook
    wb = load_workbook(tmp_path / "plan" / "plan.xlsx")
    values = [c.value for ws in wb for row in ws.iter_rows() for c in row if isinstance(c.value, str)]
    assert "'=1+1" in values and not any(v.startswith(("=", "+", "@")) for v in values)
    assert not any(v.startswith("-") for v in values)
    from quota.audit import table_export
    assert table_export.verify_tables(str(tmp_path / "plan"))[1] == []
    (tmp_path / "plan" / "draws.csv").write_text("plan_id\n", encoding="utf-8")
    problems = table_export.verify_tables(str(tmp_path / "plan"))[1]
    assert [p.source.rsplit("/", 1)[-1] for p in problems] == ["draws.csv"]


# --------------------------------------------------------------------------- keys

@pytest.mark.parametrize("key, message", [("", "empty"), ("k" * 201, "at most 200"), ("k" * 10_000, "at most 200"),
                                          ("a\nb", "control character"), ("a\x00b", "control character"),
                                          ("a\u2028b", "control character")])
def test_a_bad_key_is_refused_and_nothing_written(engine, key, message):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    before = snapshot(engine)
    with pytest.raises(Refused, match=message):
        operations.reserve(engine, "P2026-03", actor="a", key=key)
    assert snapshot(engine) == before


def test_a_key_of_the_limit_works_and_replays(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    key = "键" * idempotency.KEY_MAX
    first = operations.reserve(engine, "P2026-03", actor="a", key=key)
    again = operations.reserve(engine, "P2026-03", actor="a", key=key)
    assert again["replayed"] and again["txn"] == first["txn"]


def test_the_cli_refuses_an_empty_or_long_key(db_url, engine):
    assert quota(db_url, "tally", "import", str(DATA / "tallies.csv")).exit_code == 0
    assert quota(db_url, "project", "import", str(DATA / "projects.csv")).exit_code == 0
    before = snapshot(engine)
    empty = quota(db_url, "reserve", "P2026-03", "--key", "")
    assert empty.exit_code == 1 and "key is empty" in empty.stderr
    long = quota(db_url, "approve", "P2026-03", "--doc", "D1", "--key", "k" * 10_000)
    assert long.exit_code == 1 and "at most 200" in long.stderr and "Traceback" not in long.output
    assert snapshot(engine) == before
