"""Identity and numbers at the input edge, on SQLite and PostgreSQL, through the CLI where a user
meets them: one id per source whatever its spelling, what a source can ever be credited, the one
number grammar, look-alike ids, the 64-bit bound, and Beancount accounts per distinct id."""
import datetime as dt
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from cli.main import app
from quota.audit import trace
from quota.ledger import balances
from quota.audit import beancount_export
from quota.intake import project_files
from quota.ledger import projects
from quota.ledger import operations
from quota.planning import scenario
from quota.intake import tallies
from quota import units
from quota.errors import ValidationFailed
from quota.rules.book import load_rulebook_file
from tests.conftest import DATA, PROJECT_HEADER, TALLY_HEADER, snapshot

runner = CliRunner()
BOOK = load_rulebook_file(str(DATA / "rules.toml"))


def quota(url, *args):
    return runner.invoke(app, ["--db", url, "--actor", "tester", *args])


def problems(engine, path, importer=tallies.import_tallies) -> dict:
    with pytest.raises(ValidationFailed) as info:
        importer(engine, path, actor="clerk")
    return {(p.row, p.column): p.message for p in info.value.problems}


def credited(engine) -> dict[str, int]:
    return {r["tally_id"]: r["issued_g"] for r in balances.balance(engine, by="lot")["rows"]}


@pytest.fixture
def sample(engine):
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="clerk")
    return engine


@pytest.mark.parametrize("spelling", ["s01", "S01", " S01", "Ｓ01", "Ｓ０１", "S01\u200b", "\u202aS01"])
def test_the_same_source_under_another_spelling_is_not_credited_again(db_url, write_csv, spelling):
    """S01 was closed (18.4 t of COD) in the sample; re-tallying it under any spelling is refused
    through `quota tally import`, exit 1, nothing written."""
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    assert quota(db_url, "tally", "import", str(DATA / "tallies.csv")).exit_code == 0
    path = write_csv("again.csv", TALLY_HEADER, [
        f"T2024-901,{spelling},金坛华源化工有限公司,closure,JT-YT,COD,18.40,,,t/a,2023,2024-03-01,m,x,R-901"])
    from quota.store import db
    engine = db.make_engine(db_url)
    before = snapshot(engine)
    result = quota(db_url, "tally", "import", path)
    assert result.exit_code == 1, result.output
    if "\u200b" in spelling or "\u202a" in spelling:
        assert "again.csv:2 [source_id]" in result.stderr
        assert ("invisible character U+200B" if "\u200b" in spelling else "bidirectional control U+202A") \
            in result.stderr
    else:
        assert "again.csv:2 [pollutant]" in result.stderr and "second_closure" in result.stderr
        assert "source S01 (COD) was closed by tally T2022-001" in result.stderr
    assert snapshot(engine) == before
    engine.dispose()


def test_a_tally_id_in_another_case_is_the_same_tally(sample, write_csv):
    got = problems(sample, write_csv("t.csv", TALLY_HEADER, [
        "t2022-001,N1,新厂,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R1"]))
    assert "already in the ledger" in got[(2, "tally_id")]


def test_a_new_id_with_a_known_sources_name_and_zone_is_a_likely_duplicate(sample, write_csv):
    rows = ["N1,S99,金坛华源化工 有限公司,closure,JT-YT,TN,1,,,t/a,2023,2024-03-01,m,x,R1",   # S01's name
            "N2,S98,新厂,closure,JT-YT,COD,1,,,t/a,2023,2024-03-01,m,x,R2",
            "N3,S97,新厂,closure,JT-YT,TP,1,,,t/a,2023,2024-03-01,m,x,R3"]                  # S98's, same file
    before = snapshot(sample)
    got = problems(sample, write_csv("d.csv", TALLY_HEADER, rows[:1]))  # against the ledger
    assert set(got) == {(2, "source_id")}
    assert "duplicate_source: source S99 has the name and zone of source S01" in got[(2, "source_id")]
    got = problems(sample, write_csv("d2.csv", TALLY_HEADER, rows[1:]))  # within the file
    assert set(got) == {(3, "source_id")}
    assert "of source S98" in got[(3, "source_id")] and "distinct_source" in got[(3, "source_id")]
    assert snapshot(sample) == before
    # the row says explicitly that it is another source (the Chinese header works too)
    result = tallies.import_tallies(sample, write_csv("e.csv", TALLY_HEADER + ",独立平衡源", [
        r + ",是" for r in rows]), actor="clerk")
    assert result["tallies"] == 3


