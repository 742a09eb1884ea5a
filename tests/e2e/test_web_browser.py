"""The web workspace in a real browser: Playwright driving Debian's chromium (its own browser download is not
available here) against `quota serve` on 127.0.0.1, started and stopped by the test. Screenshots are kept
in the test's tmp_path on failure."""
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
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
def server(db_url, tmp_path, request):
    """`quota serve` on a fresh database with the sample data, a clerk, an auditor, a planner and an admin;
    stopped afterwards. `@pytest.mark.serve_args(...)` adds options (--public)."""
    marker = request.node.get_closest_marker("serve_args")
    extra = list(marker.args) if marker else []
    for args in (["init", "--rules", str(DATA / "rules.toml")], ["tally", "import", str(DATA / "tallies.csv")],
                 ["project", "import", str(DATA / "projects.csv")]):
        r = runner.invoke(app, ["--db", db_url, *args])
        assert r.exit_code == 0, r.output
    for name, role in (("wang", "clerk"), ("zhao", "auditor"), ("li", "planner"), ("root", "admin")):
        r = runner.invoke(app, ["--db", db_url, "user", "add", name, "--role", role, "--password-stdin"],
                          input=PASSWORD + "\n")
        assert r.exit_code == 0, r.output
    port = free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--db", db_url, "serve", "--host", "127.0.0.1",
                             "--port", str(port), *extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
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


def sign_in(page, base, name, password=PASSWORD):
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", password)
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


def test_an_admin_adds_a_user_makes_and_revokes_a_token_and_resets_a_password(server, browser_page):
    base, db_url = server
    page, errors = browser_page
    sign_in(page, base, "root")
    page.click("nav a[href='/admin']")
    page.wait_for_selector("#users")
    page.fill("form[action='/admin/users'] input[name=name]", "chen")
    page.select_option("form[action='/admin/users'] select[name=role]", "planner")
    page.fill("form[action='/admin/users'] input[name=password]", "chen's long password")
    page.click("form[action='/admin/users'] button")
    page.wait_for_selector("#flash")
    assert "chen" in page.inner_text("#flash") and "chen" in page.inner_text("#users")
    # a token for wang, labelled; shown once, listed without the token, then revoked
    page.fill("form[action='/admin/users/wang/token'] input[name=label]", "夜间导出")
    page.click("form[action='/admin/users/wang/token'] button")
    page.wait_for_selector("#token")
    token = page.inner_text("#token code")
    assert token.startswith("qt_") and "夜间导出" in page.inner_text("#tokens")
    request = urllib.request.Request(base + "/api/v1/balance", headers={"Authorization": f"Bearer {token}"})
    assert urllib.request.urlopen(request, timeout=10).status == 200
    page.goto(base + "/admin")
    assert token not in page.content()
    page.click("#tokens button.revoke-token")
    page.wait_for_selector("#flash")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 401
    # wang's password is reset: wang signs in with the new one only
    page.fill("form[action='/admin/users/wang/password'] input[name=password]", "wang's new password")
    page.click("form[action='/admin/users/wang/password'] button")
    page.wait_for_selector("#flash")
    assert "wang" in page.inner_text("#flash")
    page.click("form[action='/logout'] button")
    page.wait_for_url(base + "/login")
    sign_in(page, base, "wang", "wang's new password")
    assert page.locator("nav a[href='/admin']").count() == 0
    assert page.goto(base + "/admin").status == 403
    assert errors == [e for e in errors if "403" in e]  # the refused admin page only


def test_my_account_changes_my_password_and_signs_out_everywhere(server, browser_page):
    base, db_url = server
    page, errors = browser_page
    sign_in(page, base, "zhao")
    other = page.context.browser.new_context(locale="en-GB").new_page()  # zhao at a second desk
    sign_in(other, base, "zhao")
    assert "Overview" in other.content()
    page.click("#who")
    page.wait_for_selector("#sessions")
    assert page.locator("#sessions tr[data-session]").count() == 2
    page.fill("#password-form input[name=old]", PASSWORD)
    page.fill("#password-form input[name=new]", "zhao's new password")
    page.fill("#password-form input[name=repeat]", "zhao's new password")
    page.click("#change-password")
    page.wait_for_selector("#flash")
    assert "1" in page.inner_text("#flash") and page.locator("#sessions tr[data-session]").count() == 1
    other.goto(base + "/")
    assert other.url.endswith("/login")  # the other desk's session ended
    sign_in(other, base, "zhao", "zhao's new password")
    page.click("#signout-everywhere")
    page.wait_for_url(base + "/login")
    other.goto(base + "/")
    assert other.url.endswith("/login")
    other.context.close()
    assert errors == []


@pytest.mark.serve_args("--public")
def test_the_public_registry_needs_no_sign_in_and_shows_approved_documents(server, browser_page):
    base, db_url = server
    page, errors = browser_page
    for args in (["reserve", "P2026-08"], ["approve", "P2026-08", "--doc", "金环审〔2026〕31号"]):
        r = runner.invoke(app, ["--db", db_url, *args])
        assert r.exit_code == 0, r.output
    page.goto(base + "/login")
    page.click("a[href='/public']")
    page.wait_for_selector("#approved")
    assert "金环审〔2026〕31号" in page.inner_text("#approved") and "P2026-08" in page.inner_text("#approved")
    lots = json.loads(runner.invoke(app, ["--db", db_url, "balance", "--by", "lot", "--json"]).stdout)["rows"]
    assert page.locator("#lots tr").count() == 1 + min(len(lots), 50)
    assert "1 / 1" in page.inner_text(".pager") and page.locator(".pager a.next").count() == 0
    assert "wang" not in page.content() and "P2026-01" not in page.inner_text("#approved")
    page.goto(base + "/")
    assert page.url.endswith("/login")  # everything else needs a sign-in
    assert errors == []
