"""The project register: a project, its needs and the grams each requires (ratio applied, rounded up)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import Connection, Engine, text

from quota import clock
from quota.store import db
from quota.rules import versions
from quota import units
from quota.errors import NotFound
from quota.rules.book import Rulebook


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
    priority: int | Decimal  # units.parse_priority: an int when whole, else the exact Decimal
    needed_by: dt.date | None
    must_fund: bool
    state: str
    needs: list[Need] = field(default_factory=list)
    reserved_until: dt.date | None = None  # the reservation's lapse date, when reserved with one


def required_g(increment_g: int, ratio: Decimal) -> int:
    """ceil(increment_g * ratio): requirements round up."""
    return units.ceil_g(Decimal(increment_g) * ratio)


def register_meta(projects: list[dict]) -> dict:
    """What a `register` transaction commits about each project: its requirement facts (verify compares the
    project and project_need rows with them). A whole priority is a JSON integer, as it always was; a decimal
    one its exact text ("7.5"), never a float in the hashed JSON."""
    return {p["project_id"]: {"name": p["name"], "zone": p["zone"], "industry": p["industry"],
                              "priority": p["priority"] if isinstance(p["priority"], int)
                              else units.priority_text(p["priority"]),
                              "needed_by": p["needed_by"].isoformat() if p["needed_by"] else None,
                              "must_fund": bool(p["must_fund"]),
                              "needs": {q: {"increment_g": n["increment_g"], "ratio": n["ratio"]}
                                        for q, n in sorted(p["needs"].items())}}
            for p in projects}


PROJECT_SQL = ("SELECT p.project_id, p.name, p.zone, p.industry, p.priority_e4, p.needed_by, p.must_fund, p.state, "
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
        raise NotFound(what="project", value=project_id)
    return infos


def projects_from_rows(book: Rulebook, rows) -> list[ProjectInfo]:
    """ProjectInfo per project from PROJECT_SQL rows ordered by project and pollutant."""
    infos: dict[str, ProjectInfo] = {}
    for r in rows:
        info = infos.get(r[0])
        if info is None:
            info = infos[r[0]] = ProjectInfo(r[0], r[1], r[2], r[3] or "", units.priority_from_e4(r[4]),
                                             clock.as_date(r[5]),
                                             bool(r[6]), r[7], reserved_until=clock.as_date(r[11]))
        if r[8] is not None:
            ratio, reasons = book.ratio(r[8], info.industry, info.zone, Decimal(r[10]) if r[10] else None)
            info.needs.append(Need(r[8], int(r[9]), ratio, tuple(reasons), required_g(int(r[9]), ratio),
                                   book.matching_key(r[8], info.zone)))
    return list(infos.values())


def project_rows(engine: Engine, state: str | None = None) -> list[dict]:
    """All projects (or those in `state`) with their needs as plain dicts (for `quota project list`)."""
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        infos = load_projects(conn, book, state=state)
    return [{"project_id": p.project_id, "name": p.name, "zone": p.zone, "industry": p.industry,
             "priority": units.priority_json(p.priority),
             "needed_by": p.needed_by.isoformat() if p.needed_by else None,
             "must_fund": p.must_fund, "state": p.state,
             "needs": [{"pollutant": n.pollutant, "increment_g": n.increment_g, "ratio": str(n.ratio),
                        "why": list(n.reasons), "required_g": n.required_g, "key": n.key,
                        "unit": book.pollutants[n.pollutant].unit} for n in p.needs]} for p in infos]
