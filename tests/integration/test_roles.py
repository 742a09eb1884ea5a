"""Least-privilege roles on PostgreSQL: what each role can and cannot do."""
import datetime as dt

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from quota import audit, db, plans, projects, quota_ops, roles, tallies
from tests.conftest import DATA, ENGINES


@pytest.fixture
def pg(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("roles are PostgreSQL only")
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    projects.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
    roles.create_roles(engine)
    return engine


def as_role(engine, role):
    url = make_url(str(engine.url.render_as_string(hide_password=False))).set(username=role)
    return db.make_engine(url.render_as_string(hide_password=False))


def denied(fn):
    with pytest.raises(Exception) as info:
        fn()
    return str(info.value)


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_auditor_reads_but_cannot_write(pg):
    auditor = as_role(pg, "quota_auditor")
    assert audit.verify(auditor)[1] == []
    assert audit.balance(auditor)["rows"]
    msg = denied(lambda: quota_ops.reserve(auditor, "P2026-03", actor="quota_auditor", date=dt.date(2026, 11, 29)))
    assert "permission denied" in msg
    auditor.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_clerk_works_the_ledger_but_cannot_edit_it(pg):
    clerk = as_role(pg, "quota_clerk")
    quota_ops.reserve(clerk, "P2026-03", actor="quota_clerk", date=dt.date(2026, 11, 29))
    quota_ops.approve(clerk, "P2026-03", doc="D-1", actor="quota_clerk", date=dt.date(2026, 11, 29))
    for sql in ("UPDATE posting SET amount_g = 0", "DELETE FROM txn", "DELETE FROM balance", "TRUNCATE posting",
                "UPDATE txn SET actor = 'x'"):
        def run(sql=sql):
            with clerk.begin() as conn:
                conn.execute(text(sql))
        msg = denied(run)
        assert "permission denied" in msg or "append-only" in msg, msg
    with clerk.connect() as conn:
        assert conn.execute(text("SELECT actor FROM txn ORDER BY seq DESC LIMIT 1")).scalar_one() == "quota_clerk"
    clerk.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_planner_plans_but_cannot_reserve(pg):
    planner = as_role(pg, "quota_planner")
    plan = plans.run_plan(planner, as_of=dt.date(2026, 11, 29), actor="quota_planner")
    assert plan["status"] == "optimal"
    assert "permission denied" in denied(lambda: plans.apply_plan(planner, plan["plan_id"], actor="quota_planner",
                                                                   date=dt.date(2026, 11, 29)))
    assert "permission denied" in denied(lambda: quota_ops.reserve(planner, "P2026-03", actor="quota_planner",
                                                                    date=dt.date(2026, 11, 29)))
    planner.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_roles_made_before_an_upgrade_can_read_the_tables_it_adds(engine):
    """Roles granted at revision 0004, then `quota db upgrade`: the clerk reads the new matching table."""
    from alembic import command
    from quota import migrate
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0004")
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    projects.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
    with engine.begin() as conn:  # roles as an earlier quota granted them (no default privileges)
        for sql in roles.roles_sql(roles.current_schema(engine)):
            if not sql.startswith("ALTER DEFAULT"):
                conn.exec_driver_sql(sql.replace("%", "%%"))
    migrate.upgrade(engine)
    clerk = as_role(engine, "quota_clerk")
    r = quota_ops.reserve(clerk, "P2026-03", actor="quota_clerk", date=dt.date(2026, 11, 29))
    assert r["state"] == "reserved"
    clerk.dispose()


def test_owner_cannot_update_or_delete_ledger_rows_either(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    for sql in ("UPDATE posting SET amount_g = 0", "DELETE FROM posting", "UPDATE tally SET report_no = 'x'",
                "DELETE FROM lot"):
        def run(sql=sql):
            with engine.begin() as conn:
                conn.execute(text(sql))
        assert "append-only" in denied(run)


def test_roles_sql_grants_no_delete():
    sql = "\n".join(roles.roles_sql("public"))
    assert "DELETE" not in sql and "TRUNCATE" not in sql
    assert "GRANT UPDATE ON \"public\".balance" in sql
