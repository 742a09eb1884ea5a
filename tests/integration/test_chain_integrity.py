"""Provenance under the hash chain, a verify that knows the domain, and exports that cannot hide a transaction
(issue 12 items 7-8, issue 18 item 2), on SQLite and PostgreSQL: every forgery is made the way an insider
would (append-only triggers dropped on a copy, hashes recomputed) and must make `verify` fail naming the row."""
import datetime as dt
import hashlib
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace
from quota.store import db
from quota.audit import jsonl
from quota.ledger import posting as ledger
from quota.store import migrate
from quota.intake import project_files
from quota.ledger import operations
from quota.intake import tallies
from tests.conftest import DATA

D = dt.date
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
runner = CliRunner()


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


@pytest.fixture
def busy(engine, pin_today):
    """The sample ledger with a reservation, an approval, a cancellation, a release and an expiry."""
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk", key="import-projects")
    pin_today(D(2027, 1, 1))  # the ledger lives until then
    operations.reserve(engine, "P2026-08", actor="a", date=D(2026, 11, 29), key="r8")
    operations.approve(engine, "P2026-08", doc="金环审〔2026〕31号", actor="b", date=D(2026, 12, 2), key="a8")
    operations.reserve(engine, "P2026-03", actor="a", date=D(2026, 12, 2))
    operations.cancel(engine, "P2026-03", actor="a", date=D(2026, 12, 20), key="c3")
    operations.reserve(engine, "P2026-11", actor="a", date=D(2026, 12, 20))
    operations.release(engine, "P2026-11", actor="a", date=D(2026, 12, 21))
    operations.expire(engine, D(2027, 1, 1), actor="system", key="x1")
    return engine


def copy_of(engine, tmp_path):
    """The ledger to tamper with: on SQLite a copy of the file, on PostgreSQL the test's own fresh schema."""
    if engine.dialect.name != "sqlite":
        return engine, str(engine.url.render_as_string(hide_password=False))
    target = tmp_path / "forged.db"
    source, copy = sqlite3.connect(engine.url.database), sqlite3.connect(target)
    source.backup(copy)  # the WAL's content included
    source.close()
    copy.close()
    url = f"sqlite:///{target}"
    return db.make_engine(url), url


def forge(engine, *statements, drop=("txn", "posting", "tally", "lot", "source")):
    """Run statements as the owner with the append-only triggers dropped (what anyone owning the file can do)."""
    with engine.begin() as conn:
        for table in drop:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_UPDATE")
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_no_DELETE")
            else:
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        for sql, args in statements:
            conn.execute(text(sql), args)


def first_lot(engine, pollutant="COD"):
    with engine.connect() as conn:
        return conn.execute(text("SELECT l.serial, l.tally_id, t.source_id, l.zone FROM lot l JOIN tally t "
                                 "ON t.tally_id = l.tally_id WHERE l.pollutant = :p ORDER BY l.serial"),
                            {"p": pollutant}).first()


def test_an_honest_ledger_verifies_with_every_check(busy):
    summary, problems = trace.verify(busy)
    assert problems == [] and summary["v1_transactions"] == 0
    with busy.connect() as conn:  # the issue's hashed body carries what the source statement cites
        meta = json.loads(conn.execute(text("SELECT meta FROM txn WHERE kind = 'issue' ORDER BY seq")).first()[0])
        register = conn.execute(text("SELECT meta FROM txn WHERE kind = 'register'")).all()
    assert {"tally_id", "source_id", "source_name", "zone", "measure", "pollutant", "baseline_actual", "permitted",
            "post", "unit", "creditable_g", "effective_date", "expires", "method", "assessor", "report_no",
            "supersedes"} <= set(meta)
    assert len(register) == 1 and json.loads(register[0][0])["projects"]["P2026-08"]["needs"]


@pytest.mark.parametrize("case", ["lot_expiry", "tally_report_no", "source_name", "project_need", "project_zone",
                                  "balance_zone"])
