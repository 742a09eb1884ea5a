"""Auditor exports on SQLite and PostgreSQL: JSONL round trip and tampering, as-of, tables, Beancount."""
import csv
import datetime as dt
import json
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from quota.audit import trace
from quota.ledger import balances
from quota.audit import beancount_export
from quota.audit import jsonl as export
from quota.intake import project_files
from quota.ledger import operations
from quota.audit import statement
from quota.audit import table_export
from quota.intake import tallies
from tests.conftest import DATA, TALLY_HEADER

D = dt.date


@pytest.fixture
def busy(engine, pin_today):
    """The sample ledger with a reservation, an approval, a release, a cancellation and an expiry."""
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    pin_today(D(2027, 1, 1))  # the ledger lives until then
    operations.reserve(engine, "P2026-08", actor="a", date=D(2026, 11, 29))
    operations.approve(engine, "P2026-08", doc="金环审〔2026〕31号", actor="b", date=D(2026, 12, 2))
    operations.reserve(engine, "P2026-03", actor="a", date=D(2026, 12, 2))
    operations.cancel(engine, "P2026-03", actor="a", date=D(2026, 12, 20))
    operations.reserve(engine, "P2026-11", actor="a", date=D(2026, 12, 20))
    operations.release(engine, "P2026-11", actor="a", date=D(2026, 12, 21))
    operations.expire(engine, D(2027, 1, 1), actor="system")
    return engine


def jsonl(engine, tmp_path, as_of=None) -> Path:
    path = tmp_path / f"ledger-{as_of}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        export.write_jsonl(engine, fh, as_of)
    return path


def stated_balances(path: Path) -> dict:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec["type"] == "balance":
            out[(rec["account"], rec["lot"])] = rec["amount_g"]
    return out


def test_export_round_trip_equals_the_database(busy, tmp_path):
    path = jsonl(busy, tmp_path)
    summary, problems = export.verify_export(str(path))
    assert problems == [] and summary["ok"]
    db_summary, _ = trace.verify(busy)
    assert (summary["transactions"], summary["postings"], summary["final_hash"]) == \
           (db_summary["transactions"], db_summary["postings"], db_summary["head"])
    from sqlalchemy import text
    with busy.connect() as conn:
        db_bal = {(r[0], r[1]): int(r[2]) for r in conn.execute(text("SELECT account, lot, amount_g FROM balance"))
                  if r[2]}
    assert stated_balances(path) == db_bal


def _lines(path):
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def _first_bad_line(path):
    summary, problems = export.verify_export(str(path))
    assert problems, "tampering was not detected"
    return min(p.row for p in problems if p.row)


@pytest.mark.parametrize("tamper, line", [
    ("edit_amount", 11), ("delete", 11), ("duplicate", 11), ("reorder", 11), ("change_hash", 11),
    ("insert_forged", 11), ("truncate", None)])
