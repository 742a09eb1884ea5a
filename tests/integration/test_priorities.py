"""Decimal priorities (a score like 7.5, an economic value) from the project file to the plan, on SQLite and
PostgreSQL: stored exactly (integer ten-thousandths), committed to the chain, exported, verified, and the plan's
objective reported exactly. Odd spellings are refused with a named code (the number grammar's, or priority_range,
priority_places) and nothing written."""
import csv
import itertools
import json
from decimal import Decimal

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from quota import units
from quota.audit import jsonl as export
from quota.audit import table_export, trace as audit
from quota.errors import ValidationFailed
from quota.intake import project_files, tallies
from quota.ledger import projects
from quota.planning import plans, scenario
from quota.rules.book import load_rulebook_file
from quota.store import db
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

runner = CliRunner()
BOOK = load_rulebook_file(str(DATA / "rules.toml"))

# one lot of COD in JT-YT; projects there need COD only, none dated: the plan is a knapsack on one row
TALLY = "T1,S1,甲厂,closure,JT-YT,COD,10,,,t/a,2023,2024-01-01,m,x,R1"
PRIORITIES = {"P1": "7.5", "P2": "3.25", "P3": "4.2501", "P4": "0.0001", "P5": "1,000.25", "P6": "2.50", "P7": "3"}
INCREMENTS = {"P1": "4", "P2": "3", "P3": "2.5", "P4": "0.5", "P5": "3.5", "P6": "1.5", "P7": "2"}


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


def project_file(write_csv, priorities=PRIORITIES, name="p.csv") -> str:
    return write_csv(name, PROJECT_HEADER, [f'{p},项目{p},JT-YT,food,COD,{INCREMENTS[p]},t/a,"{v}",,false,'
                                            for p, v in priorities.items()])


@pytest.fixture
def ledger(engine, write_csv):
    tallies.import_tallies(engine, write_csv("t.csv", TALLY_HEADER, [TALLY]), actor="clerk")
    project_files.import_projects(engine, project_file(write_csv), actor="clerk")
    return engine


@pytest.mark.parametrize("typed, code, why", [
    ("7,5", "number_ambiguous_comma", "ambiguous number '7,5': use a dot for decimals"),
    ("1e3", "number_exponent", "no exponent form"),
    ("nan", "number_not_finite", "not a finite number"),
    ("-3", "priority_range", "greater than 0"),
    ("0", "priority_range", "greater than 0"),
    ("7.12345", "priority_places", "at most 4 decimal places"),
    ("1000000.5", "priority_range", "at most 1,000,000"),
    ("1,000,001", "priority_range", "at most 1,000,000"),
])
def test_an_odd_priority_is_refused_with_a_named_code_and_nothing_written(db_url, write_csv, typed, code, why):
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    path = project_file(write_csv, {"P1": "7.5", "P2": typed})
    engine = db.make_engine(db_url)
    before = snapshot(engine)
    result = quota(db_url, "project", "import", path, "--json")
    assert result.exit_code == 1
    assert "p.csv:3 [priority]" in result.stderr and why in result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "invalid_input"
    assert [(p["row"], p["column"], p["code"]) for p in error["problems"]] == [(3, "priority", code)]
    assert snapshot(engine) == before
    with pytest.raises(ValidationFailed) as info:  # the library names the same rule
        project_files.import_projects(engine, path, actor="clerk")
    assert [(p.row, p.column, p.code) for p in info.value.problems] == [(3, "priority", code)]
    engine.dispose()


def test_the_rows_of_one_project_must_agree_on_its_priority_by_value(engine, write_csv):
    path = write_csv("p.csv", PROJECT_HEADER, ["P1,甲,JT-YT,food,COD,1,t/a,7.50,,false,",
                                               "P1,甲,JT-YT,food,NH3-N,0.1,t/a,7.5,,false,",   # the same value
                                               "P2,乙,JT-YT,food,COD,1,t/a,7.5,,false,",
                                               "P2,乙,JT-YT,food,NH3-N,0.1,t/a,7.5001,,false,"])
    with pytest.raises(ValidationFailed) as info:
        project_files.import_projects(engine, path, actor="clerk")
    assert [(p.row, p.column) for p in info.value.problems] == [(5, "priority")]


def test_decimal_priorities_are_stored_committed_and_verified_exactly(ledger):
    rows = {p["project_id"]: p for p in projects.project_rows(ledger)}
    assert {p: rows[p]["priority"] for p in rows} == {"P1": 7.5, "P2": 3.25, "P3": 4.2501, "P4": 0.0001,
                                                      "P5": 1000.25, "P6": 2.5, "P7": 3}
    assert isinstance(rows["P7"]["priority"], int)  # a whole priority is a JSON integer, as it always was
    with ledger.connect() as conn:
        stored = dict(conn.execute(text("SELECT project_id, priority_e4 FROM project")).all())
        (meta,) = conn.execute(text("SELECT meta FROM txn WHERE kind = 'register'")).scalars().all()
    assert {p: int(v) for p, v in stored.items()} == {"P1": 75000, "P2": 32500, "P3": 42501, "P4": 1,
                                                      "P5": 10002500, "P6": 25000, "P7": 30000}
    committed = {p: f["priority"] for p, f in json.loads(meta)["projects"].items()}
    assert committed == {"P1": "7.5", "P2": "3.25", "P3": "4.2501", "P4": "0.0001", "P5": "1000.25", "P6": "2.5",
                         "P7": 3}
    assert audit.verify(ledger)[1] == []
    # a priority changed behind the chain's back (by a ten-thousandth) is caught, naming the column
    with ledger.begin() as conn:
        conn.execute(text("UPDATE project SET priority_e4 = 75001 WHERE project_id = 'P1'"))
    problems = audit.verify(ledger)[1]
    assert (problems[0].source, problems[0].column) == ("project P1", "priority")
    assert "'7.5001'" in problems[0].message and "'7.5'" in problems[0].message


