"""Outputs never destroy data: every file a command writes appears complete or not at all,
never over a database; each export carries its own end; one snapshot per table export."""
import csv
import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace as audit
from quota.audit import beancount_export
from quota.audit import jsonl as export
from quota import outfiles
from quota.intake import project_files
from quota.ledger import operations
from quota.audit import table_export
from quota.intake import tallies
from quota.errors import Refused
from quota.store import db
from tests.conftest import DATA, TALLY_HEADER, snapshot

D = dt.date
runner = CliRunner()
FORMATS = {"jsonl": "l.jsonl", "beancount": "l.beancount", "xlsx": "l.xlsx", "csv": "csvdir", "parquet": "pqdir"}


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


@pytest.fixture
def ledger(engine, db_url, pin_today):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    pin_today(D(2026, 12, 31))
    operations.reserve(engine, "P2026-08", actor="a", date=D(2026, 11, 29))
    operations.approve(engine, "P2026-08", doc="金环审〔2026〕31号", actor="b", date=D(2026, 12, 2))
    operations.reserve(engine, "P2026-03", actor="a", date=D(2026, 12, 2))
    return db_url


def chain_length(engine) -> int:
    return audit.verify(engine)[0]["transactions"]


def digest(path: Path) -> str:
    """sha256 of a file, or of every file of a folder (names and contents)."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
        if f.is_file():
            h.update(f.name.encode() + b"\0" + f.read_bytes())
    return h.hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def sqlite_file(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE precious (x)")
    con.execute("INSERT INTO precious VALUES ('keep me')")
    con.commit()
    con.close()
    return path


# --------------------------------------------------------------------------- never over a database

@pytest.mark.parametrize("command", ["jsonl", "beancount", "xlsx", "csv", "parquet", "report", "trace-md",
                                     "trace-xlsx", "plan"])
def test_an_output_over_a_database_is_refused_and_the_database_intact(ledger, engine, tmp_path, command):
    """On SQLite the target is the ledger's own file; on both engines, any other SQLite database."""
    before, n = snapshot(engine), chain_length(engine)
    targets = [sqlite_file(tmp_path / "other.db")]
    if ledger.startswith("sqlite"):
        targets.append(Path(ledger.removeprefix("sqlite:///")))
    for target in targets:
        kept = target.read_bytes() if target.name == "other.db" else None
        args = {"report": ["report", "--html", str(target)],
                "trace-md": ["trace", "P2026-08", "--format", "md", "--out", str(target)],
                "trace-xlsx": ["trace", "P2026-08", "--format", "xlsx", "--out", str(target)],
                "plan": ["plan", "run", "--as-of", "2026-12-01", "--out", str(target)]}.get(
            command, ["export", "--format", command, "--out", str(target)])
        result = quota(ledger, *args)
        assert result.exit_code == 1, result.output
        assert "database" in result.stderr and "Traceback" not in result.output
        assert target.read_bytes()[:16] == outfiles.SQLITE_MAGIC
        if kept is not None:
            assert target.read_bytes() == kept
    assert snapshot(engine) == before  # also: the refused plan run stored no plan
    summary, problems = audit.verify(engine)
    assert problems == [] and summary["transactions"] == n


@pytest.mark.parametrize("command", ["jsonl", "xlsx", "report"])
def test_an_output_to_a_pipe_is_refused_not_waited_on_nor_replaced(ledger, engine, tmp_path, command):
    """`--out /dev/stdout` or a FIFO: the database check used to open it for reading (waiting forever on an empty
    pipe), then the rename into place replaced the pipe (or /dev/null) by a regular file."""
    import os
    import stat
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    keep = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # a writer and 16 bytes: the old code does not block here
    os.write(keep, b"not a database!!")
    before = snapshot(engine)
    try:
        args = {"report": ["report", "--html", str(fifo)]}.get(command, ["export", "--format", command, "--out",
                                                                         str(fifo)])
        result = quota(ledger, *args)
        assert result.exit_code == 1, result.output
        assert "not a regular file" in result.stderr and "Traceback" not in result.output
        assert stat.S_ISFIFO(os.stat(fifo).st_mode)
        assert leftovers(tmp_path) == []
    finally:
        os.close(keep)
    assert snapshot(engine) == before


