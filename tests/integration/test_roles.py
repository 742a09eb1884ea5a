"""Least-privilege roles on PostgreSQL: what each role can and cannot do."""
import datetime as dt
import hashlib
import json
import time

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace
from quota.ledger import balances
from quota.store import db
from quota.ledger import idempotency
from quota.ledger import posting as ledger
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import operations
from quota.store import roles
from quota.intake import tallies
from quota.errors import QuotaError, Refused
from tests.conftest import DATA, ENGINES, PROJECT_HEADER, TALLY_HEADER, snapshot


@pytest.fixture
def pg(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("roles are PostgreSQL only")
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
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
    assert trace.verify(auditor)[1] == []
    assert balances.balance(auditor)["rows"]
    msg = denied(lambda: operations.reserve(auditor, "P2026-03", actor="quota_auditor", date=dt.date(2026, 11, 29)))
    assert "permission denied" in msg
    auditor.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_clerk_works_the_ledger_but_cannot_edit_it(pg):
    clerk = as_role(pg, "quota_clerk")
    operations.reserve(clerk, "P2026-03", actor="quota_clerk", date=dt.date(2026, 11, 29))
    operations.approve(clerk, "P2026-03", doc="D-1", actor="quota_clerk", date=dt.date(2026, 11, 29))
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
    assert "permission denied" in denied(lambda: operations.reserve(planner, "P2026-03", actor="quota_planner",
                                                                    date=dt.date(2026, 11, 29)))
    planner.dispose()


@pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped")
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_roles_made_before_an_upgrade_can_read_the_tables_it_adds(engine):
    """Roles granted at revision 0004, then `quota db upgrade`: the clerk reads the new matching table."""
    from alembic import command
    from quota.store import migrate
    # the data first (the library writes the current schema), then back to 0004 with it
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
    with engine.begin() as conn:
        command.downgrade(migrate._config(conn), "0004")
    with engine.begin() as conn:  # roles as an earlier quota granted them (no default privileges)
        for sql in roles.roles_sql(roles.current_schema(engine)):
            if not sql.startswith("ALTER DEFAULT"):
                conn.exec_driver_sql(sql.replace("%", "%%"))
    migrate.upgrade(engine)
    clerk = as_role(engine, "quota_clerk")
    r = operations.reserve(clerk, "P2026-03", actor="quota_clerk", date=dt.date(2026, 11, 29))
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
    assert "GRANT UPDATE (amount_g, last_date) ON \"public\".balance TO quota_clerk" in sql
    assert "GRANT UPDATE (state, reserved_until, doc) ON \"public\".project TO quota_clerk" in sql


# --------------------------------------------------------------------------- who may post what (migration 0012)

PG_ONLY = [pytest.mark.skipif("postgresql" not in ENGINES, reason="PostgreSQL skipped"),
           pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)]
DAY = dt.date(2026, 11, 29)
runner = CliRunner()


def pg_only(fn):
    for mark in reversed(PG_ONLY):
        fn = mark(fn)
    return fn


def role_url(engine, role) -> str:
    return make_url(engine.url.render_as_string(hide_password=False)).set(username=role).render_as_string(
        hide_password=False)


def cli(url, *args, env=None):
    r = runner.invoke(app, ["--db", url, *args], env=env)
    return r.exit_code, r.output  # stdout and stderr


def lot_of(engine, pollutant="COD") -> tuple[str, str, int]:
    """(serial, zone, available grams) of the first lot of `pollutant` that holds quota."""
    with engine.connect() as conn:
        return tuple(conn.execute(text(
            "SELECT l.serial, l.zone, b.amount_g FROM lot l JOIN balance b ON b.account = 'lot:' || l.serial "
            "AND b.lot = l.serial WHERE l.pollutant = :p AND b.amount_g > 0 ORDER BY l.serial LIMIT 1"),
            {"p": pollutant}).one())