def test_what_a_source_is_credited_is_bounded_by_its_first_baseline(sample, write_csv):
    """An upgrade after S01's closure (18.4 t) would credit 35.8 t from an 18.4 t baseline: refused.
    Upgrade then closure: the closure credits only the post-upgrade emissions; a second upgrade only
    its further reduction."""
    before = snapshot(sample)
    got = problems(sample, write_csv("u.csv", TALLY_HEADER, [
        "T2024-902,S01,金坛华源化工有限公司,upgrade,JT-YT,COD,18.40,,1.00,t/a,2023,2024-03-01,m,x,R-902"]))
    assert "closed_source: source S01 (COD) was closed by tally T2022-001" in got[(2, "measure")]
    assert snapshot(sample) == before
    result = tallies.import_tallies(sample, write_csv("h.csv", TALLY_HEADER, [
        "H3,F1,甲厂,closure,JT-YT,COD,20,,,t/a,2024,2025-01-01,m,x,R3",       # rows in any order:
        "H1,F1,甲厂,upgrade,JT-YT,COD,20,,5,t/a,2022,2023-01-01,m,x,R1",      # by effective date
        "H2,F2,乙厂,upgrade,JT-YT,COD,20,,10,t/a,2022,2023-01-01,m,x,R2",
        "H4,F2,乙厂,upgrade,JT-YT,COD,20,,4,t/a,2023,2024-01-01,m,x,R4"]), actor="clerk")
    got = credited(sample)
    assert (got["H1"], got["H3"]) == (15_000_000, 5_000_000)   # F1: 20 t in all, not 35 t
    assert (got["H2"], got["H4"]) == (10_000_000, 6_000_000)   # F2: 16 t = 20 - 4
    assert {(c["tally_id"], c["by"]) for c in result["capped"]} == {("H3", "H1"), ("H4", "H2")}
    before = snapshot(sample)
    got = problems(sample, write_csv("x.csv", TALLY_HEADER, [
        "X1,F1,甲厂,closure,JT-YT,COD,20,,,t/a,2024,2025-06-01,m,x,X1",      # F1 is closed
        "X2,F2,乙厂,upgrade,JT-YT,COD,20,,4,t/a,2024,2025-06-01,m,x,X2"]))    # no further reduction
    assert set(got) == {(2, "pollutant"), (3, "post")}
    assert "second_closure" in got[(2, "pollutant")] and "double counting" in got[(2, "pollutant")]
    assert "no_reduction" in got[(3, "post")]
    got = problems(sample, write_csv("y.csv", TALLY_HEADER, [
        "X3,F2,乙厂,closure,JT-YT,COD,20,,,t/a,2022,2023-06-01,m,x,X3"]))    # before H4 in the ledger
    assert "out_of_order" in got[(2, "effective_date")] and "H4" in got[(2, "effective_date")]
    assert snapshot(sample) == before
    # F2's closure after its second upgrade credits the 4 t still emitted
    tallies.import_tallies(sample, write_csv("c.csv", TALLY_HEADER, [
        "X4,F2,乙厂,closure,JT-YT,COD,20,,,t/a,2024,2025-06-01,m,x,X4"]), actor="clerk")
    assert credited(sample)["X4"] == 4_000_000
    assert trace.verify(sample)[1] == []


def test_the_cli_says_which_credit_was_capped(db_url, write_csv):
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    result = quota(db_url, "tally", "import", write_csv("h.csv", TALLY_HEADER, [
        "H1,F1,甲厂,upgrade,JT-YT,COD,20,,5,t/a,2022,2023-01-01,m,x,R1",
        "H3,F1,甲厂,closure,JT-YT,COD,20,,,t/a,2024,2025-01-01,m,x,R3"]))
    assert result.exit_code == 0, result.output
    assert "H3: baseline capped at upgrade H1's post-upgrade emissions (5.0000 t/a credited)" in result.stdout


def test_within_one_file_a_second_closure_and_an_upgrade_after_it_are_refused(engine, write_csv):
    got = problems(engine, write_csv("t.csv", TALLY_HEADER, [
        "A1,F1,甲厂,closure,JT-YT,COD,18.4,,,t/a,2021,2022-01-01,m,x,R1",
        "A2,f1,甲厂,upgrade,JT-YT,COD,18.4,,1,t/a,2022,2023-01-01,m,x,R2",
        "A3,Ｆ1,甲厂,closure,JT-YT,COD,18.4,,,t/a,2022,2023-01-01,m,x,R3"]))
    assert set(got) == {(3, "measure"), (4, "pollutant")}