def test_every_kind_of_tampering_is_detected_at_the_right_line(busy, tmp_path, tamper, line):
    path = jsonl(busy, tmp_path)
    lines = _lines(path)
    i = 10  # 0-based index of line 11, a transaction
    rec = json.loads(lines[i])
    assert rec["type"] == "txn"
    if tamper == "edit_amount":
        rec["postings"][0][3] += 1
        rec["postings"][1][3] -= 1  # still balanced: only the hash can tell
        lines[i] = json.dumps(rec, ensure_ascii=False) + "\n"
    elif tamper == "delete":
        del lines[i]
    elif tamper == "duplicate":
        lines.insert(i, lines[i])
        line = 12
    elif tamper == "reorder":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif tamper == "change_hash":
        rec["hash"] = "0" * 64
        lines[i] = json.dumps(rec, ensure_ascii=False) + "\n"
    elif tamper == "insert_forged":
        forged = dict(rec, seq=rec["seq"], memo="forged")
        lines.insert(i, json.dumps(forged, ensure_ascii=False) + "\n")
    elif tamper == "truncate":
        lines = lines[: len(lines) // 2]
    path.write_text("".join(lines), encoding="utf-8")
    bad = _first_bad_line(path)
    if line is not None:
        assert bad == line
    else:
        assert bad == len(lines) + 1  # "ends without its end record"


@pytest.mark.parametrize("day", [D(2020, 1, 1), D(2022, 6, 30), D(2026, 12, 2), D(2030, 1, 1)])
def test_as_of_exports_verify_and_reproduce_the_ledger_of_that_day(busy, tmp_path, day):
    for fmt in ("csv", "xlsx", "parquet"):
        table_export.write_tables(busy, fmt, str(tmp_path / f"t-{fmt}" / ("l.xlsx" if fmt == "xlsx" else "")), day)
    with open(tmp_path / "t-csv" / "balances.csv", encoding="utf-8-sig", newline="") as fh:
        table_balances = {(r["account"], r["lot"]): int(r["amount_g"]) for r in csv.DictReader(fh)}
    with open(tmp_path / "t-csv" / "transactions.csv", encoding="utf-8-sig", newline="") as fh:
        assert all(r["effective_date"] <= day.isoformat() for r in csv.DictReader(fh))
    path = jsonl(busy, tmp_path, day)
    assert stated_balances(path) == table_balances
    summary, problems = export.verify_export(str(path))
    assert problems == []
    by_lot = {r["lot"]: r for r in balances.balance(busy, by="lot", as_of=day)["rows"]}
    stated = stated_balances(path)
    assert {lot: r["available_g"] + r["lapsed_g"] for lot, r in by_lot.items()} == \
           {lot: stated.get((f"lot:{lot}", lot), 0) for lot in by_lot}
    if day == D(2020, 1, 1):
        assert summary["transactions"] == 0 and stated == {}
    if day == D(2022, 6, 30):  # the day three lots were issued: they are included
        assert ("lot:SO2-2022-00008", "SO2-2022-00008") in stated


def test_table_exports_neutralise_formulas_and_round_trip_awkward_names(engine, tmp_path, write_csv):
    names = ['=HYPERLINK("http://x","y")', "+1 厂, \"甲\"", "@SUM(A1)", "-2 号 车间", "普通 名称"]
    rows = [f'F{i},S{i},"{n.replace(chr(34), chr(34) * 2)}",closure,JT-YT,COD,1,,,t/a,2020,2024-01-0{i + 1},m,x,R{i}'
            for i, n in enumerate(names)]
    tallies.import_tallies(engine, write_csv("f.csv", TALLY_HEADER, rows), actor="=cmd|' /C calc'!A0")
    files = table_export.write_tables(engine, "csv", str(tmp_path / "csv"))
    with open(tmp_path / "csv" / "tallies.csv", encoding="utf-8-sig", newline="") as fh:
        got = {r["tally_id"]: r["source_name"] for r in csv.DictReader(fh)}
    for i, n in enumerate(names):
        expect = "'" + n if n[0] in "=+-@" else n
        assert got[f"F{i}"] == expect
    with open(tmp_path / "csv" / "transactions.csv", encoding="utf-8-sig", newline="") as fh:
        assert all(r["actor"].startswith("'=") for r in csv.DictReader(fh))
    assert len(files) == 6
    xlsx = tmp_path / "ledger.xlsx"
    table_export.write_tables(engine, "xlsx", str(xlsx), lang="zh")
    from openpyxl import load_workbook
    ws = load_workbook(xlsx)["tallies"]
    header = [c.value for c in ws[1]]
    assert header[2] == "企业名称 source_name"
    values = {row[0].value: row[2].value for row in ws.iter_rows(min_row=2)}
    assert values["F0"] == "'" + names[0] and values["F3"] == "'" + names[3] and values["F4"] == names[4]
    assert all(not str(c.value).startswith("=") for row in ws.iter_rows() for c in row if c.value is not None)
    import pyarrow.parquet as pq
    table_export.write_tables(engine, "parquet", str(tmp_path / "pq"))
    postings = pq.read_table(tmp_path / "pq" / "postings.parquet")
    assert postings.num_rows == 10 and sum(postings.column("amount_g").to_pylist()) == 0


def bean_check(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("bean-check", path=str(Path(sys.executable).parent)) or "bean-check"
    return subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)


def test_beancount_export_passes_bean_check_and_matches_lot_balances(busy, tmp_path):
    path = tmp_path / "ledger.beancount"
    with open(path, "w", encoding="utf-8") as fh:
        beancount_export.write_beancount(busy, fh, today=D(2027, 1, 1))
    check = bean_check(path)
    assert check.returncode == 0, check.stdout + check.stderr
    from beancount import loader
    from beancount.core import data
    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    asserted = {(e.account, e.amount.currency): e.amount.number for e in entries if isinstance(e, data.Balance)}
    for row in balances.balance(busy, by="lot", as_of=None)["rows"]:
        account = f"Assets:Lots:{row['zone']}:{row['lot']}"
        if (account, row["pollutant"]) in asserted:
            grams = asserted[(account, row["pollutant"])] * (1_000_000 if row["unit"] == "t/a" else 1000)
            assert grams == Decimal(row["available_g"] + row["lapsed_g"])
        else:
            assert row["available_g"] + row["lapsed_g"] == 0 and row["issued_g"] == 0
    # change one posting amount (keeping the transaction balanced): bean-check must fail
    text = path.read_text(encoding="utf-8")
    target = "Assets:Allocated:P2026-08"
    i = text.index(target + " ", text.index(" * "))
    end = text.index("\n", i)
    line = text[i:end]
    number = line.split()[1]
    changed = text[:i] + line.replace(number, str(Decimal(number) + Decimal("0.000001"))) + text[end:]
    j = changed.index("Assets:Reserved:P2026-08 ", i - 200 if i > 200 else 0)
    end2 = changed.index("\n", j)
    line2 = changed[j:end2]
    number2 = line2.split()[1]
    changed = changed[:j] + line2.replace(number2, str(Decimal(number2) - Decimal("0.000001"))) + changed[end2:]
    path.write_text(changed, encoding="utf-8")
    check = bean_check(path)
    assert check.returncode != 0 and "Balance failed" in (check.stdout + check.stderr)


def test_source_statement_in_markdown_html_and_chinese(busy, tmp_path):
    s = statement.statement(busy, "P2026-08", "zh")
    md = statement.to_markdown(s)
    assert md.startswith("# 建设项目主要污染物排放总量指标来源说明")
    assert "金环审〔2026〕31号" in md and "JTHB-TG-2024-031" in md and "朱林热电有限公司" in md
    assert "提升改造" in md and "关闭" in md  # measures in Chinese
    assert "- **状态**: 已批复" in md  # the project's state too (P2026-08 is approved)
    html = statement.to_html(statement.statement(busy, "P2026-08", "en"))
    assert "<table>" in html and "Lot remaining" in html and "NOX (Nitrogen oxides)" in html
    xlsx = tmp_path / "s.xlsx"
    statement.write_statement(busy, "P2026-08", "xlsx", None, str(xlsx), "en")
    from openpyxl import load_workbook
    cells = [c.value for row in load_workbook(xlsx).active.iter_rows() for c in row if c.value]
    assert "JTHB-CS-2023-004" in cells


def test_beancount_export_names_a_lot_issued_while_the_export_starts(busy, tmp_path, write_csv, monkeypatch):
    """A lot issued after the Beancount export began but before its ledger snapshot was taken is in
    the snapshot: its account must carry the lot's zone, not UNKNOWN (the zones are read after the
    snapshot)."""
    late = write_csv("late.csv", TALLY_HEADER, ["TL1,SL1,迟到源,closure,JT-ZL,COD,2.0,,,t/a,2020,2026-12-01,m,x,RL1"])
    real = export.export_lines

    def racing(engine, as_of=None):
        tallies.import_tallies(engine, late, actor="clerk")  # commits before the snapshot begins
        yield from real(engine, as_of)

    monkeypatch.setattr(export, "export_lines", racing)
    path = tmp_path / "ledger.beancount"
    with open(path, "w", encoding="utf-8") as fh:
        beancount_export.write_beancount(busy, fh, today=D(2027, 1, 1))
    with busy.connect() as conn:
        serial = conn.execute(sa.text("SELECT serial FROM lot WHERE tally_id = 'TL1'")).scalar_one()
    written = path.read_text(encoding="utf-8")
    assert "UNKNOWN" not in written and f"Assets:Lots:JT-ZL:{serial}" in written
    assert '"迟到源"' in written  # the issue transaction's payee: the new lot's source
    assert bean_check(path).returncode == 0


def test_every_xlsx_file_is_the_same_whenever_it_is_written(busy, tmp_path):
    """The ledger's tables, a source statement and a plan's workbook carry XLSX_TIME as their created and
    modified properties, not the time of writing: the same content is the same file, so a download's HEAD and
    GET agree on its length (they did not when the clock's second turned between them)."""
    import zipfile

    from openpyxl import load_workbook
    from quota import outfiles
    from quota.planning import plans
    statement.write_statement(busy, "P2026-08", "xlsx", None, str(tmp_path / "s.xlsx"), "en")
    table_export.write_tables(busy, "xlsx", str(tmp_path / "t.xlsx"))
    plans.write_plan_files(plans.run_plan(busy, time_limit=5), str(tmp_path / "plan"))
    for path in (tmp_path / "s.xlsx", tmp_path / "t.xlsx", tmp_path / "plan" / "plan.xlsx"):
        props = load_workbook(path).properties
        assert (props.created, props.modified) == (outfiles.XLSX_TIME, outfiles.XLSX_TIME), path
    first = zipfile.ZipFile(tmp_path / "s.xlsx").read("docProps/core.xml")
    statement.write_statement(busy, "P2026-08", "xlsx", None, str(tmp_path / "s2.xlsx"), "en")
    assert zipfile.ZipFile(tmp_path / "s2.xlsx").read("docProps/core.xml") == first
