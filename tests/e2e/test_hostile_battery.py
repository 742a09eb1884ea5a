"""The hostile battery: bad files, bad options, bad paths, through the CLI, in English, in Chinese and
with --json, on both engines. Each case must end with exit code 1 (a refusal) or 2 (a usage error), print no
traceback, say a single refusal in one stderr line (in Chinese under QUOTA_LANG=zh), print the error object on
stdout under --json, and leave the database exactly as it was."""
from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from cli.main import app
from quota.intake import project_files, tallies
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

runner = CliRunner()
CJK = re.compile(r"[\u4e00-\u9fff]")
# commands that take --json: the battery runs each of their cases a third time with it
JSON_COMMANDS = ("tally import", "project import", "project list", "balance", "reserve", "approve", "release",
                 "cancel", "expire", "revoke", "plan run", "plan show", "plan list", "plan apply", "plan outlook",
                 "verify", "trace", "rules show")
RULES = (DATA / "rules.toml").read_text(encoding="utf-8")


def _files(tmp: Path) -> dict[str, str]:
    """The hostile files, by name -> path."""
    made: dict[str, str] = {}

    def text(name: str, body: str, encoding: str = "utf-8") -> None:
        path = tmp / name
        path.write_bytes(body.encode(encoding))
        made[name] = str(path)

    (tmp / "adir").mkdir()
    made["adir"] = str(tmp / "adir")
    (tmp / "a_file").write_text("x", encoding="utf-8")
    made["a_file"], made["under_a_file"] = str(tmp / "a_file"), str(tmp / "a_file" / "out")
    sqlite3.connect(tmp / "other.db").execute("CREATE TABLE t (x)").connection.close()
    made["other.db"] = str(tmp / "other.db")
    # rulebooks
    text("zones_int.toml", "zones = [1]\n" + RULES.replace("[[zones]]", "[[ignored]]"))
    text("pollutants_int.toml", "pollutants = [1]\n" + RULES.replace("[[pollutants]]", "[[ignored]]"))
    text("rule_int.toml", RULES.replace("[ratios]\n", "[ratios]\nrule = [1]\n", 1).replace("[[ratios.rule]]",
                                                                                          "[[ignored]]"))
    for old, new, name in (("life_years", "life_year", "life_year"), ("discount", "dicount", "dicount"),
                           ("non_attainment = [", "non_attainmnet = [", "non_attainmnet"),
                           ("discount = 0.0", "discount = nan", "discount_nan")):
        assert old in RULES
        text(f"rules_{name}.toml", RULES.replace(old, new, 1))
    text("rules_gbk.toml", RULES, "gb18030")
    text("rules_syntax.toml", RULES + "\n[broken\n")
    # scenarios
    for name, body in {
        "lots_int": "lots = 5\n", "lots_list": "lots = [1]\n", "rules_int": "rules = 5\n",
        "candidates_table": '[candidates]\nid = "C1"\n',
        "cost_nan": '[[candidates]]\nid = "C1"\nzone = "JT-YT"\ncost = nan\nreductions = {COD = 1}\n',
        "budget_inf": "[measures]\nbudget = inf\n", "ratio_nan": "[rules]\nratio_default = nan\n",
        "dup_lots": '[[lots]]\nid = "A"\nzone = "JT-YT"\npollutant = "COD"\namount = 1\n' * 2,
        "must_fund_string": '[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\nmust_fund = "false"\nneeds = {COD = 1}\n',
        "remove_string": 'remove_projects = "P2026-04"\n',
        "ratio_rule_pollutant": '[[rules.ratio_rule]]\nratio = 2\npollutant = "XYZ"\n',
        "ratio_rule_key": '[[rules.ratio_rule]]\nratio = 2\npolutant = "COD"\n',
        "top_key": 'lot = []\n', "priority_zero": '[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\npriority = 0\n'
                                                 'needs = {COD = 1}\n',
        "no_needs": '[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\n',
        "dup_projects": '[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\nneeds = {COD = 1}\n' * 2,
        "mode": '[measures]\nmode = "fast"\n',
    }.items():
        text(f"sc_{name}.toml", body)
    text("sc_gbk.toml", 'name = "情景"\n', "gb18030")
    # exports
    text("bad_utf8.jsonl", "{\"type\": \"header\"}\n", "utf-16")
    text("malformed.jsonl", "{x\n")
    text("empty.jsonl", "")
    text("bad.beancount", "plugin \"x\"\n", "utf-16")
    # intake
    text("t_gbk_garbage.csv", "", "utf-8")
    (tmp / "t_gbk_garbage.csv").write_bytes(b"\xff\xfe\x00\x00garbage\x81")
    text("t_empty.csv", "")
    text("t.ods", "x")
    text("t_unknown_col.csv", TALLY_HEADER + ",junk\n")
    rows = [f"B{i},S{i},name,closure,JT-YT,COD,-1,,,t/a,2020,2024-01-01,m,a,R{i}" for i in range(150)]
    text("t_150_bad.csv", "\n".join([TALLY_HEADER, *rows]) + "\n")
    text("p_bad.csv", PROJECT_HEADER + "\nP9,名,NOWHERE,chem,COD,0,t/a,x,2027-13-01,maybe,0.5\n")
    from openpyxl import Workbook
    wb = Workbook()
    wb.active.append(TALLY_HEADER.split(","))
    wb.save(tmp / "t.xlsx")
    made["t.xlsx"] = str(tmp / "t.xlsx")
    return made


