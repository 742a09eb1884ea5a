"""The command line as a user runs it: exit codes, stdout/stderr, and effects checked through the library."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace as audit
from quota.ledger import balances
from quota.store import db
from tests.conftest import DATA, TALLY_HEADER, snapshot

runner = CliRunner()


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


@pytest.fixture
def loaded(db_url):
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    assert quota(db_url, "tally", "import", str(DATA / "tallies.csv")).exit_code == 0
    assert quota(db_url, "project", "import", str(DATA / "projects.csv")).exit_code == 0
    return db_url


def test_balance_json_has_the_contract_shape(loaded):
    result = quota(loaded, "balance", "--json", "--as-of", "2026-11-29")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["as_of"] == "2026-11-29"
    cod = {r["pollutant"]: r for r in data["rows"]}["COD"]
    assert cod["available_g"] == 79_100_000 and cod["available"] == "79.1000" and cod["unit"] == "t/a"
    assert {"reserved_g", "allocated_g"} <= set(cod)
    lots = json.loads(quota(loaded, "balance", "--by", "lot", "--json").stdout)["rows"]
    assert len(lots) == 23
    assert {"lot", "zone", "tally_id", "source_id", "issued_g", "expires"} <= set(lots[0])


def test_reserve_approve_trace_verify(loaded):
    r = quota(loaded, "reserve", "P2026-03", "--date", "2026-11-29", "--key", "r1", "--json")
    assert r.exit_code == 0, r.output
    again = quota(loaded, "reserve", "P2026-03", "--date", "2026-11-29", "--key", "r1")
    assert again.exit_code == 0 and "nothing new was written" in again.stdout
    assert quota(loaded, "approve", "P2026-03", "--doc", "金环审〔2026〕7号", "--date", "2026-11-30").exit_code == 0
    trace = json.loads(quota(loaded, "trace", "P2026-03", "--json").stdout)
    assert trace["project_id"] == "P2026-03"
    assert {d["state"] for d in trace["draws"]} == {"allocated"}
    assert {d["pollutant"]: 0 for d in trace["draws"]}.keys() == {"COD", "NOX", "SO2"}
    assert all(d["report_no"].startswith("JTHB-") and d["tally_id"] and d["source_id"] for d in trace["draws"])
    assert sum(d["amount_g"] for d in trace["draws"] if d["pollutant"] == "NOX") == 10_000_000
    human = quota(loaded, "trace", "P2026-03")
    assert "JTHB-CS-2022-052" in human.stdout
    v = quota(loaded, "verify")
    assert v.exit_code == 0 and "ledger verified" in v.stdout


def test_refusals_exit_1_with_the_reason_on_stderr(loaded):
    r = quota(loaded, "reserve", "P2026-04", "--date", "2026-11-29")
    assert r.exit_code == 1 and "TP short by" in r.stderr and r.stdout == ""
    r = quota(loaded, "approve", "P2026-05", "--doc", "X")
    assert r.exit_code == 1 and "reserve it before approving" in r.stderr
    r = quota(loaded, "trace", "NOPE")
    assert r.exit_code == 1 and "no project 'NOPE'" in r.stderr
    r = quota(loaded, "balance", "--as-of", "yesterday")
    assert r.exit_code == 2


def test_bad_tally_file_lists_every_problem_and_writes_nothing(loaded, write_csv):
    engine = db.make_engine(loaded)
    before = snapshot(engine)
    path = write_csv("bad.csv", TALLY_HEADER, [
        "B1,S91,甲厂,closure,JT-YT,COD,1.5,,0.4,t/a,2020,2024-01-01,m,x,R1",
        "B2,S92,乙厂,upgrade,JT-YT,SO2,1.5,,2.0,kg/a,2020,2024-02-30,m,x,R2",
    ])
    r = quota(loaded, "tally", "import", path)
    assert r.exit_code == 1
    for needle in ("bad.csv", "post", "unit", "effective_date", "nothing was written"):
        assert needle in r.stderr
    assert snapshot(engine) == before
    dry = quota(loaded, "tally", "import", path, "--dry-run")
    assert dry.exit_code == 1 and snapshot(engine) == before
    engine.dispose()


def test_verify_exits_1_when_the_ledger_was_tampered_with(loaded):
    engine = db.make_engine(loaded)
    with engine.begin() as conn:
        conn.execute(text("UPDATE balance SET amount_g = amount_g - 1 WHERE kind = 'lot' "
                          "AND lot = 'COD-2022-00001'"))
    engine.dispose()
    r = quota(loaded, "verify")
    assert r.exit_code == 1 and "replay of postings" in r.stderr


def test_rules_show_and_reload(loaded, tmp_path):
    shown = json.loads(quota(loaded, "rules", "show", "--json").stdout)
    assert shown["version"] == 1 and shown["ratios"]["non_attainment"] == "2.0"
    changed = tmp_path / "rules.toml"
    changed.write_text((DATA / "rules.toml").read_text(encoding="utf-8").replace("life_years = 5", "life_years = 3"),
                       encoding="utf-8")
    assert quota(loaded, "rules", "load", str(changed)).exit_code == 0
    assert json.loads(quota(loaded, "rules", "show", "--json").stdout)["version"] == 2
    dropped = tmp_path / "dropped.toml"
    dropped.write_text((DATA / "rules.toml").read_text(encoding="utf-8").replace('code = "PB"', 'code = "HG"'),
                       encoding="utf-8")
    r = quota(loaded, "rules", "load", str(dropped))
    assert r.exit_code == 1 and "'PB' is used in the ledger" in r.stderr


@pytest.mark.slow
def test_quota_demo_runs_as_a_real_process(tmp_path):
    exe = Path(sys.executable).with_name("quota")
    env = {k: v for k, v in os.environ.items() if k != "QUOTA_DB"}
    proc = subprocess.run([str(exe), "demo", "--today", "2026-11-29"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "verified" in proc.stdout and "P2026-01" in proc.stdout and "PLAN-0001" in proc.stdout
    assert "<svg" in (tmp_path / "quota-demo-report.html").read_text(encoding="utf-8")
    engine = db.make_engine(f"sqlite:///{tmp_path / 'quota-demo.db'}")
    lots = balances.balance(engine, by="lot")["rows"]
    assert len(lots) == 23
    assert audit.trace(engine, "P2026-01")["state"] == "approved"
    assert audit.verify(engine)[1] == []
    last = audit.last_verification(engine)  # its `quota verify` recorded, as the command's is (the web's overview)
    assert last is not None and last["ok"] and last["head_hash"] == db.read_one(engine, db.HEAD_SQL)[1]
    # a second run starts afresh rather than piling onto the first
    again = subprocess.run([str(exe), "demo", "--today", "2026-11-29"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and len(balances.balance(engine, by="lot")["rows"]) == 23
    engine.dispose()


def test_a_refusal_under_json_prints_the_error_object_on_stdout(loaded):
    before = snapshot(db.make_engine(loaded))
    r = quota(loaded, "reserve", "P2026-04", "--date", "2026-11-29", "--json")
    assert r.exit_code == 1
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "insufficient_quota" and error["project_id"] == "P2026-04"
    short = {s["pollutant"]: s for s in error["short"]}["TP"]
    assert (short["key"], short["short_g"], short["required_g"] - short["eligible_g"]) == ("CDH", 100_000, 100_000)
    r = quota(loaded, "reserve", "NOPE", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "not_found"
    assert snapshot(db.make_engine(loaded)) == before


def test_an_unexpected_error_is_one_line_and_a_traceback_file(loaded, monkeypatch):
    from quota.audit import trace as audit_module

    def boom(*a, **k):
        raise RuntimeError("solver exploded")

    monkeypatch.setattr(audit_module, "trace", boom)
    r = quota(loaded, "trace", "P2026-01")
    assert r.exit_code == 1 and "Traceback" not in r.output
    line = [x for x in r.output.splitlines() if "internal error" in x]
    assert len(line) == 1 and "RuntimeError: solver exploded" in line[0]
    path = line[0].split("the traceback is in ")[1].split(" ")[0]
    assert "RuntimeError" in Path(path).read_text()


def _demo_output(tmp_path, monkeypatch, calendar):
    """`quota demo` run in-process while the calendar says `calendar`; volatile parts (booking times reach the
    chain's head hash, the solver's seconds) are masked."""
    import datetime as dt
    import re
    import types
    from quota import clock

    class Calendar(dt.date):
        fromisoformat = staticmethod(dt.date.fromisoformat)  # real dates for everything but the calendar

        @classmethod
        def today(cls):
            return calendar

    monkeypatch.setattr(clock, "dt", types.SimpleNamespace(date=Calendar))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("QUOTA_TODAY", raising=False)
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / f"demo.db{suffix}").unlink(missing_ok=True)
    r = runner.invoke(app, ["--db", f"sqlite:///{tmp_path / 'demo.db'}", "--actor", "demo", "demo"])
    assert r.exit_code == 0, r.output
    out = re.sub(r"head [0-9a-f]{16}", "head <hash>", r.stdout)
    return re.sub(r"in [0-9.]+ s", "in <t> s", out)


def test_the_demo_tells_the_same_story_on_any_calendar_date(tmp_path, monkeypatch):
    import datetime as dt
    today = _demo_output(tmp_path, monkeypatch, dt.date(2026, 11, 30))
    later = _demo_output(tmp_path, monkeypatch, dt.date(2031, 6, 1))
    assert "2026-11-30" in today and "2031" not in later
    assert today == later


@pytest.mark.parametrize("args,words", [
    (["plan", "run", "--solver", "gurobi"], "unknown solver"),
    (["plan", "run", "--time-limit", "-5"], "time limit"),
    (["plan", "run", "--gap", "nan"], "gap"),
    (["balance", "--pollutant", "XYZ"], "unknown pollutant"),
    (["balance", "--zone", "NOWHERE"], "unknown zone"),
])
def test_bad_options_are_refused_in_one_line_and_nothing_is_stored(loaded, args, words):
    before = snapshot(db.make_engine(loaded))
    r = quota(loaded, *args, "--json")
    assert r.exit_code == 1 and words in r.stderr and "Traceback" not in r.output
    assert json.loads(r.stdout)["error"]["code"] in ("bad_option", "unknown_code")
    assert snapshot(db.make_engine(loaded)) == before


def test_codes_in_filters_are_case_insensitive_like_the_imports(loaded):
    lower = json.loads(quota(loaded, "balance", "--pollutant", "nox", "--zone", "jt-zl", "--by", "zone",
                             "--json").stdout)["rows"]
    upper = json.loads(quota(loaded, "balance", "--pollutant", "NOX", "--zone", "JT-ZL", "--by", "zone",
                             "--json").stdout)["rows"]
    assert lower == upper and lower and lower[0]["zone"] == "JT-ZL"
    wide = json.loads(quota(loaded, "balance", "--pollutant", "ＮＯＸ", "--zone", " ｊｔ-ｚｌ ", "--by", "zone",
                            "--json").stdout)["rows"]
    assert wide == upper  # full-width, as reserve and the imports read them (NFKC): one normal form of a code
    r = quota(loaded, "balance", "--pollutant", "NO\u200bX", "--json")
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "unknown_code"


def test_refusals_in_chinese_are_rendered_from_their_code_and_facts(loaded):
    zh = runner.invoke(app, ["--db", loaded, "--lang", "zh", "reserve", "P2026-04", "--date", "2026-11-29"])
    assert zh.exit_code == 1 and "无法为 P2026-04 预留指标" in zh.stderr and "TP 在 CDH 缺口 0.1000 t/a" in zh.stderr
    late = runner.invoke(app, ["--db", loaded, "--lang", "zh", "reserve", "P2026-04", "--date", "2099-01-01"])
    assert late.exit_code == 1 and "晚于今天" in late.stderr and "after today" not in late.stderr
    bad = runner.invoke(app, ["--db", loaded, "--lang", "zh", "balance", "--pollutant", "XYZ"])
    assert bad.exit_code == 1 and "未知污染物 'XYZ'" in bad.stderr


@pytest.mark.parametrize("url", ["notaurl", "mysql://root@127.0.0.1/test", "sqlite:/relative.db"])
def test_a_database_url_quota_cannot_use_is_one_clear_line(url, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["--db", url, "balance", "--json"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert json.loads(r.stdout)["error"]["code"] == "bad_database_url" and "sqlite:///FILE" in r.stderr
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_verify_of_an_empty_database_says_to_init_and_success_lines_go_to_stdout(tmp_path):
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    r = runner.invoke(app, ["--db", url, "verify"])
    assert r.exit_code == 1 and "quota init" in r.stderr and "no such table" not in r.output
    r = runner.invoke(app, ["--db", url, "init", "--rules", str(DATA / "rules.toml")])
    assert r.exit_code == 0 and "initialised" in r.stdout and r.stderr == ""
    r = runner.invoke(app, ["--db", f"sqlite:///{tmp_path / 'fresh.db'}", "demo", "--data", str(tmp_path / "nowhere")])
    assert r.exit_code == 1 and "Traceback" not in r.output and "file not found" in r.stderr


@pytest.mark.parametrize("args", [["balance", "--by", "nonsense", "--json"], ["balance", "--bogus", "--json"],
                                  ["plan", "run", "--json", "--time-limit", "x"]])
def test_a_usage_error_under_json_is_a_json_error_with_exit_2(tmp_path, args):
    """The console script: --json always means JSON on stdout, usage errors (exit 2) included; the usage text
    stays on stderr, and without --json nothing is printed on stdout."""
    exe = Path(sys.executable).with_name("quota")
    env = {**os.environ, "QUOTA_DB": f"sqlite:///{tmp_path / 'q.db'}"}
    proc = subprocess.run([str(exe), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    error = json.loads(proc.stdout)["error"]
    assert error["code"] == "usage" and error["message"] and "Usage: quota" in proc.stderr
    assert "Traceback" not in proc.stderr
    plain = subprocess.run([str(exe), *[a for a in args if a != "--json"]], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""


def test_the_language_is_read_in_any_case(engine, db_url):
    r = runner.invoke(app, ["--db", db_url, "balance"], env={"QUOTA_LANG": "ZH"})
    assert r.exit_code == 0 and "Usage" not in r.stderr, r.stderr