def test_standard_streams_and_devices_are_refused_as_targets(tmp_path):
    """`--out /dev/stdout` with stdout redirected to a file: os.stat says regular file, and the rename into place
    replaced the /dev/stdout symlink itself by a regular file (for every later process). Checked only: writing
    would damage the machine running the test when the check is missing."""
    import os
    (tmp_path / "mine.jsonl").symlink_to("/proc/self/fd/1")  # a user's own link to stdout (a file under pytest)
    (tmp_path / "chain.jsonl").symlink_to(tmp_path / "mine.jsonl")  # a link to that link
    (tmp_path / "fds").symlink_to("/proc/self/fd")  # a folder link: fds/1 is stdout
    assert os.path.isfile(tmp_path / "mine.jsonl")  # what the check saw when it resolved the link to its end only
    for target in ("/dev/stdout", "/dev/null", "/dev/fd/1", "/proc/self/fd/1", tmp_path / "mine.jsonl",
                   tmp_path / "chain.jsonl", tmp_path / "fds" / "1"):
        with pytest.raises(Refused) as info:
            outfiles.check_target(target)
        assert info.value.code == "output_not_regular"
        assert info.value.facts["path"] == str(target)  # the name the user gave
    assert outfiles.check_target(tmp_path / "plain.jsonl") == tmp_path / "plain.jsonl"
    (tmp_path / "real.jsonl").write_text("", encoding="utf-8")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "real.jsonl")  # a link to a plain file stays allowed
    assert outfiles.check_target(tmp_path / "link.jsonl") == tmp_path / "link.jsonl"


@pytest.mark.parametrize("args", [["balance", "--by", "lot", "--json"], ["balance", "--by", "lot"]])
def test_a_closed_stdout_pipe_ends_quietly_with_exit_0(ledger, args):
    """`quota balance --by lot --json | head -c 100`: the reader goes away; quota stops quietly with exit 0 on
    both engines (it used to report the broken pipe as a refusal, exit 1). A real pipe, closed before quota
    writes, so the write fails every time."""
    import subprocess
    import sys
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--db", ledger, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0 and err == "", err


def test_a_pipe_given_as_an_input_file_is_named_as_given(ledger, engine, tmp_path):
    """`quota tally import <(cat f)` names /dev/fd/63, not "63"."""
    import os
    fifo = tmp_path / "feed.csv"
    os.mkfifo(fifo)
    for command in (["tally", "import"], ["project", "import"]):
        result = quota(ledger, *command, str(fifo))
        assert result.exit_code == 1 and f"{fifo}: is a pipe or a device" in result.stderr, result.stderr


def test_the_library_refuses_the_database_as_a_target(ledger, engine, tmp_path):
    target = sqlite_file(tmp_path / "x.sqlite")
    with pytest.raises(Refused, match="SQLite database"):
        table_export.write_tables(engine, "xlsx", str(target))
    with pytest.raises(Refused, match="SQLite database"):
        with outfiles.atomic_file(target) as fh:
            fh.write("x")
    if ledger.startswith("sqlite"):
        db_file = ledger.removeprefix("sqlite:///")
        for name in (db_file, db_file + "-wal", db_file + db.WRITER_LOCK_SUFFIX):
            with pytest.raises(Refused, match="the ledger's database file"):
                outfiles.check_target(name, engine)


# --------------------------------------------------------------------------- failures leave the old file

