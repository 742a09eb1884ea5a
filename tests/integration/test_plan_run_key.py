"""`plans.run_plan(key=...)`: the workspace's plan form (and the API's Idempotency-Key) stores one plan per key; a
repeat returns the first plan without solving again; the same key for another request is refused."""
import pytest

from quota.errors import IdempotencyConflict
from quota.intake import project_files, tallies
from quota.planning import plans
from quota.store import roles
from tests.conftest import DATA, ENGINES


@pytest.fixture
def book(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
    return engine


def test_a_plan_run_with_a_key_stores_one_plan_and_replays_it(book, monkeypatch):
    first = plans.run_plan(book, time_limit=5, key="web-1")
    assert first["replayed"] is False
    solved = []
    monkeypatch.setattr(plans.milp, "solve", lambda *a, **k: solved.append(1))  # a replay does not solve
    again = plans.run_plan(book, time_limit=5, key="web-1")
    assert solved == [] and again["replayed"] is True and again["plan_id"] == first["plan_id"]
    assert again["funded"] == first["funded"]
    with pytest.raises(IdempotencyConflict):
        plans.run_plan(book, time_limit=7, key="web-1")  # another request under the same key
    assert [p["plan_id"] for p in plans.list_plans(book)["plans"]] == [first["plan_id"]]


def test_plan_run_key_from_the_cli_replays_and_writes_the_first_plans_files(book, db_url, tmp_path):
    import json
    from typer.testing import CliRunner
    from cli.main import app
    runner = CliRunner()
    args = ["--db", db_url, "plan", "run", "--time-limit", "5", "--key", "cli-1", "--json"]
    first = json.loads(runner.invoke(app, args).stdout)
    r = runner.invoke(app, [*args, "--out", str(tmp_path / "again")])
    again = json.loads(r.stdout)
    assert again["replayed"] is True and again["plan_id"] == first["plan_id"]
    assert (tmp_path / "again" / "plan.xlsx").exists()
    assert len(plans.list_plans(book)["plans"]) == 1


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_the_planner_role_runs_a_plan_with_a_key(book):
    from tests.integration.test_roles import as_role
    roles.create_roles(book)
    planner = as_role(book, "quota_planner")
    first = plans.run_plan(planner, time_limit=5, key="k-1")
    assert plans.run_plan(planner, time_limit=5, key="k-1")["plan_id"] == first["plan_id"]
    planner.dispose()
