"""Rulebook versions in the database: initialise, load a new version, read the current one."""
from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from quota.store import db
from quota.store import driver
from quota.ledger import posting
from quota.errors import Problem, ValidationFailed
from quota.rules.book import Rulebook, load_rulebook_file, parse_rulebook


_CACHE: dict[tuple[int, str], Rulebook] = {}


def current(conn: Connection) -> tuple[int, Rulebook]:
    """(version, rulebook) in force now; parsed once per (version, sha256) and cached."""
    try:
        head = driver.state(conn).rulebook  # read with the chain head lock (db.lock_head)
        if head is None:
            head = conn.execute(text("SELECT version, sha256 FROM rulebook ORDER BY version DESC LIMIT 1")).first()
        if head is not None and (int(head[0]), head[1]) in _CACHE:
            return int(head[0]), _CACHE[(int(head[0]), head[1])]
        row = conn.execute(text("SELECT version, text, sha256 FROM rulebook ORDER BY version DESC LIMIT 1")).first()
    except DBAPIError as exc:
        if not db.schema_exists(conn.engine):
            raise db.NotInitialised(reason="no_schema") from None
        raise exc
    if row is None:
        raise db.NotInitialised(reason="no_rulebook")
    book, problems = parse_rulebook(row[1], source=f"rulebook v{row[0]}")
    if problems:  # pragma: no cover - it was validated when loaded
        raise ValidationFailed(problems)
    _CACHE[(int(row[0]), row[2])] = book
    return int(row[0]), book


def init(engine: Engine, rules_path: str, actor: str) -> dict:
    """Create the schema (if needed) and load the rulebook as version 1 (or a new version)."""
    from quota.store import migrate
    book = load_rulebook_file(rules_path)
    migrate.upgrade(engine)
    return db.run_write(engine, lambda conn: _store(conn, book, rules_path, actor))


def load(engine: Engine, rules_path: str, actor: str) -> dict:
    """Load a new rulebook version; refuse one that drops a pollutant or zone in use."""
    book = load_rulebook_file(rules_path)
    return db.run_write(engine, lambda conn: _store(conn, book, rules_path, actor))


def _store(conn: Connection, book: Rulebook, path: str, actor: str) -> dict:
    row = conn.execute(text("SELECT version, sha256 FROM rulebook ORDER BY version DESC LIMIT 1")).first()
    if row is not None and row[1] == book.sha256:
        return {"version": int(row[0]), "sha256": book.sha256, "changed": False}
    problems = []
    used_p = {r[0] for r in conn.execute(text(
        "SELECT pollutant FROM lot UNION SELECT pollutant FROM project_need"))}
    used_z = {r[0] for r in conn.execute(text("SELECT zone FROM lot UNION SELECT zone FROM project"))}
    for code in sorted(used_p - set(book.pollutants)):
        problems.append(Problem.of(path, 0, "pollutants", "code_in_use", what="pollutant", value=code))
    for code in sorted(used_z - set(book.zones)):
        problems.append(Problem.of(path, 0, "zones", "code_in_use", what="zone", value=code))
    if problems:
        raise ValidationFailed(problems)
    version = (int(row[0]) if row else 0) + 1
    driver.state(conn).rulebook = None  # a new version: what lock_head read is no longer current
    conn.execute(text("INSERT INTO rulebook (version, sha256, text, loaded_at, actor) "
                      "VALUES (:v, :s, :t, :b, :a)"),
                 {"v": version, "s": book.sha256, "t": book.text, "b": posting.now_iso(), "a": actor})
    conn.execute(text("INSERT INTO matching (version, pollutant, zone, key) VALUES (:v, :p, :z, :k)"),
                 [dict(zip("vpzk", r)) for r in matching_rows(version, book)])
    return {"version": version, "sha256": book.sha256, "changed": True}


class MatchingRow(NamedTuple):
    """A row of the matching table: under rulebook `version`, `pollutant` in `zone` has matching key `key`."""
    version: int
    pollutant: str
    zone: str
    key: str


def matching_rows(version: int, book: Rulebook) -> list[MatchingRow]:
    """The matching table's rows for every pollutant and zone of the rulebook."""
    return [MatchingRow(version, p, z, book.matching_key(p, z))
            for p in sorted(book.pollutants) for z in sorted(book.zones)]


def check_matching(conn: Connection) -> list[Problem]:
    """The stored matching keys must be exactly those each rulebook version gives."""
    stored = sorted(tuple(r) for r in conn.execute(text("SELECT version, pollutant, zone, key FROM matching")))
    want = []
    for version, body in conn.execute(text("SELECT version, text FROM rulebook ORDER BY version")):
        book, _ = parse_rulebook(body, source=f"rulebook v{version}")
        want += matching_rows(int(version), book)
    if stored == sorted(want):
        return []
    diff = sorted(set(stored) ^ set(want))[:3]
    return [Problem.of("matching", 0, "key", "matching_differs", rows=[" ".join(map(str, d)) for d in diff])]


def describe(book: Rulebook) -> dict:
    """A plain summary of the rulebook for display and --json."""
    return {
        "jurisdiction": {"code": book.jurisdiction_code, "name": book.jurisdiction_name,
                         "name_zh": book.jurisdiction_name_zh},
        "pollutants": [vars(p) for p in sorted(book.pollutants.values(), key=lambda p: p.code)],
        "zones": [{**vars(z), "non_attainment": list(z.non_attainment)}
                  for z in sorted(book.zones.values(), key=lambda z: z.code)],
        "matching": dict(sorted(book.matching.items())),
        "ratios": {"default": str(book.ratio_default), "non_attainment": str(book.ratio_non_attainment),
                   "rules": [{k: (str(v) if v is not None else None) for k, v in vars(r).items()}
                             for r in book.ratio_rules]},
        "crediting": {"baseline": book.baseline, "discount": str(book.discount),
                      "life_years": book.life_years},
    }


def show(engine: Engine) -> dict:
    """The rulebook in force as data: {"version", ...describe(book)} (what `quota rules show --json` prints)."""
    with db.reading(engine) as conn:
        version, book = current(conn)
    return {"version": version, **describe(book)}