def forge(conn, kind: str, legs: list[tuple[str, str, str, int]], project_id=None) -> None:
    """What an insider does with plain SQL: lock the head, append a correctly hashed transaction of `kind`
    with these postings (account, lot, pollutant, grams), then make the balances agree."""
    conn.execute(text("SELECT id FROM chain_head WHERE id = 1 FOR UPDATE"))
    seq, prev = conn.execute(text("SELECT seq, hash FROM txn ORDER BY seq DESC LIMIT 1")).one()
    seq += 1
    booked, meta = ledger.now_iso(), "{}"
    postings = sorted([list(leg) for leg in legs])
    digest = hashlib.sha256((prev + ledger.canonical_txn(seq, kind, str(DAY), booked, "clerk", "", "", project_id,
                                                         1, meta, postings)).encode()).hexdigest()
    conn.execute(text("INSERT INTO txn (seq, kind, effective_date, booked_at, actor, memo, ref, project_id, "
                      "rulebook_version, meta, prev_hash, hash) VALUES (:s, :k, :d, :b, 'clerk', '', '', :p, 1, "
                      ":m, :prev, :h)"), {"s": seq, "k": kind, "d": DAY, "b": booked, "p": project_id, "m": meta,
                                          "prev": prev, "h": digest})
    for account, lot, pol, amount in legs:
        conn.execute(text("INSERT INTO posting (txn_seq, account, lot, pollutant, amount_g) VALUES (:s, :a, :l, "
                          ":p, :g)"), {"s": seq, "a": account, "l": lot, "p": pol, "g": amount})
        conn.execute(text("UPDATE balance SET amount_g = amount_g + :g WHERE account = :a AND lot = :l"),
                     {"g": amount, "a": account, "l": lot})


@pg_only
def test_a_clerk_may_post_only_the_clerks_transaction_kinds(pg, write_csv):
    clerk = as_role(pg, "quota_clerk")
    # project import (a register transaction) is the clerk's
    project_files.import_projects(clerk, write_csv("p.csv", PROJECT_HEADER, ["P9,新项目,JT-YT,food,COD,1,t/a,1,,false,"]),
                             actor="quota_clerk")
    for kind in ("issue", "revoke", "expire", "adjust", "supersede", "whatever"):
        def run(kind=kind):
            with clerk.begin() as conn:
                forge(conn, kind, [])
        msg = denied(run)
        assert "permission denied" in msg and f"quota_clerk may not post a {kind} transaction" in msg, msg
    for kind in roles.CLERK_KINDS:  # accepted by the database (rolled back here)
        with clerk.connect() as conn, conn.begin() as t:
            forge(conn, kind, [])
            t.rollback()
    for kind in ("issue", "adjust"):  # the owner posts every kind
        with pg.connect() as conn, conn.begin() as t:
            forge(conn, kind, [])
            t.rollback()
    clerk.dispose()


@pg_only
def test_the_forging_script_run_as_the_clerk_is_refused_by_the_database(pg):
    """The insider's script of issue 18: an issue of 300 t into an existing lot, hashed with the chain, the
    balances adjusted. Refused as an issue; refused as well dressed up as a clerk's kind."""
    before = snapshot(pg)
    serial, zone, _ = lot_of(pg)
    invent = [("issued:COD", serial, "COD", -300_000_000), (f"lot:{serial}", serial, "COD", 300_000_000)]
    clerk = as_role(pg, "quota_clerk")
    attempts = [("issue", invent, "may not post a issue transaction"),
                ("release", invent, "may not post -300000000 g to issued:COD"),
                ("cancel", invent, "may not post -300000000 g to issued:COD"),
                # grams out of revoked: or expired: back onto the lot
                ("release", [("revoked:COD", serial, "COD", -5), (f"lot:{serial}", serial, "COD", 5)],
                 "may not post -5 g to revoked:COD"),
                ("cancel", [("expired:COD", serial, "COD", -5), (f"lot:{serial}", serial, "COD", 5)],
                 "may not post -5 g to expired:COD"),
                # a reservation never puts grams on a lot, nor on another lot's account
                ("reserve", [("project:P2026-03:reserved", serial, "COD", -5), (f"lot:{serial}", serial, "COD", 5)],
                 f"may not post 5 g to lot:{serial}"),
                ("release", [("project:P2026-03:reserved", serial, "COD", -5), ("lot:OTHER", serial, "COD", 5)],
                 "may not post 5 g to lot:OTHER")]
    for kind, legs, expected in attempts:
        def run(kind=kind, legs=legs):
            with clerk.begin() as conn:
                forge(conn, kind, legs, "P2026-03")
        msg = denied(run)
        assert "permission denied" in msg and expected in msg, (kind, msg)
    assert snapshot(pg) == before
    assert trace.verify(pg)[1] == []
    # the same script run by the owner goes through: the owner may post every kind (verify's business)
    with pg.begin() as conn:
        forge(conn, "issue", invent)
    clerk.dispose()


