"""The five-year outlook on SQLite and PostgreSQL: it agrees with the ledger and with a stored plan."""
import datetime as dt
import json
from collections import defaultdict

from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from quota.store import db
from quota.planning import outlook
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import projects
from quota.rules import versions
from quota.intake import tallies
from tests.conftest import DATA

DAY = dt.date(2026, 11, 29)


def load(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")


def test_outlook_agrees_with_the_ledger_and_the_plan(engine):
    load(engine)
    out = outlook.outlook(engine, years=5, as_of=DAY)
    plan = plans.run_plan(engine, as_of=DAY)
    assert out["years"] == [2026, 2027, 2028, 2029, 2030]
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        ledger = defaultdict(int)
        for pol, zone, amount, effective, expires in conn.execute(text(
                "SELECT l.pollutant, l.zone, b.amount_g, l.effective_date, l.expires FROM lot l "
                "JOIN balance b ON b.account = 'lot:' || l.serial AND b.lot = l.serial")):
            effective = effective if isinstance(effective, dt.date) else dt.date.fromisoformat(str(effective)[:10])
            expires = expires if expires is None or isinstance(expires, dt.date) else dt.date.fromisoformat(str(expires)[:10])
            if effective <= DAY and (expires is None or expires > DAY):
                ledger[(pol, book.matching_key(pol, zone))] += int(amount)
    draws, demand = defaultdict(int), defaultdict(int)
    for f in plan["funded"]:
        for d in f["draws"]:
            draws[(d["pollutant"], book.matching_key(d["pollutant"], d["zone"]))] += d["amount_g"]
    for p in projects.project_rows(engine):
        for n in p["needs"]:
            demand[(n["pollutant"], book.matching_key(n["pollutant"], p["zone"]))] += n["required_g"]
    groups = {(g["pollutant"], g["key"]): g for g in out["groups"]}
    assert {k for k, v in ledger.items() if v} <= set(groups)
    for key, g in groups.items():
        ys = g["years"]
        assert ys[0]["opening_g"] == ledger.get(key, 0)                           # supply: the ledger
        assert sum(r["allocated_g"] for r in ys) == draws.get(key, 0)             # allocations: the plan
        assert sum(r["demand_g"] for r in ys) + g["later_demand_g"] == demand.get(key, 0)
        assert ys[-1]["closing_g"] == ys[0]["opening_g"] + sum(
            r["effective_g"] - r["allocated_g"] - r["expiring_g"] for r in ys)
    # the plan leaves P2026-04 without TP in the CDH watershed: that key is short in its year
    assert groups[("TP", "CDH")]["first_short_year"] is not None
    shorts = [g["first_short_year"] for g in out["groups"]]
    assert shorts == sorted(shorts, key=lambda y: (y is None, y or 0))  # soonest first


def test_cli_outlook_json_and_table(db_url, engine):
    load(engine)
    runner = CliRunner()
    r = runner.invoke(app, ["--db", db_url, "plan", "outlook", "--as-of", "2026-11-29", "--years", "3", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["years"] == [2026, 2027, 2028] and data["plan"]["status"] == "optimal"
    assert all(len(g["years"]) == 3 for g in data["groups"])
    r = runner.invoke(app, ["--db", db_url, "plan", "outlook", "--as-of", "2026-11-29", "--years", "3"])
    assert r.exit_code == 0 and "First short" in r.stdout and "CDH" in r.stdout
    r = runner.invoke(app, ["--db", db_url, "plan", "outlook", "--years", "0"])
    assert r.exit_code == 1 and "years must be between 1 and 50" in r.output
    r = runner.invoke(app, ["--db", db_url, "plan", "outlook", "--years", "0", "--json"])
    assert r.exit_code == 1 and json.loads(r.stdout)["error"]["code"] == "bad_option"


def test_report_shows_the_outlook_chart(db_url, engine, tmp_path):
    load(engine)
    page = tmp_path / "r.html"
    r = CliRunner().invoke(app, ["--db", db_url, "report", "--html", str(page), "--as-of", "2026-11-29",
                                 "--outlook", "5"])
    assert r.exit_code == 0, r.output
    html = page.read_text(encoding="utf-8")
    assert "Outlook 2026–2030" in html
    section = html[html.index("Outlook 2026–2030"):]
    data = outlook.outlook(engine, years=5, as_of=DAY)
    first = data["groups"][0]  # the soonest short key is drawn first, with its year
    assert f"{first['key']} (↓{first['first_short_year']})" in section
    assert section.count("<rect") == 2 * 5 * len(data["groups"])
    r = CliRunner().invoke(app, ["--db", db_url, "report", "--html", str(page), "--as-of", "2026-11-29"])
    assert "Outlook" not in page.read_text(encoding="utf-8")


def test_outlook_json_stdout_is_clean_in_a_real_process(db_url, engine):
    """The solver prints a banner on file descriptor 1 when first used; stdout must stay pure JSON."""
    import subprocess
    import sys
    load(engine)
    done = subprocess.run([sys.executable, "-m", "cli", "--db", db_url, "plan", "outlook", "--as-of", "2026-11-29",
                           "--years", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["years"] == [2026, 2027]
    done = subprocess.run([sys.executable, "-m", "cli", "--db", db_url, "plan", "run", "--as-of", "2026-11-29",
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"] == "optimal"