@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_failed_export_leaves_the_previous_export_byte_identical(ledger, tmp_path, db_url, fmt):
    target = tmp_path / FORMATS[fmt]
    assert quota(ledger, "export", "--format", fmt, "--out", str(target)).exit_code == 0
    before = digest(target)
    assert len(before) == 64 and (target.is_dir() or target.stat().st_size > 0)
    wrong = (f"sqlite:///{tmp_path / 'empty.db'}" if db_url.startswith("sqlite")
             else db_url.rsplit("%3D", 1)[0] + "%3Dno_such_schema")
    result = quota(wrong, "export", "--format", fmt, "--out", str(target))
    assert result.exit_code == 1 and "error" in result.stderr
    assert digest(target) == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_a_crash_mid_write_leaves_no_partial_target(ledger, engine, tmp_path, monkeypatch, fmt):
    """The writer raises after some rows are written: a new target does not appear, an old one stays."""
    real_lines, real_table = export.export_lines, table_export.iter_table

    def dying_lines(*args, **kwargs):
        for i, rec in enumerate(real_lines(*args, **kwargs)):
            if i == 5:
                raise OSError("No space left on device")
            yield rec

    def dying_table(bind, name, as_of):
        rows = real_table(bind, name, as_of)
        if name == "postings":  # transactions (and a part of postings) already written
            yield next(rows)
            raise OSError("No space left on device")
        yield from rows

    for attempt in ("new", "over an old export"):
        target = tmp_path / FORMATS[fmt]
        before = digest(target) if target.exists() else None
        with monkeypatch.context() as m:
            m.setattr(export, "export_lines", dying_lines)
            m.setattr(table_export, "iter_table", dying_table)
            result = quota(ledger, "export", "--format", fmt, "--out", str(target))
        assert result.exit_code == 1 and "No space left on device" in result.stderr, result.output
        if before is None:
            assert not target.exists(), attempt
        else:
            assert digest(target) == before, attempt
        assert leftovers(tmp_path) == [], attempt
        assert quota(ledger, "export", "--format", fmt, "--out", str(target)).exit_code == 0


UNWRITABLE = "<h1>half</h1>\n\ud800"  # a lone surrogate: the write fails part-way (as on a full disk)


def _broken_xlsx(s, path):
    Path(path).write_bytes(b"PK\x03\x04 half a workbook")
    raise OSError("No space left on device")


def test_a_statement_and_the_report_are_written_whole_or_not_at_all(ledger, tmp_path, monkeypatch):
    from quota.report import html as report
    from quota.audit import statement
    for fmt, name, broken in (("md", "to_markdown", lambda s: UNWRITABLE), ("html", "to_html", lambda s: UNWRITABLE),
                              ("xlsx", "to_xlsx", _broken_xlsx)):
        target = tmp_path / f"s.{fmt}"
        target.write_text("the old statement", encoding="utf-8")
        with monkeypatch.context() as m:
            m.setattr(statement, name, broken)
            assert quota(ledger, "trace", "P2026-08", "--format", fmt, "--out", str(target)).exit_code != 0
        assert target.read_text(encoding="utf-8") == "the old statement", fmt
        assert leftovers(tmp_path) == [], fmt
        assert quota(ledger, "trace", "P2026-08", "--format", fmt, "--out", str(target)).exit_code == 0
        assert target.stat().st_size > 100
    page = tmp_path / "report.html"
    page.write_text("the old report", encoding="utf-8")
    with monkeypatch.context() as m:
        m.setattr(report, "build", lambda *a, **k: UNWRITABLE)
        assert quota(ledger, "report", "--html", str(page)).exit_code != 0
    assert page.read_text(encoding="utf-8") == "the old report"
    wrong = f"sqlite:///{tmp_path / 'empty.db'}"
    assert quota(wrong, "report", "--html", str(page)).exit_code == 1
    assert page.read_text(encoding="utf-8") == "the old report"
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- folders: complete set or absent