@pg_only
def test_a_clerk_returns_quota_to_lots_and_to_expired_through_its_commands(pg):
    """release and cancel put grams back on lots (and on expired:) through the posting guard."""
    clerk = as_role(pg, "quota_clerk")
    operations.reserve(clerk, "P2026-03", actor="quota_clerk", date=DAY)
    operations.release(clerk, "P2026-03", actor="quota_clerk", date=DAY)
    operations.reserve(clerk, "P2026-03", actor="quota_clerk", date=DAY)
    operations.approve(clerk, "P2026-03", doc="D-1", actor="quota_clerk", date=DAY)
    assert operations.cancel(clerk, "P2026-03", actor="quota_clerk", date=DAY)["state"] == "cancelled"
    # grams reserved from a lot the owner then revokes go to revoked:, by the clerk's release
    drawn = operations.reserve(clerk, "P2026-05", actor="quota_clerk", date=DAY)["draws"][0]
    operations.revoke(pg, drawn["lot"], actor="admin", memo="tally found invalid", date=DAY)
    seq = operations.release(clerk, "P2026-05", actor="quota_clerk", date=DAY)["txn"]
    with pg.connect() as conn:
        accounts = {r[0] for r in conn.execute(text("SELECT account FROM posting WHERE txn_seq = :s AND "
                                                    "amount_g > 0"), {"s": seq})}
    assert f"revoked:{drawn['pollutant']}" in accounts
    serial, zone, _ = lot_of(pg)
    with clerk.connect() as conn, conn.begin() as t:  # what a release of an expired lot's grams posts
        forge(conn, "release", [("project:P2026-01:reserved", serial, "COD", -5), ("expired:COD", serial, "COD", 5)])
        t.rollback()
    assert trace.verify(pg)[1] == []
    clerk.dispose()


@pg_only
def test_a_clerk_cannot_move_quota_between_zones_or_stop_the_writers(pg, write_csv):
    operations.reserve(pg, "P2026-03", actor="admin", date=DAY)
    clerk = as_role(pg, "quota_clerk")
    refused = {
        "UPDATE balance SET zone = 'LY-XX'": "permission denied",
        "UPDATE balance SET pollutant = 'TP'": "permission denied",
        "UPDATE balance_total SET zone = 'LY-XX'": "permission denied",
        "UPDATE chain_head SET id = 2": "append-only",
        "DELETE FROM chain_head": "permission denied",
        "UPDATE project SET zone = 'LY-XX'": "permission denied",
        "UPDATE project SET industry = 'food', priority_e4 = 10000": "permission denied",
        "UPDATE plan SET result = '{}'": "permission denied",
        "INSERT INTO source (source_id, name, zone) VALUES ('S99', 'x', 'JT-YT')": "permission denied",
        "INSERT INTO lot (serial, tally_id, pollutant, zone, effective_date, issued_g) "
        "VALUES ('X', 'T2022-001', 'COD', 'JT-YT', '2026-01-01', 1)": "permission denied",
        "INSERT INTO operation (key, command, request_hash, result, created_at, db_user) "
        "VALUES ('k', 'approve', 'h', '{}', 'now', 'root')": "permission denied",
    }
    for sql, expected in refused.items():
        def run(sql=sql):
            with clerk.begin() as conn:
                conn.execute(text(sql))
        msg = denied(run)
        assert expected in msg, (sql, msg)
    with clerk.begin() as conn:  # the columns its commands write, it may write
        conn.execute(text("UPDATE project SET doc = doc WHERE project_id = 'P2026-03'"))
        conn.execute(text("UPDATE balance SET last_date = last_date WHERE account = 'project:P2026-03:reserved'"))
    # the clerk's writers still lock the head row: the next reservation goes through
    assert operations.approve(clerk, "P2026-03", doc="D", actor="quota_clerk", date=DAY)["state"] == "approved"
    assert trace.verify(pg)[1] == []
    new = write_csv("new.csv", TALLY_HEADER, ["T2026-901,S91,New works,closure,JT-YT,COD,5,,,t/a,2025,2026-01-10,"
                                              "monitoring,Lab,R-901"])
    code, out = cli(role_url(pg, "quota_clerk"), "tally", "import", new)
    assert code == 1 and "permission denied" in out, out  # issuing quota is the owner's
    clerk.dispose()