def _cases(f: dict[str, str]) -> list[list[str]]:
    missing = str(Path(f["adir"]) / "missing")
    cases = [
        # rulebooks
        ["init", "--rules", missing + ".toml"], ["init", "--rules", f["adir"]], ["rules", "load", missing],
        ["rules", "load", f["adir"]],
        *[["rules", "load", f[n]] for n in f if n.startswith("rules_") or n.endswith("_int.toml")],
        # scenarios
        *[["plan", "run", "--scenario", f[n]] for n in f if n.startswith("sc_")],
        ["plan", "run", "--scenario", missing + ".toml"], ["plan", "outlook", "--scenario", f["sc_must_fund_string.toml"]],
        # verify --export
        ["verify", "--export", missing + ".jsonl"], ["verify", "--export", f["bad_utf8.jsonl"]],
        ["verify", "--export", f["malformed.jsonl"]], ["verify", "--export", f["empty.jsonl"]],
        ["verify", "--export", f["adir"]], ["verify", "--export", f["bad.beancount"]],
        ["verify", "--export", missing + ".beancount"],
        # outputs that cannot be written (nothing stored: plan run --out stores no plan)
        ["export", "--format", "jsonl", "--out", f["under_a_file"]],
        ["export", "--format", "csv", "--out", f["under_a_file"]],
        ["export", "--format", "xlsx", "--out", f["under_a_file"] + ".xlsx"],
        ["export", "--format", "beancount", "--out", f["under_a_file"]],
        ["export", "--format", "jsonl", "--out", f["other.db"]],
        ["report", "--html", f["under_a_file"] + ".html"], ["plan", "run", "--out", f["under_a_file"]],
        ["plan", "run", "--out", f["a_file"]], ["trace", "P2026-01", "--format", "html", "--out", f["under_a_file"]],
        # databases and the demo
        ["--db", "notaurl", "balance"], ["--db", "mysql://user@host/db", "balance"],
        ["demo", "--data", missing],
        # options
        ["plan", "run", "--solver", "gurobi"], ["plan", "run", "--time-limit", "-5"], ["plan", "run", "--gap", "nan"],
        ["plan", "run", "--gap", "1"], ["plan", "outlook", "--years", "0"], ["balance", "--by", "colour"],
        ["balance", "--pollutant", "XYZ"], ["balance", "--zone", "NOWHERE"], ["balance", "--as-of", "yesterday"],
        ["revoke", "COD-2022-00001", "--memo", ""], ["revoke", "NO-SUCH-LOT", "--memo", "x"],
        ["approve", "P2026-01", "--doc", ""], ["approve", "P2026-01", "--doc", "X"],
        ["reserve", "NOPE"], ["reserve", "P2026-01\u200b"], ["reserve", "P2026-01", "--date", "2099-01-01"],
        ["reserve", "P2026-01", "--key", ""], ["reserve", "P2026-04"], ["reserve", "P2026-01", "--pollutant", "PB"],
        ["release", "P2026-01"], ["trace", "NOPE"], ["plan", "show", "PLAN-9999"], ["plan", "apply", "PLAN-9999"],
        ["--lang", "fr", "balance"], ["--lock-timeout", "-1", "balance"], ["expire", "--as-of", "2099-13-01"],
        # intake
        ["tally", "import", missing + ".csv"], ["tally", "import", f["adir"]],
        *[["tally", "import", f[n]] for n in f if n.startswith("t_") or n == "t.ods"],
        ["tally", "import", f["t.xlsx"], "--sheet", "NOPE"], ["tally", "import", f["t.xlsx"]],
        ["project", "import", f["p_bad.csv"]], ["project", "import", missing + ".csv"],
        # usage errors (exit 2): click's exception types and quota's own option checks
        ["balance", "--nope"], ["reserve"], ["plan", "run", "--time-limit", "abc"], ["--actor"],
        ["nosuchcmd"], ["balance", "extra"], ["trace", "P2026-01", "--format", "pdf"],
        ["trace", "P2026-01", "--format", "xlsx"], ["export", "--format", "pdf", "--out", missing],
        ["--lock-timeout", "abc", "balance"], ["balance", "--by", "colour", "--json"],
        # a database that does not answer: the driver's own text is third-party detail
        ["--db", "postgresql+psycopg://nobody@127.0.0.1:1/none", "balance"],
        ["--db", "sqlite:///" + missing + "/q.db", "balance"],
    ]
    return cases


