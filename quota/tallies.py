"""Tally import: validate every row (errors as data), then credit each tally as one lot."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, text

from . import clock, db, driver, idempotency, ledger, rulebooks, units
from .errors import Problem, ValidationFailed
from .fields import RowReader
from .rules import Rulebook
from .tables import alias_map, file_sha256, read_rows

REQUIRED = ["tally_id", "source_id", "source_name", "measure", "zone", "pollutant", "baseline_actual",
            "unit", "effective_date", "report_no"]
OPTIONAL = ["permitted", "post", "baseline_year", "method", "assessor", "supersedes"]
ALIASES = alias_map({
    "tally_id": ["测算编号"], "source_id": ["平衡源编号", "企业编号", "源编号"],
    "source_name": ["企业名称", "平衡源名称", "项目名称"], "measure": ["措施", "削减方式", "类型"],
    "zone": ["区域", "控制单元", "所在区域"], "pollutant": ["污染物", "污染因子"],
    "baseline_actual": ["基准排放量", "实际排放量", "基准年实际排放量"], "permitted": ["许可排放量", "许可量"],
    "post": ["改造后排放量", "削减后排放量"], "unit": ["单位", "计量单位"], "baseline_year": ["基准年"],
    "effective_date": ["生效日期", "入库日期"], "method": ["测算方法", "核算方法"],
    "assessor": ["测算单位", "第三方机构", "核算单位"], "report_no": ["报告编号", "测算报告编号"],
    "supersedes": ["替代测算编号", "取代"],
})
MEASURES = {"closure": "closure", "关闭": "closure", "关停": "closure", "关闭项目": "closure",
            "upgrade": "upgrade", "提升改造": "upgrade", "改造": "upgrade", "提升改造项目": "upgrade"}


@dataclass(frozen=True)
class TallyRecord:
    row: int
    tally_id: str
    source_id: str
    source_name: str
    measure: str
    zone: str
    pollutant: str
    baseline_actual: Decimal
    permitted: Decimal | None
    post: Decimal | None
    unit: str
    baseline_year: int | None
    effective_date: dt.date
    method: str
    assessor: str
    report_no: str
    supersedes: str
    creditable_g: int


def creditable_g(book: Rulebook, measure: str, unit: str, actual: Decimal,
                 permitted: Decimal | None, post: Decimal | None) -> int:
    """Creditable grams of one tally (DESIGN 3), rounded down to the gram."""
    baseline = actual
    if book.baseline == "min_actual_permitted" and permitted is not None:
        baseline = min(actual, permitted)
    reduction = baseline if measure == "closure" else baseline - (post or Decimal(0))
    return units.floor_g(units.grams_exact(reduction, unit) * (1 - book.discount))


def validate_rows(path: str, book: Rulebook) -> tuple[list[TallyRecord], list[Problem]]:
    """Parse and check a tally file against the rulebook alone (no database)."""
    rows, problems = read_rows(path, ALIASES, REQUIRED, OPTIONAL)
    name = Path(path).name
    records: list[TallyRecord] = []
    seen_ids: dict[str, int] = {}
    seen_measure: dict[tuple, int] = {}
    sources: dict[str, tuple[str, str, int]] = {}
    for rowno, cells in rows:
        before = len(problems)
        r = RowReader(name, rowno, cells, problems)
        tally_id = r.text("tally_id", max_len=64)
        source_id = r.text("source_id", max_len=64)
        source_name = r.text("source_name", multiline=True)
        measure = r.choice("measure", MEASURES)
        zone, pollutant, unit = r.zone_pollutant_unit(book)
        actual = r.amount("baseline_actual")
        permitted = r.amount("permitted", required=False)
        post = r.amount("post", required=False)
        year = r.integer("baseline_year", 0, 1950, 2100) or None
        effective = r.date("effective_date")
        if effective is not None and effective > clock.today():
            r.fail("effective_date", f"effective date {effective} is after today ({clock.today()}): a tally is "
                   "registered once its reduction has taken effect")
        report_no = r.text("report_no", max_len=100)
        if measure == "closure" and post:
            r.fail("post", f"a closure has no post-measure emissions: post must be empty or 0, got {post}")
        if measure == "upgrade" and actual is not None:
            base = min(actual, permitted) if (permitted is not None and book.baseline == "min_actual_permitted") else actual
            if post is None:
                r.fail("post", "an upgrade needs its post-upgrade emissions")
            elif post >= base:
                r.fail("post", f"post-upgrade emissions {post} are not below the baseline {base}: no reduction")
        if tally_id in seen_ids:
            r.fail("tally_id", f"tally_id {tally_id!r} repeats row {seen_ids[tally_id]}")
        seen_ids.setdefault(tally_id, rowno)
        key = (source_id, pollutant, measure)
        if all(key) and key in seen_measure:
            r.fail("pollutant", f"source {source_id} already has a {measure} tally of {pollutant} at row "
                   f"{seen_measure[key]} (double counting)")
        seen_measure.setdefault(key, rowno)
        if source_id in sources and sources[source_id][:2] != (source_name, zone):
            r.fail("source_id", f"source {source_id} has another name or zone at row {sources[source_id][2]}")
        sources.setdefault(source_id, (source_name, zone, rowno))
        if len(problems) > before:
            continue
        credit = creditable_g(book, measure, unit, actual, permitted, post)
        if credit <= 0:
            r.fail("baseline_actual", "creditable amount is zero after rounding and discount")
            continue
        records.append(TallyRecord(rowno, tally_id, source_id, source_name, measure, zone, pollutant, actual,
                                   permitted, post, unit, year, effective, r.text("method", False),
                                   r.text("assessor", False), report_no,
                                   r.text("supersedes", False, 64), credit))
    if not rows and not problems:
        problems.append(Problem(name, 0, "", "the file has no data rows"))
    return records, problems


def check_ledger(conn: Connection, name: str, sha: str, records: list[TallyRecord]) -> list[Problem]:
    """Rules that need the database: repeated file, tally ids, double counting, supersession."""
    problems: list[Problem] = []
    prior = conn.execute(text("SELECT id, imported_at FROM import_batch WHERE kind = 'tally' AND sha256 = :s"),
                         {"s": sha}).first()
    if prior:
        problems.append(Problem(name, 0, "", f"this file was already imported (batch {prior[0]} at {prior[1]})"))
    ids = [r.tally_id for r in records]
    existing = set()
    for i in range(0, len(ids), 500):
        existing |= {row[0] for row in conn.execute(
            text("SELECT tally_id FROM tally WHERE tally_id IN :ids").bindparams(bindparam("ids", expanding=True)),
            {"ids": ids[i:i + 500]})}
    # the current tally of each (source, pollutant, measure): one that no other tally supersedes
    wanted = {(r.source_id, r.pollutant, r.measure) for r in records}
    rows = conn.execute(text("SELECT source_id, pollutant, measure, tally_id, supersedes FROM tally")).all()
    superseded = {r[4] for r in rows if r[4]}
    measures = {(r[0], r[1], r[2]): r[3] for r in rows
                if (r[0], r[1], r[2]) in wanted and r[3] not in superseded}
    zones = dict(conn.execute(text("SELECT source_id, zone FROM source")).all())
    for r in records:
        if r.tally_id in existing:
            problems.append(Problem(name, r.row, "tally_id", f"tally {r.tally_id!r} is already in the ledger"))
        current = measures.get((r.source_id, r.pollutant, r.measure))
        if r.supersedes:
            if current != r.supersedes:
                problems.append(Problem(name, r.row, "supersedes",
                                        f"{r.supersedes!r} is not the current {r.measure} tally of {r.pollutant} "
                                        f"for source {r.source_id} (current: {current or 'none'})"))
        elif current:
            problems.append(Problem(name, r.row, "pollutant",
                                    f"source {r.source_id} already has {r.measure} tally {current} of {r.pollutant} "
                                    "(double counting; give `supersedes` to replace it)"))
        if r.source_id in zones and zones[r.source_id] != r.zone:
            problems.append(Problem(name, r.row, "zone", f"source {r.source_id} is registered in zone "
                                    f"{zones[r.source_id]}, not {r.zone}"))
    return problems


def import_tallies(engine: Engine, path: str, *, actor: str, key: str | None = None,
                   dry_run: bool = False, progress=None) -> dict:
    """Validate a tally file and, if every row is valid, credit each tally as a lot.

    All or nothing: any problem raises ValidationFailed listing every problem, and nothing
    is written. With `dry_run`, the checks run and nothing is written either way.
    """
    name = Path(path).name
    with db.reading(engine) as conn:
        version, book = rulebooks.current(conn)
    if progress:
        progress("validate", 0, 2)
    records, problems = validate_rows(path, book)
    if progress:
        progress("validate", 1, 2)
    if problems:
        raise ValidationFailed(problems)
    sha = file_sha256(path)
    if dry_run:
        with db.reading(engine) as conn:
            problems = check_ledger(conn, name, sha, records)
        if problems:
            raise ValidationFailed(problems)
        return _summary(records, book, [], dry_run=True)

    def work(conn: Connection) -> dict:
        found = check_ledger(conn, name, sha, records)
        if found:
            raise ValidationFailed(found)
        if progress:
            progress("validate", 2, 2)
        return _register(conn, records, book, version, name, sha, actor, progress)

    return idempotency.run(engine, key, "tally import", {"sha256": sha}, work)


def _register(conn: Connection, records: list[TallyRecord], book: Rulebook, version: int, name: str,
              sha: str, actor: str, progress=None) -> dict:
    now = ledger.now_iso()
    batch = conn.execute(text("INSERT INTO import_batch (kind, file_name, sha256, rows, imported_at, actor) "
                              "VALUES ('tally', :f, :s, :n, :t, :a) RETURNING id"),
                         {"f": name, "s": sha, "n": len(records), "t": now, "a": actor}).scalar_one()
    known = {r[0] for r in conn.execute(text("SELECT source_id FROM source"))}
    new_sources = {}
    for r in records:
        if r.source_id not in known:
            new_sources.setdefault(r.source_id, {"i": r.source_id, "n": r.source_name, "z": r.zone})
    db.insert_many(conn, "source", ["source_id", "name", "zone"],
                   [(new_sources[k]["i"], new_sources[k]["n"], new_sources[k]["z"]) for k in sorted(new_sources)])
    nlots = conn.execute(text("SELECT count(*) FROM lot")).scalar_one()
    tallies, lots, specs, serials = [], [], [], []
    revokes = _supersede(conn, records, book)
    for n, r in enumerate(records, start=nlots + 1):
        serial = f"{r.pollutant}-{r.effective_date.year}-{n:05d}"
        expires = book.lot_expiry(r.effective_date)
        amount = r.creditable_g - revokes.get(r.tally_id, (0, None))[0]
        if amount <= 0:
            raise ValidationFailed([Problem(name, r.row, "baseline_actual",
                                            f"superseding tally credits {r.creditable_g} g but "
                                            f"{revokes[r.tally_id][0]} g of the old lot are already used")])
        tallies.append((r.tally_id, r.source_id, r.measure, r.zone, r.pollutant, str(r.baseline_actual),
                        None if r.permitted is None else str(r.permitted), None if r.post is None else str(r.post),
                        r.unit, r.baseline_year, r.effective_date, r.method, r.assessor, r.report_no,
                        r.creditable_g, r.supersedes or None, batch, r.row))
        lots.append((serial, r.tally_id, r.pollutant, r.zone, r.effective_date, expires, amount))
        legs = [ledger.Leg(ledger.lot_account(serial), serial, r.pollutant, amount, r.zone),
                ledger.Leg(f"issued:{r.pollutant}", serial, r.pollutant, -amount, r.zone)]
        meta = {"tally_id": r.tally_id, "source_id": r.source_id, "report_no": r.report_no,
                "measure": r.measure, "zone": r.zone, "expires": expires.isoformat() if expires else None,
                "creditable_g": r.creditable_g, "supersedes": r.supersedes or None}
        specs.append(ledger.TxnSpec("issue", r.effective_date, legs, f"{r.measure} {r.source_name}",
                                    r.report_no, None, meta))
        serials.append(serial)
    db.insert_many(conn, "tally", ["tally_id", "source_id", "measure", "zone", "pollutant", "baseline_actual",
                                   "permitted", "post", "unit", "baseline_year", "effective_date", "method",
                                   "assessor", "report_no", "creditable_g", "supersedes", "import_id", "row"], tallies)
    db.insert_many(conn, "lot", ["serial", "tally_id", "pollutant", "zone", "effective_date", "expires", "issued_g"],
                   lots)
    revoke_specs = [spec for _, spec in sorted(revokes.values(), key=lambda v: v[1].ref)]
    all_specs = revoke_specs + specs
    expiry = {lot[0]: lot[5] for lot in lots}  # serial -> expires, for the balance totals
    new = set(expiry)  # the lots issued here: no balance pair holds them yet
    step = 20_000
    seqs: list[int] = []
    for i in range(0, len(all_specs), step):  # batches, so progress can be shown; still one transaction
        seqs += ledger.post_many(conn, all_specs[i:i + step], actor=actor, rulebook=version, lot_expiry=expiry,
                                 new_lots=new)
        if progress:
            progress("write", min(i + step, len(all_specs)), len(all_specs))
    for spec, seq in zip(revoke_specs, seqs):  # queued after the transactions they cite
        driver.write(conn, ("INSERT INTO lot_status (serial, status, txn_seq) VALUES (?, ?, ?)",
                            (spec.meta["lot"], "superseded", seq)))
    result = _summary(records, book, serials)
    result["import_id"] = int(batch)
    return result


def _supersede(conn: Connection, records: list[TallyRecord], book: Rulebook) -> dict:
    """For superseding tallies: {new tally_id: (grams of the old lot already used, revoke spec)}."""
    out = {}
    for r in records:
        if not r.supersedes:
            continue
        lot = conn.execute(text("SELECT serial, issued_g, zone, pollutant FROM lot WHERE tally_id = :t"),
                           {"t": r.supersedes}).one()
        available = conn.execute(text("SELECT amount_g FROM balance WHERE account = :a AND lot = :l"),
                                 {"a": ledger.lot_account(lot[0]), "l": lot[0]}).scalar_one()
        used = int(lot[1]) - int(available)
        # the old lot is marked superseded even when nothing of it is left (a transaction without postings),
        # so grams released from it later go to superseded:<P>, never back to it
        legs = [ledger.Leg(ledger.lot_account(lot[0]), lot[0], lot[3], -int(available), lot[2]),
                ledger.Leg(f"superseded:{lot[3]}", lot[0], lot[3], int(available), lot[2])] if available else []
        # dated today: it changes the old lot's balance now (the new lot is booked at its vintage)
        spec = ledger.TxnSpec("revoke", clock.today(), legs, f"superseded by tally {r.tally_id}", r.report_no,
                              None, {"lot": lot[0], "superseded_by": r.tally_id})
        out[r.tally_id] = (used, spec)
    return out


def _summary(records: list[TallyRecord], book: Rulebook, serials: list[str], dry_run: bool = False) -> dict:
    totals: dict[str, int] = {}
    for r in records:
        totals[r.pollutant] = totals.get(r.pollutant, 0) + r.creditable_g
    return {"tallies": len(records), "lots": serials, "dry_run": dry_run,
            "credited": [{"pollutant": p, "amount_g": g, "unit": book.pollutants[p].unit,
                          "amount": units.display(g, book.pollutants[p].unit)} for p, g in sorted(totals.items())]}