def test_editing_a_provenance_row_fails_verify_naming_the_row(busy, tmp_path, case):
    serial, tally_id, source_id, zone = first_lot(busy)
    forged, url = copy_of(busy, tmp_path)
    sql, where, column = {
        "lot_expiry": ("UPDATE lot SET expires = '2099-12-31' WHERE serial = :k", f"lot {serial}", "expires"),
        "tally_report_no": ("UPDATE tally SET report_no = 'FORGED-1' WHERE tally_id = :k", f"tally {tally_id}",
                            "report_no"),
        "source_name": ("UPDATE source SET name = 'Someone else' WHERE source_id = :k", f"source {source_id}", "name"),
        "project_need": ("UPDATE project_need SET increment_g = increment_g / 3 WHERE project_id = :k AND "
                         "pollutant = 'SO2'", "project_need P2026-08/SO2", "increment_g"),
        "project_zone": ("UPDATE project SET zone = 'JT-YT' WHERE project_id = :k", "project P2026-08", "zone"),
        "balance_zone": ("UPDATE balance SET zone = 'JT-XB' WHERE account = :k", "balance", f"lot:{serial} {serial}"),
    }[case]
    key = {"lot_expiry": serial, "tally_report_no": tally_id, "source_name": source_id, "project_need": "P2026-08",
           "project_zone": "P2026-08", "balance_zone": f"lot:{serial}"}[case]
    statements = [(sql, {"k": key})]
    if case == "balance_zone":  # the clerk's move of quota between zones, totals kept consistent
        statements += [("UPDATE balance_total SET zone = 'JT-XB' WHERE kind = 'lot' AND zone = :z", {"z": zone})]
    forge(forged, *statements)
    summary, problems = trace.verify(forged)
    assert not summary["ok"]
    assert (problems[0].source, problems[0].column) == (where, column), problems[:3]
    result = quota(url, "verify")
    assert result.exit_code == 1 and where in result.stderr and column in result.stderr


def test_a_forged_issue_topping_up_an_existing_lot_fails_verify(busy, tmp_path):
    """The clerk's forgery of issue 18: an issue of 300 t into an existing lot, hashed as the writer hashes it
    (sha256 of prev | date | sha256 of the canonical body), balances and totals adjusted to match."""
    serial, tally_id, source_id, zone = first_lot(busy)
    forged, url = copy_of(busy, tmp_path)
    with forged.connect() as conn:
        seq, prev = conn.execute(text("SELECT seq, hash FROM txn ORDER BY seq DESC LIMIT 1")).one()
        expires = conn.execute(text("SELECT expires FROM lot WHERE serial = :s"), {"s": serial}).scalar_one()
    grams, date, meta = 300_000_000, "2026-12-22", {"tally_id": tally_id, "creditable_g": 300_000_000}
    postings = sorted([[f"lot:{serial}", serial, "COD", grams], ["issued:COD", serial, "COD", -grams]])
    body = {"seq": seq + 1, "kind": "issue", "date": date, "booked_at": "2026-12-22T09:00:00.000000Z",
            "actor": "clerk", "memo": "closure", "ref": "R", "project": None, "rulebook": 1, "meta": meta,
            "postings": postings}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if ledger.HASH_SCHEME == "quota-chain-v1":  # (so the same forgery can be tried on a v1 ledger's code)
        digest = hashlib.sha256((prev + canonical).encode()).hexdigest()
    else:
        digest = hashlib.sha256(f"{prev}|{date}|{hashlib.sha256(canonical.encode()).hexdigest()}".encode()).hexdigest()
    forge(forged, (
        "INSERT INTO txn (seq, kind, effective_date, booked_at, actor, memo, ref, project_id, rulebook_version, "
        "meta, prev_hash, hash) VALUES (:s, 'issue', :d, :b, 'clerk', 'closure', 'R', NULL, 1, :m, :p, :h)",
        {"s": seq + 1, "d": D(2026, 12, 22), "b": body["booked_at"], "m": json.dumps(meta, sort_keys=True,
                                                                                   separators=(",", ":")),
         "p": prev, "h": digest}),
        ("INSERT INTO posting (txn_seq, account, lot, pollutant, amount_g) VALUES (:s, :a, :l, 'COD', :g)",
         [{"s": seq + 1, "a": p[0], "l": serial, "g": p[3]} for p in postings]),
        ("UPDATE balance SET amount_g = amount_g + :g WHERE account = :a AND lot = :l",
         [{"g": p[3], "a": p[0], "l": serial} for p in postings]),
        ("UPDATE balance_total SET amount_g = amount_g + :g WHERE kind = 'lot' AND pollutant = 'COD' AND zone = :z "
         "AND expires = :e", {"g": grams, "z": zone, "e": expires or ledger.NEVER}), drop=())
    summary, problems = trace.verify(forged)
    assert not summary["ok"]
    assert ledger.txn_hash(prev, body) == digest  # hashed exactly as the writer hashes
    assert problems[0] == problems[0].__class__("txn", seq + 1, "postings",
                                                f"issue into lot {serial}, which already exists (an issue never "
                                                "tops up a lot)")
    result = quota(url, "verify")
    assert result.exit_code == 1 and "never tops up" in result.stderr


