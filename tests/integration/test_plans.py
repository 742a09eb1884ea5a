"""Plans on SQLite and PostgreSQL: run, shapes, edge cases, scenarios and apply."""
import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace
from quota.ledger import balances
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import projects
from quota.ledger import operations
from quota.intake import tallies
from quota.errors import Refused, ValidationFailed
from tests.conftest import DATA, PROJECT_HEADER, snapshot

DAY = dt.date(2026, 11, 29)


@pytest.fixture
def sample(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    return engine


def test_plan_on_the_sample_has_the_contract_shape_and_is_exact(sample):
    plan = plans.run_plan(sample, as_of=DAY, actor="planner")
    assert plan["status"] == "optimal" and plan["plan_id"] == "PLAN-0001"
    assert plan["objective"] == 28 and plan["bound"] == 28
    for key in ("funded", "unfunded", "shadow_prices", "bound", "objective"):
        assert key in plan
    required = {(p["project_id"], n["pollutant"]): n["required_g"] for p in projects.project_rows(sample)
                for n in p["needs"]}
    lots = {r["lot"]: r for r in balances.balance(sample, by="lot", as_of=None)["rows"]}
    drawn = {}
    for f in plan["funded"]:
        got = {}
        for d in f["draws"]:
            got[d["pollutant"]] = got.get(d["pollutant"], 0) + d["amount_g"]
            drawn[d["lot"]] = drawn.get(d["lot"], 0) + d["amount_g"]
        assert got == {p: g for (pid, p), g in required.items() if pid == f["project_id"]}
    assert all(g <= lots[serial]["available_g"] for serial, g in drawn.items())
    short = {u["project_id"]: u["shortfall_g"] for u in plan["unfunded"]}
    assert short["P2026-09"] == {"VOCS": 12_000_000 - (11_600_000 - 4_000_000)}
    assert short["P2026-04"]["TP"] == 100_000  # no TP at all in the CDH watershed
    assert {(s["pollutant"], s["key"]) for s in plan["shadow_prices"]} >= {("TP", "CDH")}
    assert plans.get_plan(sample, "PLAN-0001")["objective"] == 28


def test_infeasible_must_fund_says_what_is_short(sample, write_csv):
    project_files.import_projects(sample, write_csv("p.csv", PROJECT_HEADER, [
        "MF-1,必保项目,JT-XB,food,TP,0.3,t/a,9,,true,"]), actor="clerk")
    plan = plans.run_plan(sample, as_of=DAY)
    assert plan["status"] == "infeasible"
    assert {"pollutant": "TP", "key": "CDH", "short_g": 300_000, "unit": "t/a", "short": "0.3000"} in plan["short"]


def test_empty_pipeline_and_no_lots(engine, write_csv):
    plan = plans.run_plan(engine, as_of=DAY)
    assert plan["status"] == "optimal" and plan["funded"] == [] and plan["unfunded"] == []
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        "P1,甲,JT-YT,food,COD,2,t/a,1,,false,", "P2,乙,JT-ZL,power,PB,3,kg/a,1,,false,"]), actor="clerk")
    plan = plans.run_plan(engine, as_of=DAY)
    assert plan["funded"] == []
    assert {u["project_id"]: u["shortfall_g"] for u in plan["unfunded"]} == {"P1": {"COD": 2_000_000},
                                                                              "P2": {"PB": 3_000}}


def test_a_project_no_lot_can_match_is_reported_short(sample, write_csv):
    # PB is matched by zone: the only lead lot is in JT-XB, so a JT-ZL project can never be served
    project_files.import_projects(sample, write_csv("p.csv", PROJECT_HEADER, [
        "PB-ZL,铅项目,JT-ZL,battery,PB,1,kg/a,50,,false,"]), actor="clerk")
    plan = plans.run_plan(sample, as_of=DAY)
    assert {u["project_id"]: u["shortfall_g"] for u in plan["unfunded"]}["PB-ZL"] == {"PB": 1_000}


def test_plan_apply_reserves_everything_or_nothing(sample):
    plan = plans.run_plan(sample, as_of=DAY)
    result = plans.apply_plan(sample, plan["plan_id"], actor="clerk", date=DAY)
    assert sorted(result["reserved"]) == sorted(f["project_id"] for f in plan["funded"])
    for f in plan["funded"]:
        held = {(d["lot"], d["pollutant"]): d["amount_g"] for d in trace.trace(sample, f["project_id"])["draws"]}
        assert held == {(d["lot"], d["pollutant"]): d["amount_g"] for d in f["draws"]}
    assert trace.verify(sample)[1] == []
    with pytest.raises(Refused, match="already applied"):
        plans.apply_plan(sample, plan["plan_id"], actor="clerk", date=DAY)


def test_plan_apply_is_refused_when_the_ledger_no_longer_fits(sample):
    plan = plans.run_plan(sample, as_of=DAY)
    funded = {f["project_id"] for f in plan["funded"]}
    assert "P2026-09" not in funded
    operations.reserve(sample, "P2026-02", actor="clerk", date=DAY)  # takes what the plan counted on
    before = snapshot(sample)
    with pytest.raises(Refused, match="no longer fits"):
        plans.apply_plan(sample, plan["plan_id"], actor="clerk", date=DAY)
    assert snapshot(sample) == before