QUOTED = re.compile(r"“[^”]*”|'[^']*'|`[^`]*`|\"[^\"]*\"")
WORD = r"[A-Za-z]*[a-z][A-Za-z]*"  # a word with a lower-case letter: not OPTIONS, nor a character's Unicode name
ENGLISH = re.compile(rf"{WORD}(?:[ ,;:]+{WORD}){{2,}}")


def _english_left(line: str) -> str:
    """English words left in a line of Chinese output once quoted third-party detail (“…”, '…', `…`), a path and
    the usage syntax (用法：quota plan run [OPTIONS]) are taken out: three English words in a row is a sentence.
    (Under zh, quota's own words are Chinese; what stays English is a third-party's text, shown quoted.)"""
    if line.startswith("用法："):
        return ""
    text = QUOTED.sub("", line)
    text = " ".join(w for w in text.split() if "/" not in w)
    found = ENGLISH.search(text)
    return found.group(0) if found else ""


def _one_case(url: str, args: list[str], mode: str) -> list[str]:
    """What is wrong with one run of a hostile case (empty when it is refused well)."""
    env = {"QUOTA_LANG": "zh"} if mode == "zh" else {"QUOTA_LANG": "en"}
    argv = args if args[0] == "--db" else ["--db", url, "--actor", "tester", *args]
    result = runner.invoke(app, argv + (["--json"] if mode == "json" else []), env=env)
    out, err = result.stdout, result.stderr
    where = f"{mode}: quota {' '.join(args)}"
    wrong = []
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        return [f"{where}: raised {type(result.exception).__name__}: {result.exception}"]
    if "Traceback" in out + err or "internal error" in err or "内部错误" in err:
        wrong.append(f"{where}: a traceback or an internal error: {err.strip()[:300]}")
    if result.exit_code not in (1, 2):
        wrong.append(f"{where}: exit code {result.exit_code}")
    if mode == "zh":
        wrong += [f"{where}: English in Chinese output: {line!r}" for line in (out + err).splitlines()
                  if _english_left(line)]
    if result.exit_code != 1:
        return wrong  # a usage error: its usage text (checked above under zh)
    # the diagnostics of how a file was read (encoding, sheet) are not the refusal
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("read ", "已按", "已读取"))]
    code = None
    if mode == "json":
        try:
            code = json.loads(out)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            if not (args[0] == "verify" and json.loads(out).get("problems")):
                wrong.append(f"{where}: stdout is not the error object: {out[:200]!r}")
    if code == "internal_error":
        wrong.append(f"{where}: internal error")
    problems = lines and (lines[0].startswith(("refused:", "已拒绝：", "verification FAILED", "校验失败")))
    if problems:
        shown = len(lines) - 1
        if not 1 <= shown <= 101:
            wrong.append(f"{where}: {shown} problem lines")
    elif len(lines) != 1:
        wrong.append(f"{where}: {len(lines)} stderr lines for one refusal: {err.strip()[:300]}")
    if mode == "zh" and not all(CJK.search(line) for line in lines[:2]):
        wrong.append(f"{where}: not in Chinese: {err.strip()[:200]}")
    return wrong


def test_the_hostile_battery_is_refused_cleanly_in_both_languages_and_writes_nothing(engine, db_url, tmp_path):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    files = _files(tmp_path)
    cases = _cases(files)
    assert len(cases) >= 60
    before = snapshot(engine)
    wrong: list[str] = []
    for args in cases:
        command = " ".join(args[:2])
        modes = ["en", "zh"] + (["json"] if not args[0].startswith("-") and command.startswith(JSON_COMMANDS) else [])
        for mode in modes:
            wrong += _one_case(db_url, args, mode)
        if snapshot(engine) != before:
            wrong.append(f"quota {' '.join(args)}: the database changed")
            before = snapshot(engine)
    assert not list(Path(files["adir"]).iterdir()), "a refused output left a file"
    assert not wrong, "\n".join(wrong)


def test_a_long_file_is_refused_in_a_screenful_and_json_lists_every_problem(engine, db_url, tmp_path):
    files = _files(tmp_path)
    r = runner.invoke(app, ["--db", db_url, "tally", "import", files["t_150_bad.csv"]])
    lines = r.stderr.splitlines()
    assert r.exit_code == 1 and lines[0].startswith("refused: 150 problem(s)") and len(lines) == 102
    assert "50 more problem(s)" in lines[-1]
    r = runner.invoke(app, ["--db", db_url, "tally", "import", files["t_150_bad.csv"], "--json"])
    problems = json.loads(r.stdout)["error"]["problems"]
    assert len(problems) == 150 and {p["code"] for p in problems} == {"negative_amount"}
    assert problems[0]["row"] == 2 and problems[0]["facts"] == {"value": "-1"}
