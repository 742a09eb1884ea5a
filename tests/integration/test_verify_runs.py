"""Every verify of the database is recorded (verify_run, migration 0016), whichever front end ran it: the CLI's
`quota verify`, the workspace's Audit → Verify, the API; the overview's "last verified" is the latest."""
import json

import pytest
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace
from quota.store import roles
from tests.conftest import DATA, ENGINES

runner = CliRunner()


def test_a_verify_from_the_cli_is_recorded_with_its_actor_and_head(db_url):
    assert runner.invoke(app, ["--db", db_url, "init", "--rules", str(DATA / "rules.toml")]).exit_code == 0
    assert runner.invoke(app, ["--db", db_url, "tally", "import", str(DATA / "tallies.csv")]).exit_code == 0
    from quota.store import db
    engine = db.make_engine(db_url)
    assert trace.last_verification(engine) is None
    r = runner.invoke(app, ["--db", db_url, "--actor", "zhao", "verify", "--json"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    last = trace.last_verification(engine)
    assert (last["actor"], last["ok"], last["head_seq"], last["head_hash"], last["problems"]) == (
        "zhao", True, summary["transactions"], summary["head"], 0)
    trace.verify_and_record(engine, "li")
    assert trace.last_verification(engine)["actor"] == "li"  # the latest run
    # a failing run is recorded as failed
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE balance SET amount_g = amount_g + 1 WHERE account = (SELECT min(account) FROM balance)")
    summary, problems = trace.verify_and_record(engine, "wang")
    assert problems and trace.last_verification(engine)["ok"] is False
    assert trace.last_verification(engine)["problems"] == len(problems)
    engine.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_every_least_privilege_role_records_its_verify_and_changes_none(engine):
    from tests.integration.test_roles import as_role
    roles.create_roles(engine)
    for role in roles.ROLES:
        other = as_role(engine, role)
        assert trace.verify_and_record(other, role)[1] == []
        assert trace.last_verification(other)["actor"] == role
        with other.connect() as conn, pytest.raises(Exception, match="permission denied"):
            conn.exec_driver_sql("DELETE FROM verify_run")
        other.dispose()