def test_the_database_refuses_a_priority_out_of_bounds_or_not_whole_ten_thousandths(ledger):
    # out of bounds: a CHECK on both engines; a fraction: SQLite's trigger (SQLite would store a REAL, where
    # PostgreSQL's BIGINT holds only integers)
    odd = ("7.5",) if ledger.dialect.name == "sqlite" else ()
    for value in ("0", "-10000", "10000000001", *odd):
        with pytest.raises(Exception) as info:
            with ledger.begin() as conn:
                conn.execute(text(f"UPDATE project SET priority_e4 = {value} WHERE project_id = 'P1'"))
        assert "priority_e4" in str(info.value) or "ck_project_priority_e4" in str(info.value), value


def test_exports_carry_decimal_priorities_exactly(ledger, tmp_path):
    path = tmp_path / "ledger.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        export.write_jsonl(ledger, fh)
    assert export.verify_export(str(path))[1] == []
    table_export.write_tables(ledger, "csv", str(tmp_path / "csv"))
    with open(tmp_path / "csv" / "projects.csv", encoding="utf-8-sig", newline="") as fh:
        got = {r["project_id"]: r["priority"] for r in csv.DictReader(fh)}
    assert got == {"P1": "7.5", "P2": "3.25", "P3": "4.2501", "P4": "0.0001", "P5": "1000.25", "P6": "2.5", "P7": "3"}
    assert table_export.verify_tables(str(tmp_path / "csv"))[1] == []
    import pyarrow.parquet as pq
    table_export.write_tables(ledger, "parquet", str(tmp_path / "pq"))
    table = pq.read_table(tmp_path / "pq" / "projects.parquet")
    values = dict(zip(table.column("project_id").to_pylist(), table.column("priority").to_pylist()))
    assert values["P3"] == Decimal("4.2501") and values["P4"] == Decimal("0.0001") and values["P7"] == Decimal(3)
    assert str(table.schema.field("priority").type) == "decimal128(11, 4)"


def brute_force(ledger, plan) -> Decimal:
    """The best total priority by trying every subset: one (COD, key) row, no dates, so a subset fits when its
    requirements fit in the supply."""
    (group,) = [g for g in plan["groups"] if g["pollutant"] == "COD"]
    rows = projects.project_rows(ledger)
    need = {p["project_id"]: p["needs"][0]["required_g"] for p in rows}
    value = {p["project_id"]: units.priority_from_json(p["priority"]) for p in rows}
    assert sum(need.values()) > group["supply_g"]  # the supply binds
    best = Decimal(0)
    for size in range(len(rows) + 1):
        for subset in itertools.combinations(need, size):
            if sum(need[p] for p in subset) <= group["supply_g"]:
                best = max(best, sum((value[p] for p in subset), Decimal(0)))
    return best


def test_the_plan_reports_its_objective_exactly_through_the_library_and_the_cli(ledger, db_url):
    plan = plans.run_plan(ledger)
    best = brute_force(ledger, plan)
    assert plan["status"] == "optimal" and Decimal(plan["objective_exact"]) == best
    funded = sum((units.priority_from_json(f["priority"]) for f in plan["funded"]), Decimal(0))
    assert funded == best and Decimal(repr(plan["objective"])) == best
    result = quota(db_url, "plan", "run", "--json")
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout, parse_float=Decimal)  # read as decimals, the numbers are exact
    assert Decimal(shown["objective_exact"]) == best == shown["objective"]
    assert {f["project_id"]: f["priority"] for f in shown["funded"]} == \
        {f["project_id"]: units.priority_from_json(f["priority"]) for f in plan["funded"]}
    text_out = quota(db_url, "plan", "show", shown["plan_id"])
    assert f"objective {best}" in text_out.stdout


def test_a_scenario_project_takes_a_decimal_priority_and_refuses_odd_ones(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\n[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\npriority = 7.5\n'
                    'needs = { COD = "1" }\n[[projects]]\nproject_id = "X2"\nzone = "JT-YT"\npriority = "2.25"\n'
                    'needs = { COD = "1" }\n[[projects]]\nproject_id = "X3"\nzone = "JT-YT"\npriority = 4\n'
                    'needs = { COD = "1" }\n', encoding="utf-8")
    sc = scenario.load_scenario(str(path), BOOK)
    assert [p.priority for p in sc.projects] == [Decimal("7.5"), Decimal("2.25"), 4]
    for typed, code in (('"7,5"', "number_ambiguous_comma"), ("0", "priority_range"), ("1.00001", "priority_places"),
                        ('"nan"', "number_not_finite"), ("-2", "priority_range"), ("2000000", "priority_range"),
                        ("true", "wrong_type")):
        path.write_text(f'[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\npriority = {typed}\n'
                        'needs = { COD = "1" }\n', encoding="utf-8")
        with pytest.raises(ValidationFailed) as info:
            scenario.load_scenario(str(path), BOOK)
        assert [(p.column, p.code) for p in info.value.problems] == [("projects[1].priority", code)], typed