def test_an_export_folder_is_replaced_whole_but_a_foreign_folder_is_refused(ledger, tmp_path):
    target = tmp_path / "csv"
    assert quota(ledger, "export", "--format", "csv", "--out", str(target)).exit_code == 0
    (target / "postings.csv").write_text("stale", encoding="utf-8")
    assert quota(ledger, "export", "--format", "csv", "--out", str(target)).exit_code == 0  # an earlier export
    assert (target / "postings.csv").read_text(encoding="utf-8-sig").startswith("txn_seq,")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes", encoding="utf-8")
    result = quota(ledger, "export", "--format", "parquet", "--out", str(mine))
    assert result.exit_code == 1 and "notes.txt" in result.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_manifest_catches_a_truncated_missing_or_extra_file(ledger, engine, tmp_path, fmt):
    n = chain_length(engine)
    target = tmp_path / fmt
    assert quota(ledger, "export", "--format", fmt, "--out", str(target)).exit_code == 0
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    assert {f["name"] for f in manifest["files"]} == {f"{t}.{fmt}" for t in table_export.TABLES}
    assert manifest["head"]["seq"] == n and len(manifest["head"]["hash"]) == 64
    rows = {f["name"]: f["rows"] for f in manifest["files"]}
    assert rows[f"transactions.{fmt}"] == n
    ok = quota(ledger, "verify", "--export", str(target))
    assert ok.exit_code == 0 and f"{n} transactions" in ok.stdout
    head = manifest["head"]["hash"]
    assert quota(ledger, "verify", "--export", str(target), "--expect-head", head).exit_code == 0
    assert quota(ledger, "verify", "--export", str(target), "--expect-head", "0" * 64).exit_code == 1
    postings = target / f"postings.{fmt}"
    whole = postings.read_bytes()
    postings.write_bytes(whole[: len(whole) // 2])
    bad = quota(ledger, "verify", "--export", str(target))
    assert bad.exit_code == 1 and f"postings.{fmt}" in bad.stderr and "truncated" in bad.stderr
    postings.unlink()
    bad = quota(ledger, "verify", "--export", str(target))
    assert bad.exit_code == 1 and "missing" in bad.stderr
    postings.write_bytes(whole)
    (target / "extra.csv").write_text("x", encoding="utf-8")
    bad = quota(ledger, "verify", "--export", str(target), "--json")
    assert bad.exit_code == 1 and json.loads(bad.stdout)["problems"][0]["source"].endswith("extra.csv")
    (target / "extra.csv").unlink()
    (target / "manifest.json").unlink()
    bad = quota(ledger, "verify", "--export", str(target))
    assert bad.exit_code == 1 and "manifest.json" in bad.stderr


def test_a_csv_row_edited_with_its_hash_recomputed_in_the_manifest_is_caught_by_the_head(ledger, tmp_path):
    """The manifest's sha256 is not a signature: dropping the last transaction and rewriting the manifest
    is caught because the transactions table no longer ends at the stated chain head."""
    target = tmp_path / "csv"
    assert quota(ledger, "export", "--format", "csv", "--out", str(target)).exit_code == 0
    path = target / "transactions.csv"
    lines = path.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    path.write_text("".join(lines[:-1]), encoding="utf-8-sig")
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    for f in manifest["files"]:
        if f["name"] == "transactions.csv":
            f.update(rows=f["rows"] - 1, sha256=outfiles.sha256_file(path), bytes=path.stat().st_size)
    (target / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    bad = quota(ledger, "verify", "--export", str(target))
    assert bad.exit_code == 1 and "chain head" in bad.stderr


# --------------------------------------------------------------------------- Beancount carries its end

def test_a_beancount_export_ends_with_a_record_and_every_truncation_is_caught(ledger, engine, tmp_path):
    from tests.integration.test_export import bean_check
    path = tmp_path / "ledger.beancount"
    assert quota(ledger, "export", "--format", "beancount", "--out", str(path)).exit_code == 0
    assert bean_check(path).returncode == 0
    ok = quota(ledger, "verify", "--export", str(path))
    assert ok.exit_code == 0, ok.output
    assert f"{chain_length(engine)} transactions" in ok.stdout
    whole = path.read_bytes()
    assert whole.rstrip().endswith(b'final_hash: "' + json.loads(
        quota(ledger, "verify", "--json").stdout)["head"].encode() + b'"')
    # every line boundary of the last 40 lines and 40 points spread over the file
    cuts = [i + 1 for i, b in enumerate(whole) if b == 10][-40:-1] + [len(whole) * k // 41 for k in range(1, 41)]
    cuts += [len(whole) - 1, len(whole) - 2]
    for cut in sorted(set(cuts)):
        path.write_bytes(whole[:cut])
        summary, problems = beancount_export.verify_beancount(str(path))
        assert problems, f"a file cut at byte {cut} of {len(whole)} was accepted"
    # cut just before the end record: bean-check alone accepts the file, verify --export does not
    path.write_bytes(whole[:whole.rindex(b"\n", 0, whole.index(b' custom "quota-end"')) + 1])
    assert bean_check(path).returncode == 0
    bad = quota(ledger, "verify", "--export", str(path))
    assert bad.exit_code == 1 and "truncated" in bad.stderr
    path.write_bytes(whole.replace(b"  postings: ", b"  postings: 1"))
    summary, problems = beancount_export.verify_beancount(str(path))
    assert any(p.column == "postings" for p in problems)


# --------------------------------------------------------------------------- one snapshot

@pytest.mark.parametrize("fmt", ["csv", "xlsx", "parquet"])
def test_a_table_export_reads_one_snapshot_while_an_import_commits(ledger, engine, tmp_path, write_csv,
                                                                   monkeypatch, fmt):
    late = write_csv("late.csv", TALLY_HEADER, [f"TL{i},SL{i},迟到源{i},closure,JT-ZL,COD,2.0,,,t/a,2020,"
                                                f"2026-12-01,m,x,RL{i}" for i in range(3)])
    real, n = table_export.iter_table, chain_length(engine)

    def racing(bind, name, as_of):
        rows = list(real(bind, name, as_of))
        if name == "transactions":  # the import commits between the reads of two tables
            tallies.import_tallies(engine, late, actor="clerk")
        yield from rows

    monkeypatch.setattr(table_export, "iter_table", racing)
    target = tmp_path / ("l.xlsx" if fmt == "xlsx" else fmt)
    table_export.write_tables(engine, fmt, str(target))
    tables = {}
    for name in ("transactions", "postings", "lots", "balances"):
        if fmt == "csv":
            with open(target / f"{name}.csv", encoding="utf-8-sig", newline="") as fh:
                tables[name] = list(csv.DictReader(fh))
        elif fmt == "parquet":
            import pyarrow.parquet as pq
            tables[name] = pq.read_table(target / f"{name}.parquet").to_pylist()
        else:
            from openpyxl import load_workbook
            ws = load_workbook(target)[name]
            rows = list(ws.iter_rows(values_only=True))
            tables[name] = [dict(zip(rows[0], r)) for r in rows[1:]]
    seqs = {int(r["seq"]) for r in tables["transactions"]}
    assert seqs == set(range(1, n + 1))  # the snapshot: before the import
    assert {int(r["txn_seq"]) for r in tables["postings"]} <= seqs
    assert not any(str(r["tally_id"]).startswith("TL") for r in tables["lots"])
    assert sum(int(r["amount_g"]) for r in tables["balances"]) == 0
    assert chain_length(engine) > n  # the import did commit


KILLED_EXPORT = """
import sys, time
from quota.audit import table_export
real = table_export.iter_table
def slow(bind, name, as_of):
    if name == "postings":
        print("writing", flush=True)
        time.sleep(60)
    yield from real(bind, name, as_of)
table_export.iter_table = slow
from cli.main import app
app(["--db", sys.argv[1], "export", "--format", sys.argv[2], "--out", sys.argv[3]])
"""


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_killed_folder_export_leaves_the_old_set_whole(ledger, tmp_path, fmt):
    """SIGKILL while the tables are being written: the earlier export stays, complete and verifiable."""
    import os
    import signal
    import subprocess
    import sys
    from tests.conftest import ROOT
    target = tmp_path / fmt
    assert quota(ledger, "export", "--format", fmt, "--out", str(target)).exit_code == 0
    before = digest(target)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, ledger, fmt, str(target)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "writing"
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(f".{fmt}.")]
        assert partial and (partial[0] / f"transactions.{fmt}").exists()  # it was half way through
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert digest(target) == before
    assert quota(ledger, "verify", "--export", str(target)).exit_code == 0


def test_an_xlsx_file_written_again_later_is_the_same_file(tmp_path):
    """outfiles.save_xlsx: the same content makes the same bytes whenever it is written (a normal and a
    write-only workbook): not only the created/modified properties, but the archive's own time of each part,
    which zipfile takes from the clock (and from the sheets' temporary files), are fixed."""
    import time

    from openpyxl import Workbook
    from quota import outfiles

    def write(path, write_only):
        book = Workbook(write_only=write_only)
        sheet = book.create_sheet("t") if write_only else book.active
        sheet.append(["name", "amount"])
        sheet.append(["甲", 12])
        outfiles.save_xlsx(book, path)
        return path.read_bytes()

    first = [write(tmp_path / f"a{w}.xlsx", w) for w in (False, True)]
    time.sleep(2.1)  # the zip format keeps times in 2 s steps
    assert [write(tmp_path / f"b{w}.xlsx", w) for w in (False, True)] == first