def test_scenario_picks_the_cheapest_measures_and_cannot_be_applied(sample):
    plan = plans.run_plan(sample, scenario_path=str(DATA / "scenario.toml"))
    assert plan["as_of"] == "2026-12-01" and plan["status"] == "optimal"
    assert [c["candidate_id"] for c in plan["candidates"] if c["chosen"]] == ["C-XB-1"] and plan["cost"] == 800_000
    funded = {f["project_id"]: f for f in plan["funded"]}
    listed = set(funded) | {u["project_id"] for u in plan["unfunded"]}
    assert "P2026-04" in funded and "P2026-10" not in listed and len(listed) == 11
    tp = [d for d in funded["P2026-04"]["draws"] if d["pollutant"] == "TP"]
    assert tp == [{"lot": "candidate:C-XB-1:TP", "pollutant": "TP", "amount_g": 100_000, "zone": "JT-XB"}]
    # JT-DC is out of attainment in the scenario: P2026-11 needs NOX at 2:1
    nox = sum(d["amount_g"] for d in funded["P2026-11"]["draws"] if d["pollutant"] == "NOX")
    assert nox == 2_000_000
    with pytest.raises(Refused, match="scenario"):
        plans.apply_plan(sample, plan["plan_id"], actor="clerk")


def test_bad_scenario_lists_every_problem(sample, tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[lots]]\nzone = "NOWHERE"\npollutant = "XX"\namount = -1\nremove_projects = ["P1"]\n'
                    '[measures]\nmode = "fast"\n', encoding="utf-8")
    with pytest.raises(ValidationFailed) as info:
        plans.run_plan(sample, scenario_path=str(path))
    columns = {p.column for p in info.value.problems}
    assert {"lots[1].zone", "lots[1].pollutant", "measures.mode", "lots[1].remove_projects"} <= columns


def test_a_pollutant_named_twice_in_a_scenario_table_is_refused_not_replaced(sample, tmp_path):
    """`COD` and `cod` name one pollutant: the second must not silently replace the first (12 t/a planned as 1)."""
    path = tmp_path / "twice.toml"
    path.write_text('[[projects]]\nproject_id = "P9"\nname = "x"\nzone = "JT-XB"\n'
                    'needs = { COD = 12.0, cod = 1.0 }\n'
                    '[[candidates]]\nid = "C1"\nzone = "JT-XB"\ncost = 1\nreductions = { TP = 0.1, tp = 9.0 }\n',
                    encoding="utf-8")
    before = snapshot(sample)
    with pytest.raises(ValidationFailed) as info:
        plans.run_plan(sample, scenario_path=str(path))
    found = {(p.column, p.code) for p in info.value.problems}
    assert found == {("projects[1].needs.cod", "duplicate_code"), ("candidates[1].reductions.tp", "duplicate_code")}
    assert snapshot(sample) == before


def test_cli_plan_run_json_is_clean_and_out_writes_files(db_url, sample, tmp_path):
    runner = CliRunner()
    r = runner.invoke(app, ["--db", db_url, "plan", "run", "--as-of", "2026-11-29", "--json", "--out",
                            str(tmp_path / "plan")])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)  # nothing but JSON on stdout
    assert data["status"] == "optimal"
    import pandas as pd
    draws = pd.read_csv(tmp_path / "plan" / "draws.csv")
    assert int(draws["amount_g"].sum()) == sum(d["amount_g"] for f in data["funded"] for d in f["draws"])
    assert set(pd.ExcelFile(tmp_path / "plan" / "plan.xlsx").sheet_names) == {"summary", "draws", "unfunded",
                                                                              "shadow_prices"}
    r = runner.invoke(app, ["--db", db_url, "plan", "apply", data["plan_id"], "--date", "2026-11-29"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["--db", db_url, "plan", "apply", data["plan_id"], "--date", "2026-11-29"])
    assert r.exit_code == 1 and "already applied" in r.stderr


def test_plan_list_shows_stored_plans_and_which_are_scenarios(sample, tmp_path):
    from typer.testing import CliRunner
    from cli.main import app
    first = plans.run_plan(sample, as_of=DAY)
    scenario = tmp_path / "s.toml"
    scenario.write_text('remove_projects = ["P2026-01"]\n', encoding="utf-8")
    second = plans.run_plan(sample, as_of=DAY, scenario_path=str(scenario))
    listed = plans.list_plans(sample)["plans"]
    assert [(p["plan_id"], p["scenario"]) for p in listed] == [(first["plan_id"], None),
                                                              (second["plan_id"], "(unnamed)")]
    url = sample.url.render_as_string(hide_password=False).replace("sqlite+quota", "sqlite")
    r = CliRunner().invoke(app, ["--db", url, "plan", "list", "--json"])
    assert r.exit_code == 0 and [p["plan_id"] for p in json.loads(r.stdout)["plans"]] == [first["plan_id"],
                                                                                         second["plan_id"]]


def test_a_cbc_plan_shows_cbcs_own_bound_not_a_gap_against_the_lp_bound(db_url, sample):
    """CBC proves the sample's plan optimal: the plan says optimal with CBC's bound (the objective), not
    "feasible, gap 8.5%" against the LP relaxation's bound."""
    runner = CliRunner()
    r = runner.invoke(app, ["--db", db_url, "plan", "run", "--as-of", "2026-11-29", "--solver", "cbc", "--json"])
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["solver"] == "cbc" and plan["status"] == "optimal"
    assert plan["bound"] == plan["objective"] == 28 and plan["gap"] == 0 and plan["lp_bound"] > 30