@pytest.mark.parametrize("typed, why", [
    ("12,5", "ambiguous number '12,5': use a dot for decimals"),
    ("1,2,3.4", "a comma only separates thousands, in groups of three"),
    ("1_000", "no underscores"),
    ("1e3", "no exponent"),
    ("1000001", "implausibly large: more than 1,000,000 t/a"),
])
def test_a_number_that_could_be_misread_is_refused_with_row_and_column(db_url, write_csv, typed, why):
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    path = write_csv("n.csv", TALLY_HEADER, [
        "N0,S1,甲厂,closure,JT-YT,COD,2,,,t/a,2020,2024-01-01,m,x,R0",
        f'N1,S2,乙厂,closure,JT-YT,COD,"{typed}",,,t/a,2020,2024-01-01,m,x,R1'])
    result = quota(db_url, "tally", "import", path)
    assert result.exit_code == 1 and "n.csv:3 [baseline_actual]" in result.stderr and why in result.stderr
    proj = write_csv("p.csv", PROJECT_HEADER, [f'P1,甲,JT-YT,chemical,COD,"{typed}",t/a,"1,000",,false,'])
    result = quota(db_url, "project", "import", proj)
    assert result.exit_code == 1 and "p.csv:2 [increment]" in result.stderr and why in result.stderr
    assert "[priority]" not in result.stderr  # 1,000 is a valid whole number


def test_full_width_digits_and_punctuation_read_as_ascii(engine, write_csv):
    tallies.import_tallies(engine, write_csv("f.csv", TALLY_HEADER, [
        "Ｆ１,ｓ１,甲厂,ｃｌｏｓｕｒｅ,ｊｔ－ｙｔ,ｃｏｄ,１８．４,２０,,ｔ／ａ,２０２１,２０２２－０９－１５,m,x,R1",
        'F2,S2,乙厂,closure,JT-YT,NOX,"１，２３４.5",,,t/a,2021,2022-09-15,m,x,R2']), actor="clerk")
    rows = {r["tally_id"]: r for r in balances.balance(engine, by="lot")["rows"]}
    assert rows["F1"]["issued_g"] == 18_400_000 and rows["F1"]["source_id"] == "S1"
    assert rows["F1"]["zone"] == "JT-YT" and rows["F1"]["pollutant"] == "COD"
    assert rows["F2"]["issued_g"] == 1_234_500_000
    project_files.import_projects(engine, write_csv("p.csv", PROJECT_HEADER, [
        "ｐ1,甲,JT-YT,chemical,COD,１２．５,t/a,２,,false,"]), actor="clerk")
    (p,) = projects.project_rows(engine)
    assert (p["project_id"], p["priority"], p["needs"][0]["increment_g"]) == ("P1", 2, 12_500_000)


@pytest.mark.parametrize("pid, why", [
    ("P2026-01\u200b", "invisible character U+200B (ZERO WIDTH SPACE)"),
    ("P2026-\u202e10", "bidirectional control U+202E (RIGHT-TO-LEFT OVERRIDE)"),
    ("P2026-01\u2066", "bidirectional control U+2066"),
])
def test_a_look_alike_project_id_is_refused(db_url, write_csv, pid, why):
    assert quota(db_url, "init", "--rules", str(DATA / "rules.toml")).exit_code == 0
    assert quota(db_url, "project", "import", str(DATA / "projects.csv")).exit_code == 0
    path = write_csv("p.csv", PROJECT_HEADER, [f"{pid},仿冒项目,JT-YT,chemical,COD,8.0,t/a,5,,false,"])
    result = quota(db_url, "project", "import", path)
    assert result.exit_code == 1 and "p.csv:2 [project_id]" in result.stderr and why in result.stderr


def test_a_project_id_in_another_case_or_width_is_already_registered(engine, write_csv):
    project_files.import_projects(engine, str(DATA / "projects.csv"), actor="clerk")
    got = problems(engine, write_csv("p.csv", PROJECT_HEADER, ["ｐ2026-01,仿冒项目,JT-YT,chemical,COD,8,t/a,5,,false,"]),
                   project_files.import_projects)
    assert "project 'P2026-01' is already registered" in got[(2, "project_id")]


def test_names_refuse_line_breaks_escapes_and_bidi_controls(engine, write_csv):
    got = problems(engine, write_csv("t.csv", TALLY_HEADER, [
        '"N1",S1,"甲厂\r\n| fake | row |",closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,R1',
        "N2,S2,乙厂\x1b[31m,closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,R2",
        "N3,S3,丙厂\u202e,closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,R3"]))
    assert {k for k in got} == {(2, "source_name"), (3, "source_name"), (4, "source_name")}
    assert "line break U+000D" in got[(2, "source_name")] and "U+001B" in got[(3, "source_name")]