@pytest.mark.parametrize("planted", ["missing_txn", "other_kind", "other_project"])
def test_a_planted_idempotency_row_fails_verify(busy, tmp_path, planted):
    forged, url = copy_of(busy, tmp_path)
    with forged.connect() as conn:
        reserve_seq = conn.execute(text("SELECT seq FROM txn WHERE kind = 'reserve' AND project_id = 'P2026-08'")
                                   ).scalar_one()
        approve_seq = conn.execute(text("SELECT seq FROM txn WHERE kind = 'approve'")).scalar_one()
    result = {"missing_txn": {"project_id": "P2026-01", "txn": 99, "state": "approved", "doc": "X"},
              "other_kind": {"project_id": "P2026-08", "txn": reserve_seq, "state": "approved", "doc": "X"},
              "other_project": {"project_id": "P2026-01", "txn": approve_seq, "state": "approved",
                                "doc": "金环审〔2026〕31号"}}[planted]
    forge(forged, ("INSERT INTO operation (key, command, request_hash, result, created_at) "
                   "VALUES ('K', 'approve', 'x', :r, '2026-12-22T00:00:00Z')", {"r": json.dumps(result)}), drop=())
    summary, problems = trace.verify(forged)
    assert [(p.source, p.column) for p in problems] == [("operation K", "result")]
    cli = quota(url, "verify")
    assert cli.exit_code == 1 and "operation K" in cli.stderr


def test_idempotency_rows_of_every_command_verify_and_a_changed_result_does_not(busy, tmp_path):
    with busy.connect() as conn:
        keys = sorted(r[0] for r in conn.execute(text("SELECT command FROM operation")))
    assert keys == ["approve", "cancel", "expire", "project import", "reserve"]
    forged, url = copy_of(busy, tmp_path)
    with forged.connect() as conn:
        row = json.loads(conn.execute(text("SELECT result FROM operation WHERE key = 'r8'")).scalar_one())
    row["draws"][0]["amount_g"] += 1
    forge(forged, ("UPDATE operation SET result = :r WHERE key = 'r8'", {"r": json.dumps(row)}), drop=())
    assert [p.source for p in trace.verify(forged)[1]] == ["operation r8"]


def full_export(engine, tmp_path, as_of=None) -> Path:
    path = tmp_path / f"ledger-{as_of}.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        jsonl.write_jsonl(engine, fh, as_of)
    return path