@pg_only
def test_stored_plans_are_only_marked_applied_once_by_the_clerk(pg):
    planner, clerk = as_role(pg, "quota_planner"), as_role(pg, "quota_clerk")
    plan = plans.run_plan(planner, as_of=DAY, actor="quota_planner")
    for sql in (f"UPDATE plan SET applied_at = 'x' WHERE plan_id = '{plan['plan_id']}'",
                "INSERT INTO plan (plan_id, created_at, actor, as_of, status, rulebook_version, head_seq, "
                "scenario_name, scenario, result, applied_at) VALUES ('P9', '', '', '2026-01-01', 'optimal', 1, 0, "
                "'', '', '{}', 'already')"):
        def run(sql=sql):
            with planner.begin() as conn:
                conn.execute(text(sql))
        assert "permission denied" in denied(run)
    applied = plans.apply_plan(clerk, plan["plan_id"], actor="quota_clerk", date=DAY)
    assert applied["reserved"]
    for sql in ("UPDATE plan SET applied_at = NULL", "UPDATE plan SET applied_at = 'later'"):
        def run(sql=sql):
            with clerk.begin() as conn:
                conn.execute(text(sql))
        assert "only ever marked applied, once" in denied(run), sql
    planner.dispose()
    clerk.dispose()


@pg_only
def test_no_role_can_plant_an_idempotency_row_another_user_reads(pg):
    """Issue 18: the planner planted a row under the clerk's key, and `approve --key K` reported it. The
    planner now cannot write the table at all; a row the clerk writes names the clerk, and an owner's
    command with that key is refused instead of reporting it."""
    planner, clerk = as_role(pg, "quota_planner"), as_role(pg, "quota_clerk")
    operations.reserve(pg, "P2026-03", actor="admin", date=DAY)
    request = {"project": "P2026-03", "doc": "D-1", "date": str(DAY)}

    def plant(who, command, req):
        with who.begin() as conn:
            conn.execute(text("INSERT INTO operation (key, command, request_hash, result, created_at) "
                              "VALUES ('K', :c, :h, :r, 'now')"),
                         {"c": command, "h": idempotency.request_hash(command, req),
                          "r": json.dumps({"project_id": "P2026-03", "txn": 99, "state": "approved", "doc": "D-1"})})

    assert "permission denied" in denied(lambda: plant(planner, "approve", request))
    plant(clerk, "expire", {"as_of": "2026-11-29"})
    with pg.connect() as conn:
        assert conn.execute(text("SELECT db_user FROM operation WHERE key = 'K'")).scalar_one() == "quota_clerk"
    before = snapshot(pg)
    code, out = cli(pg.url.render_as_string(hide_password=False), "expire", "--as-of", "2026-11-29", "--key", "K")
    assert code == 1 and "recorded by database user quota_clerk" in out, out
    assert snapshot(pg) == before
    # the clerk's own retry with its key replays its own row, as before
    first = operations.approve(clerk, "P2026-03", doc="D-1", actor="c", date=DAY, key="K2")
    again = operations.approve(clerk, "P2026-03", doc="D-1", actor="c", date=DAY, key="K2")
    assert again["replayed"] and again["txn"] == first["txn"]
    planner.dispose()
    clerk.dispose()