def test_scenario_ids_and_numbers_follow_the_same_rules(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[[projects]]\nproject_id = "x1"\nzone = "jt-yt"\nneeds = { cod = "１２．５" }\n'
                    '[[lots]]\nid = "h1"\nzone = "JT-YT"\npollutant = "COD"\namount = "1,000"\n', encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8") + '[rules]\nnon_attainment = { "jt-yt" = ["water"] }\n'
                    '[[rules.ratio_rule]]\nratio = 3\npollutant = "cod"\nzone = "ｊｔ-ｙｔ"\n', encoding="utf-8")
    sc = scenario.load_scenario(str(path), BOOK)
    assert sc.non_attainment == {"JT-YT": ("water",)}
    assert (sc.ratio_rules[0].pollutant, sc.ratio_rules[0].zone) == ("COD", "JT-YT")
    assert (sc.projects[0].project_id, sc.projects[0].zone, sc.projects[0].needs) == ("X1", "JT-YT", {"COD": 12_500_000})
    assert (sc.lots[0].lot_id, sc.lots[0].amount_g) == ("H1", 1_000_000_000)
    path.write_text('[[projects]]\nproject_id = "X\u200b1"\nzone = "JT-YT"\nneeds = { COD = "12,5" }\n'
                    'remove_projects = ["P\u202e1"]\n', encoding="utf-8")
    with pytest.raises(ValidationFailed) as info:
        scenario.load_scenario(str(path), BOOK)
    got = {p.column: p.message for p in info.value.problems}
    assert "invisible character U+200B" in got["projects[1].project_id"]
    assert "ambiguous number '12,5'" in got["projects[1].needs.COD"]
    path.write_text('[[projects]]\nproject_id = "X1"\nzone = "JT-YT"\nneeds = { COD = 1.2e1 }\n', encoding="utf-8")
    with pytest.raises(ValidationFailed) as info:
        scenario.load_scenario(str(path), BOOK)
    assert info.value.problems[0].row == 4 and "no exponent" in info.value.problems[0].message


def test_an_import_past_the_64_bit_total_is_refused(sample, write_csv, monkeypatch):
    """Every total fits in 64-bit grams: an import that would take the ledger's issued total past
    the limit is refused (the limit lowered here to the sample's total, as 9.2 million rows at the
    per-row bound would be needed to reach 2^63 g)."""
    with sample.connect() as conn:
        issued = conn.execute(sa.text("SELECT SUM(issued_g) FROM lot")).scalar_one()
    monkeypatch.setattr(units, "MAX_TOTAL_G", int(issued) + 999_999)
    before = snapshot(sample)
    got = problems(sample, write_csv("o.csv", TALLY_HEADER, [
        "O1,O1,大厂,closure,JT-YT,COD,1,,,t/a,2020,2024-01-01,m,x,R1"]))
    assert "overflow" in got[(0, "")] and "64-bit" in got[(0, "")]
    assert snapshot(sample) == before


AMOUNTS = [("posting", "amount_g"), ("balance", "amount_g"), ("balance_total", "amount_g"),
           ("lot", "issued_g"), ("tally", "creditable_g"), ("project_need", "increment_g")]