def records(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write(path, recs):
    path.write_text("".join(json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n"
                            for r in recs), encoding="utf-8")


def restate(recs):
    """Fix the balance lines, the end record and the header's counts to what the transaction lines give."""
    balances, n_txn, n_post, n_stub = {}, 0, 0, 0
    for r in recs:
        if r["type"] == "txn":
            n_txn += 1
            for account, lot, pol, g in r["postings"]:
                balances[(account, lot, pol)] = balances.get((account, lot, pol), 0) + g
                n_post += 1
        elif r["type"] == "stub":
            n_stub += 1
    out = [r for r in recs if r["type"] not in ("balance", "end")]
    out += [{"type": "balance", "account": a, "lot": l, "pollutant": p, "amount_g": g}
            for (a, l, p), g in sorted(balances.items()) if g]
    out.append({"type": "end", "transactions": n_txn, "postings": n_post, "final_hash": recs[-1]["final_hash"]})
    out[0]["counts"] = {"transactions": n_txn + n_stub, "postings": n_post, "stubs": n_stub}
    return out


def as_stub(rec):
    body = {k: v for k, v in rec.items() if k not in ("type", "prev_hash", "hash")}
    return {"type": "stub", "seq": rec["seq"], "date": rec["date"], "body_hash": ledger.body_hash(body),
            "prev_hash": rec["prev_hash"], "hash": rec["hash"]}


def test_hiding_the_approval_as_a_stub_in_a_full_export_fails(busy, tmp_path):
    path = full_export(busy, tmp_path)
    recs = records(path)
    i = next(i for i, r in enumerate(recs) if r.get("kind") == "approve")
    recs[i] = as_stub(recs[i])  # a stub that matches the chain's hash exactly
    write(path, restate(recs))
    summary, problems = jsonl.verify_export(str(path))
    assert problems and problems[0].row == i + 1 and problems[0].column == "type"
    cli = runner.invoke(app, ["verify", "--export", str(path)])
    assert cli.exit_code == 1 and "a full export has no stubs" in cli.stderr


def test_an_as_of_export_may_stub_only_what_is_dated_after_it(busy, tmp_path):
    path = full_export(busy, tmp_path, D(2026, 12, 1))
    assert jsonl.verify_export(str(path))[1] == []
    recs = records(path)
    assert sum(r["type"] == "stub" for r in recs) == recs[0]["counts"]["stubs"] > 0
    # the approval (2026-12-02) is a stub: its date cannot be moved before the as-of date
    i = next(i for i, r in enumerate(recs) if r["type"] == "stub" and r["date"] == "2026-12-02")
    moved = [dict(r) for r in recs]
    moved[i]["date"] = "2026-11-30"
    write(path, moved)
    assert [(p.row, p.column) for p in jsonl.verify_export(str(path))[1]][:1] == [(i + 1, "hash")]
    # a transaction dated on or before the as-of date (the reservation of 2026-11-29) cannot become a stub
    j = next(i for i, r in enumerate(recs) if r.get("kind") == "reserve" and r["date"] == "2026-11-29")
    hidden = [dict(r) for r in recs]
    hidden[j] = as_stub(hidden[j])
    write(path, restate(hidden))
    problems = jsonl.verify_export(str(path))[1]
    assert (problems[0].row, problems[0].column) == (j + 1, "date")
    # the header's counts are checked
    wrong = [dict(r) for r in recs]
    wrong[0] = {**wrong[0], "counts": {**wrong[0]["counts"], "stubs": 0}}
    write(path, wrong)
    assert [p.column for p in jsonl.verify_export(str(path))[1]] == ["counts"]


def test_expect_head_catches_a_truncated_chain_in_the_database_and_in_an_export(busy, tmp_path):
    project_files.import_projects(busy, str(_one_project(tmp_path)), actor="clerk")  # the chain's last transaction
    head = trace.verify(busy)[0]["head"]
    path = full_export(busy, tmp_path)
    forged, url = copy_of(busy, tmp_path)
    forge(forged, ("DELETE FROM project_need WHERE project_id = 'P-LAST'", {}),
          ("DELETE FROM project WHERE project_id = 'P-LAST'", {}),
          ("DELETE FROM txn WHERE seq = (SELECT max(seq) FROM txn)", {}))
    summary, problems = trace.verify(forged)
    assert problems == []  # consistent in itself: only a head kept elsewhere shows the loss
    problems = trace.verify(forged, expect_head=head)[1]
    assert [p.column for p in problems] == ["head"] and "nowhere in this chain" in problems[0].message
    assert quota(url, "verify", "--expect-head", summary["head"]).exit_code == 0
    cli = quota(url, "verify", "--expect-head", head)
    assert cli.exit_code == 1 and "expected head" in cli.stderr
    recs = records(path)
    assert jsonl.verify_export(str(path), expect_head=head)[1] == []
    assert recs[recs[0]["final_seq"]]["kind"] == "register"  # the last transaction line
    cut = recs[:recs[0]["final_seq"]] + recs[recs[0]["final_seq"] + 1:]
    last = cut[recs[0]["final_seq"] - 1]
    cut[0] = {**cut[0], "final_hash": last["hash"], "final_seq": last["seq"]}
    cut[-1] = {**cut[-1], "final_hash": last["hash"]}
    write(path, restate(cut))
    assert jsonl.verify_export(str(path))[1] == []
    cli = runner.invoke(app, ["verify", "--export", str(path), "--expect-head", head])
    assert cli.exit_code == 1 and "expected head" in cli.stderr


def _one_project(tmp_path):
    path = tmp_path / "last.csv"
    path.write_text("project_id,name,zone,industry,pollutant,increment,unit\nP-LAST,Last,JT-YT,chem,COD,1,t/a\n",
                    encoding="utf-8")
    return path


def test_v1_exports_still_verify(tmp_path):
    full = FIXTURES / "v1-export.jsonl"
    summary, problems = jsonl.verify_export(str(full))
    assert problems == [] and summary["hash_scheme"] == "quota-chain-v1" and summary["transactions"] == 30
    summary, problems = jsonl.verify_export(str(FIXTURES / "v1-export-as-of-2026-12-02.jsonl"))
    assert problems == [] and summary["unchecked_stubs"] == 4
    cli = runner.invoke(app, ["verify", "--export", str(FIXTURES / "v1-export-as-of-2026-12-02.jsonl")])
    assert cli.exit_code == 0 and "cannot be checked" in cli.stderr


def test_a_v1_full_export_cannot_hide_the_approval_as_a_stub(tmp_path):
    recs = records(FIXTURES / "v1-export.jsonl")
    i = next(i for i, r in enumerate(recs) if r.get("kind") == "approve")
    recs[i] = {"type": "stub", "seq": recs[i]["seq"], "prev_hash": recs[i]["prev_hash"], "hash": recs[i]["hash"]}
    path = tmp_path / "v1-forged.jsonl"
    forged = restate(recs)
    end = forged[-1]  # counts as a v1 header states them: the transactions shown in full
    forged[0]["counts"] = {"transactions": end["transactions"], "postings": end["postings"]}
    write(path, forged)
    problems = jsonl.verify_export(str(path))[1]
    assert problems and problems[0].row == i + 1
    assert runner.invoke(app, ["verify", "--export", str(path)]).exit_code == 1


def test_a_v1_ledger_upgrades_commits_its_provenance_and_keeps_verifying(tmp_path, pin_today):
    """A SQLite ledger written before quota-chain-v2 (tests/fixtures/v1-ledger.db): migration 0010 registers its
    projects and tallies' facts; new transactions are hashed with v2; tampering with a legacy row is caught."""
    target = tmp_path / "v1.db"
    shutil.copy(FIXTURES / "v1-ledger.db", target)
    engine = db.make_engine(f"sqlite:///{target}")
    from tests.integration.test_migrations import HEAD
    assert migrate.upgrade(engine)["to"] == HEAD
    summary, problems = trace.verify(engine)
    assert problems == [] and summary["v1_transactions"] == 30 and summary["transactions"] == 31
    pin_today(D(2027, 1, 2))
    operations.reserve(engine, "P2026-01", actor="clerk", date=D(2027, 1, 2))
    summary, problems = trace.verify(engine)
    assert problems == [] and summary["transactions"] == 32
    path = full_export(engine, tmp_path, D(2026, 12, 2))  # v1 transactions after the date are shown in full
    assert {r["type"] for r in records(path)} >= {"later", "stub"} and jsonl.verify_export(str(path))[1] == []
    tally = first_lot(engine)[1]
    forge(engine, ("UPDATE tally SET assessor = 'Someone' WHERE tally_id = :t", {"t": tally}))
    problems = trace.verify(engine)[1]
    assert (problems[0].source, problems[0].column) == (f"tally {tally}", "assessor")
    engine.dispose()


@pytest.fixture
def rebalanced(engine, pin_today):
    """A reservation whose lot is then revoked, re-reserved (its grams go to revoked:NOX, new ones drawn) and
    released: every step keyed, so each idempotency record is checked too."""
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    pin_today(D(2026, 12, 1))
    day = D(2026, 12, 1)
    first = operations.reserve(engine, "P2026-02", actor="a", date=day, key="r1")
    lot = first["draws"][0]["lot"]
    operations.revoke(engine, lot, actor="auditor", memo="report withdrawn", date=day, key="v1")
    again = operations.reserve(engine, "P2026-02", actor="a", date=day, key="r2")
    assert again["returned"] == [{"lot": lot, "pollutant": "NOX", "amount_g": 2_000_000, "to": "revoked:NOX"}]
    assert again["draws"] and again["draws"][0]["lot"] != lot
    operations.release(engine, "P2026-02", actor="a", date=day, key="l1")
    return engine, lot


def test_a_rebalanced_reservation_and_a_revoked_lot_verify(rebalanced):
    engine, lot = rebalanced
    summary, problems = trace.verify(engine)
    assert problems == []
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM operation")).scalar_one() == 4


@pytest.mark.parametrize("case", ["status_edited", "status_deleted", "returned_edited"])
def test_lot_status_and_returns_are_checked_against_the_chain(rebalanced, tmp_path, case):
    engine, lot = rebalanced
    forged, url = copy_of(engine, tmp_path)
    if case == "returned_edited":  # the reservation's record claims its grams went back to the lot
        with forged.connect() as conn:
            row = json.loads(conn.execute(text("SELECT result FROM operation WHERE key = 'r2'")).scalar_one())
        row["returned"][0]["to"] = f"lot:{lot}"
        forge(forged, ("UPDATE operation SET result = :r WHERE key = 'r2'", {"r": json.dumps(row)}), drop=())
        where = ("operation r2", "result")
    elif case == "status_edited":
        forge(forged, ("UPDATE lot_status SET status = 'superseded' WHERE serial = :s", {"s": lot}),
              drop=("lot_status",))
        where = (f"lot_status {lot}", "status")
    else:
        forge(forged, ("DELETE FROM lot_status WHERE serial = :s", {"s": lot}), drop=("lot_status",))
        where = ("lot_status", "")
    problems = trace.verify(forged)[1]
    assert [(p.source, p.column) for p in problems] == [where]
