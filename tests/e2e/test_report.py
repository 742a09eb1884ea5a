"""The HTML report in a real browser, bilingual output, and progress only on terminals."""
import json
import os
import pty
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.report import catalogue
from tests.conftest import DATA

runner = CliRunner()
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture
def planned(db_url):
    for args in (["init", "--rules", str(DATA / "rules.toml")], ["tally", "import", str(DATA / "tallies.csv")],
                 ["project", "import", str(DATA / "projects.csv")],
                 ["reserve", "P2026-08", "--date", "2026-11-29"], ["plan", "run", "--as-of", "2026-11-29"]):
        r = runner.invoke(app, ["--db", db_url, *args])
        assert r.exit_code == 0, r.output
    return db_url


def chromium(*args, timeout=90):
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--enable-logging=stderr", "--v=0"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=timeout)


def needs_chromium():
    """Skip, with the reason, when no Chromium is found; CI (QUOTA_REQUIRE_BROWSER=1, set by .ci/run, which
    installs Debian's chromium) turns that skip into a failure."""
    if CHROMIUM:
        return
    reason = "no chromium found (apt-get install chromium fonts-noto-cjk); the browser test cannot run"
    if os.environ.get("QUOTA_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


def test_report_opens_in_chromium_without_errors_and_is_not_blank(planned, tmp_path):
    needs_chromium()
    page = tmp_path / "report.html"
    r = runner.invoke(app, ["--db", planned, "report", "--html", str(page), "--plan", "PLAN-0001",
                            "--as-of", "2026-11-29"])
    assert r.exit_code == 0, r.output
    html = page.read_text(encoding="utf-8")
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "<script" not in html
    assert "<svg" in html and "P2026-09" in html  # an unfunded project of the plan
    assert "33.9000" in html  # COD supply of the CDH watershed in the balance table
    shot = tmp_path / "shot.png"
    run = chromium(f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                   f"--screenshot={shot}", page.as_uri())
    assert shot.exists(), run.stderr[-2000:]
    console_errors = [l for l in run.stderr.splitlines() if "CONSOLE" in l and ("Error" in l or "Uncaught" in l)]
    assert console_errors == []
    import numpy as np
    from PIL import Image
    px = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    white = int((px == 255).all(axis=1).sum())
    colored = int((px.max(axis=1) - px.min(axis=1) > 60).sum())  # saturated pixels: the bars of the charts
    assert white < 0.97 * len(px), "the screenshot is blank"
    assert colored > 2000, "no chart colours in the screenshot"
    dom = chromium(f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", page.as_uri()).stdout
    assert dom.count("<rect") > 20 and "PLAN-0001" in dom


def test_chinese_report_and_tables(planned, tmp_path):
    page = tmp_path / "zh.html"
    assert runner.invoke(app, ["--db", planned, "--lang", "zh", "report", "--html", str(page)]).exit_code == 0
    html = page.read_text(encoding="utf-8")
    assert "总量指标报告" in html and "金坛区" in html and "化学需氧量" in html
    r = runner.invoke(app, ["--db", planned, "--lang", "zh", "balance"])
    assert "污染物" in r.stdout and "可用" in r.stdout and "总量指标余额" in r.stdout
    r = runner.invoke(app, ["--db", planned, "--lang", "zh", "reserve", "P2026-04", "--date", "2026-11-29"])
    assert r.exit_code == 1 and "无法为 P2026-04 预留指标" in r.stderr and "缺口" in r.stderr


def test_json_is_identical_in_both_languages(planned):
    for args in (["balance", "--json", "--as-of", "2026-11-29"], ["balance", "--by", "lot", "--json"],
                 ["trace", "P2026-08", "--json"], ["plan", "show", "PLAN-0001", "--json"]):
        en = runner.invoke(app, ["--db", planned, "--lang", "en", *args])
        zh = runner.invoke(app, ["--db", planned, "--lang", "zh", *args])
        assert en.exit_code == zh.exit_code == 0
        assert json.loads(en.stdout) == json.loads(zh.stdout)


def test_every_message_exists_in_both_languages_with_the_same_placeholders():
    for key, entry in catalogue.MESSAGES.items():
        assert set(entry) == set(catalogue.LANGS), key
        names = {lang: set(re.findall(r"{(\w+)}", text)) for lang, text in entry.items()}
        assert names["en"] == names["zh"], key
    assert all(v and v != k for k, v in catalogue.HEADERS.items())


def test_cli_messages_come_from_the_catalogue():
    used = set()
    for path in (Path(__file__).resolve().parents[2] / "cli").glob("*.py"):
        used |= set(re.findall(r"""msg\(["'](\w+)["']""", path.read_text(encoding="utf-8")))
    assert used and used <= set(catalogue.MESSAGES), used - set(catalogue.MESSAGES)


def _import_with_stderr(url, path, tty: bool) -> str:
    exe = str(Path(sys.executable).with_name("quota"))
    args = [exe, "--db", url, "tally", "import", str(path)]
    if not tty:
        return subprocess.run(args, capture_output=True, text=True, timeout=120).stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=slave, env={**os.environ, "COLUMNS": "100"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=120)
    os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


def test_progress_shows_on_a_terminal_and_never_in_piped_output(db_url, tmp_path):
    assert runner.invoke(app, ["--db", db_url, "init", "--rules", str(DATA / "rules.toml")]).exit_code == 0
    header = (DATA / "tallies.csv").read_text(encoding="utf-8").splitlines()[0]
    rows = [f"G{i},S{i},源{i},closure,JT-YT,COD,1.5,,,t/a,2020,2025-01-01,m,x,R{i}" for i in range(30_000)]
    for name, tty in (("a.csv", False), ("b.csv", True)):
        (tmp_path / name).write_text(header + "\n" + "\n".join(r.replace("G", name[0]).replace(",S", f",{name[0]}S")
                                                               for r in rows) + "\n", encoding="utf-8")
    piped = _import_with_stderr(db_url, tmp_path / "a.csv", tty=False)
    assert "━" not in piped and "\x1b[" not in piped and "validate" not in piped
    on_tty = _import_with_stderr(db_url, tmp_path / "b.csv", tty=True)
    assert "validate" in on_tty or "write" in on_tty, on_tty[-500:]