@pytest.mark.parametrize("table, column", AMOUNTS)
def test_an_amount_column_never_holds_a_non_integer(sample, table, column):
    """SQLite turns an integer past 2^63 into REAL silently: the 0010 triggers refuse it (and any
    REAL); PostgreSQL's BIGINT refuses a value out of range."""
    project_files.import_projects(sample, str(DATA / "projects.csv"), actor="clerk")
    operations.reserve(sample, "P2026-01", actor="clerk", date=dt.date(2026, 11, 29))
    sqlite = sample.dialect.name == "sqlite"
    bad = [1.5, 2.0 ** 63] if sqlite else [2 ** 63]
    with sample.connect() as conn:
        row = dict(conn.execute(sa.text(f"SELECT * FROM {table} LIMIT 1")).mappings().one())
        pk = [c for c in sa.inspect(sample).get_pk_constraint(table)["constrained_columns"]]
    for n, value in enumerate(bad):
        new = dict(row)
        new.pop("id", None)
        for key in ("serial", "tally_id") if table in ("lot", "tally") else ():
            if key in row:
                new[key] = f"{row[key]}-X{n}"
        first = None
        if table == "lot":  # its tally first, in the same transaction (a lot names one tally)
            with sample.connect() as conn:
                t = dict(conn.execute(sa.text("SELECT * FROM tally WHERE tally_id = :t"),
                                      {"t": row["tally_id"]}).mappings().one())
            t["tally_id"] = new["tally_id"]
            first = (f"INSERT INTO tally ({', '.join(t)}) VALUES ({', '.join(':' + k for k in t)})", t)
        new[column] = value
        if table in ("balance", "balance_total", "project_need"):
            sql = f"UPDATE {table} SET {column} = :v WHERE " + " AND ".join(f"{k} = :{k}" for k in pk)
            args = {"v": value, **{k: row[k] for k in pk}}
        else:
            sql = f"INSERT INTO {table} ({', '.join(new)}) VALUES ({', '.join(':' + k for k in new)})"
            args = new
        with pytest.raises(sa.exc.DBAPIError) as info:
            with sample.begin() as conn:
                if first:
                    conn.execute(sa.text(first[0]), first[1])
                conn.execute(sa.text(sql), args)
        assert ("must be a whole number of grams" if sqlite else "out of range") in str(info.value)
    if sqlite and table in ("balance", "balance_total"):  # integer arithmetic past 2^63 is refused too
        with pytest.raises(sa.exc.DBAPIError, match="whole number of grams"):
            with sample.begin() as conn:
                conn.execute(sa.text(f"UPDATE {table} SET {column} = {column} + 9223372036854775807 "
                                     f"WHERE {column} > 0"))
    assert trace.verify(sample)[1] == []


def bean_check(path: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("bean-check", path=str(Path(sys.executable).parent)) or "bean-check"
    return subprocess.run([exe, str(path)], capture_output=True, text=True, timeout=120)


def test_beancount_keeps_one_account_per_distinct_project_id(sample, write_csv, tmp_path):
    project_files.import_projects(sample, write_csv("p.csv", PROJECT_HEADER, [
        "金坛-01,金坛项目,JT-YT,chemical,COD,1,t/a,1,,false,",
        "溧阳-01,溧阳项目,JT-YT,chemical,COD,2,t/a,1,,false,",
        "P-01,普通项目,JT-YT,chemical,COD,3,t/a,1,,false,"]), actor="clerk")
    for pid in ("金坛-01", "溧阳-01", "P-01"):
        operations.reserve(sample, pid, actor="clerk", date=dt.date(2026, 11, 29))
    path = tmp_path / "l.beancount"
    with open(path, "w", encoding="utf-8") as fh:
        beancount_export.write_beancount(sample, fh, today=dt.date(2026, 12, 1))
    check = bean_check(path)
    assert check.returncode == 0, check.stdout + check.stderr
    from beancount import loader
    from beancount.core import data
    entries, errors, _ = loader.load_file(str(path))
    assert errors == []
    reserved = {e.account: e.meta.get("project") for e in entries
                if isinstance(e, data.Open) and e.account.startswith("Assets:Reserved:")}
    assert sorted(reserved.values()) == ["P-01", "溧阳-01", "金坛-01"]  # three accounts, each its project
    assert reserved["Assets:Reserved:P-01"] == "P-01"  # an ASCII id keeps its plain name
    held = {(e.account, e.amount.number) for e in entries if isinstance(e, data.Balance)
            and e.account.startswith("Assets:Reserved:")}
    assert {n for _, n in held} == {1, 2, 3}
    assert beancount_export.component("金坛-01") != beancount_export.component("溧阳-01")
    assert beancount_export.component("01-U12345678") != "01-U12345678"  # a look-alike of a hashed name


def test_a_project_file_changed_while_it_is_read_is_refused(engine, write_csv, monkeypatch):
    """The rows imported are the content recorded under the file's hash: a file rewritten between the hash and
    the read is refused (file_changed) and nothing is written."""
    from quota.intake import project_files as pf
    path = write_csv("p.csv", PROJECT_HEADER, ["P-X,甲,JT-YT,food,COD,2,t/a,1,,false,"])
    real = pf.validate_rows

    def swapped(p, *a, **kw):
        with open(p, "a", encoding="utf-8") as fh:
            fh.write("P-Y,乙,JT-YT,food,COD,3,t/a,1,,false,\n")
        return real(p, *a, **kw)

    monkeypatch.setattr(pf, "validate_rows", swapped)
    before = snapshot(engine)
    with pytest.raises(ValidationFailed) as exc:
        pf.import_projects(engine, path, actor="clerk")
    assert [p.code for p in exc.value.problems] == ["file_changed"]
    assert snapshot(engine) == before
