"""The web workspace in a real browser: Playwright driving Debian's chromium (its own browser download is not
available here) against `quota serve` on 127.0.0.1, started and stopped by the test. Screenshots are kept
in the test's tmp_path on failure."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import DATA
from tests.e2e.test_report import CHROMIUM, needs_chromium

runner = CliRunner()
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(db_url, tmp_path):
    """`quota serve` on a fresh database with the sample data, a clerk and an auditor; stopped afterwards."""
    for args in (["init", "--rules", str(DATA / "rules.toml")], ["tally", "import", str(DATA / "tallies.csv")],
                 ["project", "import", str(DATA / "projects.csv")]):
        r = runner.invoke(app, ["--db", db_url, *args])
        assert r.exit_code == 0, r.output
    for name, role in (("wang", "clerk"), ("zhao", "auditor"), ("li", "planner")):
        r = runner.invoke(app, ["--db", db_url, "user", "add", name, "--role", role, "--password-stdin"],
                          input=PASSWORD + "\n")
        assert r.exit_code == 0, r.output
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--db", db_url, "serve", "--host", "127.0.0.1",
                             "--port", str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(base + "/login", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("quota serve did not start: " + (tmp_path / "server.log").read_text()[-2000:])
            time.sleep(0.3)
    try:
        yield base, db_url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser_page(tmp_path, request):
    needs_chromium()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        context = browser.new_context(locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(30000)
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        yield page, errors
        if getattr(request.node, "rep_call", None) is None or request.node.rep_call.failed:
            try:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"screenshot kept: {tmp_path / 'failure.png'}")
            except Exception:
                pass
        context.close()
        browser.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pragma: no cover - lets the fixture see the outcome
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def sign_in(page, base, name):
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login")
    page.wait_for_url(base + "/")


def test_a_clerk_signs_in_reserves_and_approves_and_an_auditor_sees_no_write_buttons(server, browser_page):
    base, db_url = server
    page, errors = browser_page
    sign_in(page, base, "wang")
    assert "总览" in page.content()  # Chinese from the browser's language
    # the overview's numbers are `quota balance` (per pollutant, summed over matching keys)
    cli = json.loads(runner.invoke(app, ["--db", db_url, "balance", "--json"]).stdout)["rows"]
    shown = page.locator("#balance tr[data-pollutant='COD'] td:nth-child(3)").all_inner_texts()
    from decimal import Decimal
    cod = next(r for r in cli if r["pollutant"] == "COD")
    assert sum(Decimal(x) for x in shown) == Decimal(cod["available"])
    # reserve: preview, then confirm
    page.goto(base + "/projects/P2026-01")
    page.click("#reserve")
    page.wait_for_selector("#preview")
    assert page.locator("#preview tr").count() >= 5  # header + COD, NH3-N, TP, VOCS draws
    page.dblclick("#confirm")  # a double click posts the form twice, with one key: one reservation
    page.wait_for_url(base + "/projects/P2026-01")
    assert "已预留 P2026-01" in page.inner_text("#flash")
    page.reload()
    trace = json.loads(runner.invoke(app, ["--db", db_url, "trace", "P2026-01", "--json"]).stdout)
    assert [h["kind"] for h in trace["history"]].count("reserve") == 1
    # approve with the document number
    page.fill("#approve-form input[name=doc]", "金环审[2026]12号")
    page.click("#approve")
    page.wait_for_url(base + "/projects/P2026-01")
    assert "金环审[2026]12号" in page.inner_text("#flash")
    actors = page.locator("#history .actor").all_inner_texts()
    assert actors[-2:] == ["wang", "wang"]
    trace = json.loads(runner.invoke(app, ["--db", db_url, "trace", "P2026-01", "--json"]).stdout)
    assert trace["state"] == "approved" and [h["kind"] for h in trace["history"]][-2:] == ["reserve", "approve"]
    # switch to English
    page.click("#lang-en")
    page.wait_for_load_state()
    assert "Sources of the quota" in page.content()
    page.click("form[action='/logout'] button")
    page.wait_for_url(base + "/login")
    # the auditor reads the same project and has no write button
    sign_in(page, base, "zhao")
    page.goto(base + "/projects/P2026-01")
    for button in ("#reserve", "#approve", "#release", "#cancel"):
        assert page.locator(button).count() == 0
    assert page.locator("#no-actions").count() == 1
    assert errors == []  # no console errors (a CSP violation would be one)
    r = runner.invoke(app, ["--db", db_url, "verify"])
    assert r.exit_code == 0, r.output


def test_a_planner_uploads_a_bad_then_a_good_tally_file_runs_a_plan_and_applies_it(server, browser_page, tmp_path):
    base, db_url = server
    page, errors = browser_page
    sign_in(page, base, "li")
    header = (DATA / "tallies.csv").read_text(encoding="utf-8").splitlines()[0]
    bad = tmp_path / "bad.csv"
    bad.write_text(header + "\nT-W1,S-W1,新关闭企业,closure,JT-YT,COD,abc,,,t/a,2024,2026-01-15,m,Lab,R-1\n",
                   encoding="utf-8")
    page.goto(base + "/import/tallies")
    page.set_input_files("#upload-form input[type=file]", str(bad))
    page.click("#upload")
    page.wait_for_selector("#problems")
    row = page.locator("#problems tr.problem").first.inner_text()
    assert "2" in row and "baseline_actual" in row  # row 2, column baseline_actual
    assert page.locator("#confirm").count() == 0
    good = tmp_path / "good.csv"
    good.write_text(header + "\nT-W1,S-W1,新关闭企业,closure,JT-YT,COD,3.0,,,t/a,2024,2026-01-15,m,Lab,R-1\n",
                    encoding="utf-8")
    page.set_input_files("#upload-form input[type=file]", str(good))
    page.click("#upload")
    page.wait_for_selector("#dry-run")
    page.click("#confirm")
    page.wait_for_url(base + "/lots")
    assert "已入库 1 条测算" in page.inner_text("#flash")
    # run a plan and apply it
    page.goto(base + "/plans")
    page.fill("#run-plan input[name=time_limit]", "5")
    page.click("#run")
    page.wait_for_selector("#funded")
    assert page.locator("svg").count() >= 1
    page.click("#apply")
    page.wait_for_selector("#flash")
    assert "已执行方案" in page.inner_text("#flash")
    assert page.locator("#apply").count() == 0  # applied: no second button
    plans = json.loads(runner.invoke(app, ["--db", db_url, "plan", "list", "--json"]).stdout)["plans"]
    assert plans[-1]["applied_at"] and plans[-1]["actor"] == "li"
    assert [e for e in errors if "422" not in e] == []  # the refused file's page is a 422, on purpose
