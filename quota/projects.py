"""Project import and the requirement of each project (ratio applied, rounded up)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import NamedTuple

from sqlalchemy import Connection, Engine, text

from . import clock, db, idempotency, identity, ledger, rulebooks, units
from .errors import NotFound, Problem, ValidationFailed
from .fields import RowReader
from .rules import Rulebook
from .tables import alias_map, file_sha256, read_rows

REQUIRED = ["project_id", "name", "zone", "pollutant", "increment", "unit"]
OPTIONAL = ["industry", "priority", "needed_by", "must_fund", "ratio"]
ALIASES = alias_map({
    "project_id": ["项目编号"], "name": ["项目名称"], "zone": ["区域", "所在区域", "控制单元"],
    "industry": ["行业", "行业类别"], "pollutant": ["污染物", "污染因子"],
    "increment": ["新增排放量", "新增量", "排放增量"], "unit": ["单位", "计量单位"], "priority": ["优先级"],
    "needed_by": ["需求日期", "需要日期"], "must_fund": ["必须保障", "必保"], "ratio": ["替代比例", "削减替代比例"],
})
SHARED = ("name", "zone", "industry", "priority", "needed_by", "must_fund")


class Need(NamedTuple):
    """One pollutant a project needs: its increment, the ratio and why, the grams required, the matching key."""
    pollutant: str
    increment_g: int
    ratio: Decimal
    reasons: tuple[str, ...]
    required_g: int
    key: str


@dataclass
class ProjectInfo:
    project_id: str
    name: str
    zone: str
    industry: str
    priority: int
    needed_by: dt.date | None
    must_fund: bool
    state: str
    needs: list[Need] = field(default_factory=list)
    reserved_until: dt.date | None = None  # the reservation's lapse date, when reserved with one


def required_g(increment_g: int, ratio: Decimal) -> int:
    """ceil(increment_g * ratio): requirements round up."""
    return units.ceil_g(Decimal(increment_g) * ratio)


def validate_rows(path: str, book: Rulebook) -> tuple[list[dict], list[Problem]]:
    """Parse and check a project file; one dict per project with its needs."""
    rows, problems = read_rows(path, ALIASES, REQUIRED, OPTIONAL)
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
            r.fail("increment", "increment must be greater than zero")
        ratio_raw = r.amount("ratio", required=False)
        if ratio_raw is not None and not (1 <= ratio_raw <= 100):
            r.fail("ratio", f"ratio must be from 1 to 100, got {ratio_raw}")
        shared = {"name": pname, "zone": zone, "industry": r.text("industry", False),
                  "priority": r.integer("priority", 1, 1, 1_000_000),
                  "needed_by": r.date("needed_by", required=False), "must_fund": r.boolean("must_fund")}
        if pid in projects:
            first = projects[pid]
            for col in SHARED:
                if first[col] != shared[col]:
                    r.fail(col, f"differs from row {first['row']} of project {pid} ({first[col]!r})")
            if pollutant in first["needs"]:
                r.fail("pollutant", f"project {pid} already lists {pollutant} at row {first['needs'][pollutant]['row']}")
        if len(problems) > before:
            continue
        proj = projects.setdefault(pid, {"project_id": pid, "row": rowno, **shared, "needs": {}})
        proj["needs"][pollutant] = {"row": rowno, "increment_g": units.to_requirement_g(increment, unit),
                                    "ratio": None if ratio_raw is None else str(ratio_raw)}
    if not rows and not problems:
        problems.append(Problem(name, 0, "", "the file has no data rows"))
    return list(projects.values()), problems


def import_projects(engine: Engine, path: str, *, actor: str, key: str | None = None,
                    dry_run: bool = False) -> dict:
    """Validate a project file and add its projects to the pipeline, all or nothing."""
    name = Path(path).name
    with db.reading(engine) as conn:
        _, book = rulebooks.current(conn)
    projects, problems = validate_rows(path, book)
    if problems:
        raise ValidationFailed(problems)
    sha = file_sha256(path)

    def check(conn: Connection) -> list[Problem]:
        # every stored id by its normal form: an id stored before ids were normalised still matches
        existing = {identity.loose(r[0]): r[0] for r in conn.execute(text("SELECT project_id FROM project"))}
        return [Problem(name, p["row"], "project_id", f"project {existing[identity.loose(p['project_id'])]!r} "
                                                      "is already registered")
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
        batch = conn.execute(text("INSERT INTO import_batch (kind, file_name, sha256, rows, imported_at, actor) "
                                  "VALUES ('project', :f, :s, :n, :t, :a) RETURNING id"),
                             {"f": name, "s": sha, "n": summary["rows"], "t": ledger.now_iso(), "a": actor}).scalar_one()
        conn.execute(text("INSERT INTO project (project_id, name, zone, industry, priority, needed_by, must_fund, "
                          "state, import_id) VALUES (:project_id, :name, :zone, :industry, :priority, :needed_by, "
                          ":must_fund, 'pipeline', :b)"),
                     [{k: p[k] for k in ("project_id", *SHARED)} | {"b": batch} for p in projects])
        conn.execute(text("INSERT INTO project_need (project_id, pollutant, increment_g, ratio) "
                          "VALUES (:p, :q, :g, :r)"),
                     [{"p": p["project_id"], "q": q, "g": n["increment_g"], "r": n["ratio"]}
                      for p in projects for q, n in sorted(p["needs"].items())])
        version, _ = rulebooks.current(conn)
        seq = ledger.post_many(conn, [ledger.TxnSpec("register", clock.today(), [], f"register {len(projects)} "
                                                     f"project(s) from {name}", sha, None,
                                                     {"projects": register_meta(projects)})],
                               actor=actor, rulebook=version)[0]
        return {**summary, "import_id": int(batch), "txn": seq}

    return idempotency.run(engine, key, "project import", {"sha256": sha}, work)


def register_meta(projects: list[dict]) -> dict:
    """What a `register` transaction commits about each project: its requirement facts (verify compares the
    project and project_need rows with them)."""
    return {p["project_id"]: {"name": p["name"], "zone": p["zone"], "industry": p["industry"],
                              "priority": p["priority"],
                              "needed_by": p["needed_by"].isoformat() if p["needed_by"] else None,
                              "must_fund": bool(p["must_fund"]),
                              "needs": {q: {"increment_g": n["increment_g"], "ratio": n["ratio"]}
                                        for q, n in sorted(p["needs"].items())}}
            for p in projects}


PROJECT_SQL = ("SELECT p.project_id, p.name, p.zone, p.industry, p.priority, p.needed_by, p.must_fund, p.state, "
               "n.pollutant, n.increment_g, n.ratio, p.reserved_until FROM project p "
               "LEFT JOIN project_need n ON n.project_id = p.project_id")


def load_projects(conn: Connection, book: Rulebook, *, project_id: str | None = None,
                  state: str | None = None) -> list[ProjectInfo]:
    """Projects with their needs (ratio and matching key from the current rulebook), sorted by id."""
    sql, args = PROJECT_SQL, {}
    if project_id is not None:
        sql += " WHERE p.project_id = :p"
        args["p"] = project_id
    elif state is not None:
        sql += " WHERE p.state = :s"
        args["s"] = state
    infos = projects_from_rows(book, conn.execute(text(sql + " ORDER BY p.project_id, n.pollutant"), args))
    if project_id is not None and not infos:
        raise NotFound(f"no project {project_id!r}")
    return infos


def projects_from_rows(book: Rulebook, rows) -> list[ProjectInfo]:
    """ProjectInfo per project from PROJECT_SQL rows ordered by project and pollutant."""
    infos: dict[str, ProjectInfo] = {}
    for r in rows:
        info = infos.get(r[0])
        if info is None:
            info = infos[r[0]] = ProjectInfo(r[0], r[1], r[2], r[3] or "", int(r[4]), ledger._as_date(r[5]),
                                             bool(r[6]), r[7], reserved_until=ledger._as_date(r[11]))
        if r[8] is not None:
            ratio, reasons = book.ratio(r[8], info.industry, info.zone, Decimal(r[10]) if r[10] else None)
            info.needs.append(Need(r[8], int(r[9]), ratio, tuple(reasons), required_g(int(r[9]), ratio),
                                   book.matching_key(r[8], info.zone)))
    return list(infos.values())


def project_rows(engine: Engine, state: str | None = None) -> list[dict]:
    """All projects (or those in `state`) with their needs as plain dicts (for `quota project list`)."""
    with db.reading(engine) as conn:
        _, book = rulebooks.current(conn)
        infos = load_projects(conn, book, state=state)
    return [{"project_id": p.project_id, "name": p.name, "zone": p.zone, "industry": p.industry,
             "priority": p.priority, "needed_by": p.needed_by.isoformat() if p.needed_by else None,
             "must_fund": p.must_fund, "state": p.state,
             "needs": [{"pollutant": n.pollutant, "increment_g": n.increment_g, "ratio": str(n.ratio),
                        "why": list(n.reasons), "required_g": n.required_g, "key": n.key,
                        "unit": book.pollutants[n.pollutant].unit} for n in p.needs]} for p in infos]
