"""Project files: validation and import into the project register."""
from __future__ import annotations

from pathlib import Path

from sqlalchemy import Connection, Engine, text

from quota.intake import batches
from quota import clock
from quota.store import db
from quota.ledger import idempotency
from quota import identity
from quota.ledger import posting
from quota.rules import versions
from quota import units
from quota.errors import Problem, ValidationFailed
from quota.intake.fields import RowReader
from quota.rules.book import Rulebook
from quota.ledger.projects import register_meta
from quota.intake.columns import PROJECT_NAMES, PROJECT_OPTIONAL, PROJECT_REQUIRED
from quota.intake.tables import alias_map, file_sha256, preview_rows, read_rows

REQUIRED, OPTIONAL = PROJECT_REQUIRED, PROJECT_OPTIONAL
ALIASES = alias_map(PROJECT_NAMES)
SHARED = ("name", "zone", "industry", "priority", "needed_by", "must_fund")


def preview(path: str, sheet: str | None = None, marked=()) -> dict | None:
    """The file's rows as an import reads them, for a preview beside its problems (tables.preview_rows)."""
    return preview_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet, marked)


def validate_rows(path: str, book: Rulebook, sheet: str | None = None,
                  read: dict | None = None) -> tuple[list[dict], list[Problem]]:
    """Parse and check a project file; one dict per project with its needs. `sheet` names the sheet of a
    workbook; `read` receives how the file was read (tables.read_rows: encoding, sheet)."""
    rows, problems = read_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet=sheet, info=read)
    name = Path(path).name
    projects: dict[str, dict] = {}
    for rowno, cells in rows:
        before = len(problems)
        r = RowReader(name, rowno, cells, problems)
        pid = r.code("project_id")
        pname = r.text("name")
        zone, pollutant, unit = r.zone_pollutant_unit(book)
        increment = r.amount("increment", unit=unit)
        if increment is not None and increment == 0:
            r.fail("increment", "zero_increment")
        ratio_raw = r.amount("ratio", required=False)
        if ratio_raw is not None and not (1 <= ratio_raw <= 100):
            r.fail("ratio", "bad_ratio", value=str(ratio_raw))
        shared = {"name": pname, "zone": zone, "industry": r.text("industry", False),
                  "priority": r.priority("priority"),
                  "needed_by": r.date("needed_by", required=False), "must_fund": r.boolean("must_fund")}
        if pid in projects:
            first = projects[pid]
            for col in SHARED:
                if first[col] != shared[col]:
                    r.fail(col, "project_differs", first_row=first["row"], project_id=pid, value=str(first[col]))
            if pollutant in first["needs"]:
                r.fail("pollutant", "repeated_need", project_id=pid, pollutant=pollutant,
                       first_row=first["needs"][pollutant]["row"])
        if len(problems) > before:
            continue
        proj = projects.setdefault(pid, {"project_id": pid, "row": rowno, **shared, "needs": {}})
        proj["needs"][pollutant] = {"row": rowno, "increment_g": units.to_requirement_g(increment, unit),
                                    "ratio": None if ratio_raw is None else str(ratio_raw)}
    if not rows and not problems:
        problems.append(Problem.of(name, 0, "", "no_data_rows"))
    return list(projects.values()), problems


def import_projects(engine: Engine, path: str, *, actor: str, key: str | None = None,
                    dry_run: bool = False, sheet: str | None = None, read: dict | None = None) -> dict:
    """Validate a project file and add its projects to the pipeline, all or nothing. `sheet` names the sheet of
    a workbook (default: the first with the columns); `read` receives how the file was read (encoding, sheet),
    also when it is refused."""
    name = Path(path).name
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
    sha = file_sha256(path) if Path(path).is_file() else ""  # (reading says what else it is)
    projects, problems = validate_rows(path, book, sheet, read)
    if problems:
        raise ValidationFailed(problems)
    if file_sha256(path) != sha:  # the rows read are the content recorded under its hash
        raise ValidationFailed([Problem.of(name, 0, "", "file_changed")])

    def check(conn: Connection) -> list[Problem]:
        # every stored id by its normal form: an id stored before ids were normalised still matches
        existing = {identity.loose(r[0]): r[0] for r in conn.execute(text("SELECT project_id FROM project"))}
        return [Problem.of(name, p["row"], "project_id", "project_exists",
                           project_id=existing[identity.loose(p["project_id"])])
                for p in projects if identity.loose(p["project_id"]) in existing]

    summary = {"projects": len(projects), "rows": sum(len(p["needs"]) for p in projects),
               "project_ids": sorted(p["project_id"] for p in projects), "dry_run": dry_run}
    if dry_run:
        with db.reading(engine) as conn:
            found = check(conn)
        if found:
            raise ValidationFailed(found)
        return summary

    def work(conn: Connection) -> dict:
        found = check(conn)
        if found:
            raise ValidationFailed(found)
        batch = batches.record(conn, "project", name, sha, summary["rows"], posting.now_iso(), actor)
        conn.execute(text("INSERT INTO project (project_id, name, zone, industry, priority_e4, needed_by, must_fund, "
                          "state, import_id) VALUES (:project_id, :name, :zone, :industry, :priority, :needed_by, "
                          ":must_fund, 'pipeline', :b)"),
                     [{k: p[k] for k in ("project_id", *SHARED)} | {"priority": units.priority_e4(p["priority"]),
                                                                    "b": batch} for p in projects])
        conn.execute(text("INSERT INTO project_need (project_id, pollutant, increment_g, ratio) "
                          "VALUES (:p, :q, :g, :r)"),
                     [{"p": p["project_id"], "q": q, "g": n["increment_g"], "r": n["ratio"]}
                      for p in projects for q, n in sorted(p["needs"].items())])
        version, _ = versions.current(conn)
        seq = posting.post_many(conn, [posting.TxnSpec("register", clock.today(), [], f"register {len(projects)} "
                                                     f"project(s) from {name}", sha, None,
                                                     {"projects": register_meta(projects)})],
                               actor=actor, rulebook=version)[0]
        return {**summary, "import_id": int(batch), "txn": seq}

    return idempotency.run(engine, key, "project import", {"sha256": sha}, work, actor=actor)