@pg_only
def test_db_roles_refuses_a_caller_who_cannot_grant(pg):
    code, out = cli(role_url(pg, "quota_clerk"), "db", "roles")
    assert code == 1 and "quota_clerk cannot grant" in out and "granted" not in out.replace("cannot grant", ""), out
    with pytest.raises(Refused, match="cannot grant") as info:
        roles.create_roles(as_role(pg, "quota_auditor"))
    assert info.value.code == "cannot_grant" and info.value.facts["user"] == "quota_auditor"
    code, out = cli(pg.url.render_as_string(hide_password=False), "db", "roles")
    assert code == 0 and "created/granted" in out


@pg_only
def test_grants_of_roles_made_before_0012_are_tightened_by_the_upgrade(engine):
    from alembic import command
    from quota.store import migrate
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="admin")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="admin")
    with engine.begin() as conn:  # the data first (the library writes the current schema), then back to 0011
        command.downgrade(migrate._config(conn), "0011")
    roles.create_roles(engine)
    with engine.begin() as conn:  # as an earlier `quota db roles` granted them
        conn.exec_driver_sql("GRANT UPDATE ON balance, balance_total, chain_head, project, plan TO quota_clerk")
        conn.exec_driver_sql("GRANT INSERT ON tally, lot, source TO quota_clerk")
    migrate.upgrade(engine)
    clerk = as_role(engine, "quota_clerk")
    for sql in ("UPDATE project SET zone = 'X'", "UPDATE balance SET zone = 'X'",
                "INSERT INTO source (source_id, name, zone) VALUES ('S99', 'x', 'JT-YT')"):
        def run(sql=sql):
            with clerk.begin() as conn:
                conn.execute(text(sql))
        assert "permission denied" in denied(run), sql
    assert operations.reserve(clerk, "P2026-03", actor="c", date=DAY)["state"] == "reserved"
    clerk.dispose()


# --------------------------------------------------------------------------- bounded waiting

@pg_only
def test_a_writer_behind_a_held_lock_gives_up_as_busy_within_its_timeout(pg, monkeypatch):
    url = pg.url.render_as_string(hide_password=False)
    holder = pg.connect()
    holder.begin()
    holder.exec_driver_sql("SELECT id FROM chain_head WHERE id = 1 FOR UPDATE")
    try:
        db.retries().clear()
        busy = db.make_engine(url, 0.2)
        started = time.monotonic()
        with pytest.raises(db.LedgerBusy, match="the ledger is busy") as info:
            operations.reserve(busy, "P2026-03", actor="c", date=DAY)
        assert info.value.code == "ledger_busy" and info.value.facts == {"attempts": 3, "lock_timeout": "200ms"}
        assert time.monotonic() - started < 5
        assert len(db.retries()) == db.LOCK_ATTEMPTS - 1  # reported retries, then the refusal
        busy.dispose()
        before = snapshot(pg)
        monkeypatch.setenv("QUOTA_LOCK_TIMEOUT", "0.2")
        db.retries().clear()
        started = time.monotonic()
        code, out = cli(url, "reserve", "P2026-03", "--date", str(DAY))
        assert code == 1 and "the ledger is busy" in out and "200ms each" in out and "retried 2 time" in out, out
        assert time.monotonic() - started < 5
        assert snapshot(pg) == before
    finally:
        holder.rollback()
        holder.close()
    db.retries().clear()
    code, out = cli(url, "--lock-timeout", "0.2", "reserve", "P2026-03", "--date", str(DAY))
    assert code == 0, out


def test_the_lock_timeout_is_checked():
    assert db.lock_timeout("2.5") == 2.5 and db.lock_timeout(0) == 0
    for bad in ("soon", "-1", "nan", "99999"):
        with pytest.raises(QuotaError, match="lock timeout"):
            db.lock_timeout(bad)
