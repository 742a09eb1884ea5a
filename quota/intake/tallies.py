"""Tally import: validate every row (errors as data), then credit each tally as one lot."""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from sqlalchemy import Connection, Engine, bindparam, text

from quota.intake import batches
from quota import clock
from quota.accounts import pool_account
from quota.store import db
from quota.store import driver
from quota.ledger import idempotency
from quota import identity
from quota.ledger import posting
from quota.rules import versions
from quota.intake import sources
from quota import units
from quota.errors import Problem, ValidationFailed
from quota.intake.fields import RowReader
from quota.rules.book import Rulebook
from quota.intake.columns import TALLY_NAMES, TALLY_OPTIONAL, TALLY_REQUIRED
from quota.intake.tables import alias_map, file_sha256, read_rows

REQUIRED, OPTIONAL = TALLY_REQUIRED, TALLY_OPTIONAL
ALIASES = alias_map(TALLY_NAMES)
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
    distinct_source: bool = False   # the row says: a new source, although a known one has its name and zone
    capped_by: str = ""             # the earlier upgrade whose post-upgrade emissions capped this credit


def creditable_g(book: Rulebook, measure: str, unit: str, actual: Decimal,
                 permitted: Decimal | None, post: Decimal | None, cap_g: Decimal | None = None) -> int:
    """Creditable grams of one tally (DESIGN 3), rounded down to the gram. `cap_g` caps the baseline
    (in grams) at an earlier upgrade's post-upgrade emissions of the same source (sources.settle)."""
    baseline = actual
    if book.baseline == "min_actual_permitted" and permitted is not None:
        baseline = min(actual, permitted)
    base_g = units.grams_exact(baseline, unit)
    if cap_g is not None:
        base_g = min(base_g, cap_g)
    reduction_g = base_g if measure == "closure" else base_g - units.grams_exact(post or Decimal(0), unit)
    return units.floor_g(reduction_g * (1 - book.discount))


def _credit(book: Rulebook, r: "TallyRecord", cap_g: Decimal | None) -> int:
    return creditable_g(book, r.measure, r.unit, r.baseline_actual, r.permitted, r.post, cap_g)


def validate_rows(path: str, book: Rulebook, sheet: str | None = None,
                  read: dict | None = None) -> tuple[list[TallyRecord], list[Problem]]:
    """Parse and check a tally file against the rulebook alone (no database). `sheet` names the sheet of a
    workbook; `read` receives how the file was read (tables.read_rows: encoding, sheet)."""
    rows, problems = read_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet=sheet, info=read)
    name = Path(path).name
    records: list[TallyRecord] = []
    seen_ids: dict[str, int] = {}
    known: dict[str, tuple[str, str, int]] = {}
    today = clock.today()
    for rowno, cells in rows:
        before = len(problems)
        r = RowReader(name, rowno, cells, problems)
        tally_id = r.code("tally_id")
        source_id = r.code("source_id")
        source_name = r.text("source_name")
        measure = r.choice("measure", MEASURES)
        zone, pollutant, unit = r.zone_pollutant_unit(book)
        actual = r.amount("baseline_actual", unit=unit)
        permitted = r.amount("permitted", required=False, unit=unit)
        post = r.amount("post", required=False, unit=unit)
        year = r.integer("baseline_year", 0, 1950, 2100) or None
        effective = r.date("effective_date")
        if effective is not None and effective > today:
            r.fail("effective_date", "future_tally", date=str(effective), today=str(today))
        report_no = r.text("report_no", max_len=100)
        distinct = r.boolean("distinct_source")
        if measure == "closure" and post:
            r.fail("post", "closure_post", value=str(post))
        if measure == "upgrade" and actual is not None:
            base = min(actual, permitted) if (permitted is not None and book.baseline == "min_actual_permitted") else actual
            if post is None:
                r.fail("post", "upgrade_needs_post")
            elif post >= base:
                r.fail("post", "post_not_below", post=str(post), base=str(base))
        if tally_id in seen_ids:
            r.fail("tally_id", "repeated_id", value=tally_id, first_row=seen_ids[tally_id])
        seen_ids.setdefault(tally_id, rowno)
        if source_id in known and known[source_id][:2] != (source_name, zone):
            r.fail("source_id", "source_differs", source=source_id, first_row=known[source_id][2])
        known.setdefault(source_id, (source_name, zone, rowno))
        if len(problems) > before:
            continue
        credit = creditable_g(book, measure, unit, actual, permitted, post)
        if credit <= 0:
            r.fail("baseline_actual", "zero_credit")
            continue
        records.append(TallyRecord(rowno, tally_id, source_id, source_name, measure, zone, pollutant, actual,
                                   permitted, post, unit, year, effective, r.text("method", False),
                                   r.text("assessor", False), report_no,
                                   r.code("supersedes", False), credit, distinct_source=distinct))
    if not rows and not problems:
        problems.append(Problem.of(name, 0, "", "no_data_rows"))
    # one history per source and pollutant within the file (the ledger's part: check_ledger)
    records, found = sources.settle(name, records, book, credit=_credit)
    return records, problems + found


def check_ledger(conn: Connection, name: str, sha: str, records: list[TallyRecord],
                 book: Rulebook | None = None) -> list[Problem]:
    """Rules that need the database: repeated file, tally ids, source identity and history,
    supersession, the 64-bit total."""
    return settle_ledger(conn, name, sha, records, book)[1]


def settle_ledger(conn: Connection, name: str, sha: str, records: list[TallyRecord],
                  book: Rulebook | None = None) -> tuple[list[TallyRecord], list[Problem]]:
    """check_ledger's problems, and the records as they will be written: source and superseded
    tally ids spelled as the ledger has them, credits capped by each source's history."""
    problems: list[Problem] = []
    if book is None:
        book = versions.current(conn)[1]
    prior = conn.execute(text("SELECT id, imported_at FROM import_batch WHERE kind = 'tally' AND sha256 = :s"),
                         {"s": sha}).first()
    if prior:
        problems.append(Problem.of(name, 0, "", "already_imported", batch=prior[0], at=str(prior[1])))
    rows = conn.execute(text("SELECT source_id, pollutant, measure, tally_id, supersedes, effective_date, post, "
                             "unit FROM tally")).all()
    stored_ids = {identity.loose(r[3]): r[3] for r in rows}
    superseded = {identity.loose(r[4]) for r in rows if r[4]}
    current = [r for r in rows if identity.loose(r[3]) not in superseded]
    # the current tally of each (source, pollutant, measure): one that no other tally supersedes
    measures = {(identity.loose(r[0]), r[1], r[2]): r[3] for r in current}
    for r in records:
        if identity.loose(r.tally_id) in stored_ids:
            problems.append(Problem.of(name, r.row, "tally_id", "tally_exists", tally=r.tally_id))
        if r.supersedes:
            now = measures.get((identity.loose(r.source_id), r.pollutant, r.measure))
            if now is None or not identity.same(now, r.supersedes):
                problems.append(Problem.of(name, r.row, "supersedes", "not_current_tally", tally=r.supersedes,
                                           measure=r.measure, pollutant=r.pollutant, source=r.source_id,
                                           current=now or ""))
    records = [dataclasses.replace(r, supersedes=stored_ids.get(identity.loose(r.supersedes), r.supersedes))
               if r.supersedes else r for r in records]
    known = {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT source_id, name, zone FROM source"))}
    history = [sources.Prior(r[3], r[0], r[1], r[2], clock.as_date(r[5]),
                             units.grams_exact(Decimal(r[6]), r[7]) if r[2] == "upgrade" and r[6] else None)
               for r in current]
    records, found = sources.settle(name, records, book, history, known, credit=_credit)
    problems += found
    issued = int(conn.execute(text("SELECT COALESCE(SUM(issued_g), 0) FROM lot")).scalar_one())
    adding = sum(r.creditable_g for r in records)
    if issued + adding > units.MAX_TOTAL_G:
        problems.append(Problem.of(name, 0, "", "overflow", issued=f"{issued:,}", adding=f"{adding:,}",
                                   limit=f"{units.MAX_TOTAL_G:,}"))
    return records, problems


def import_tallies(engine: Engine, path: str, *, actor: str, key: str | None = None,
                   dry_run: bool = False, progress=None, sheet: str | None = None, read: dict | None = None) -> dict:
    """Validate a tally file and, if every row is valid, credit each tally as a lot.

    All or nothing: any problem raises ValidationFailed listing every problem, and nothing
    is written. With `dry_run`, the checks run and nothing is written either way. `sheet` names the sheet of
    a workbook (default: the first with the columns); `read` receives how the file was read (encoding, sheet),
    also when it is refused.
    """
    name = Path(path).name
    with db.reading(engine) as conn:
        version, book = versions.current(conn)
    if progress:
        progress("validate", 0, 2)
    records, problems = validate_rows(path, book, sheet, read)
    if progress:
        progress("validate", 1, 2)
    if problems:
        raise ValidationFailed(problems)
    sha = file_sha256(path)
    if dry_run:
        with db.reading(engine) as conn:
            records, problems = settle_ledger(conn, name, sha, records, book)
        if problems:
            raise ValidationFailed(problems)
        return _summary(records, book, [], dry_run=True)

    def work(conn: Connection) -> dict:
        nonlocal records
        records, found = settle_ledger(conn, name, sha, records, book)
        if found:
            raise ValidationFailed(found)
        if progress:
            progress("validate", 2, 2)
        return _register(conn, records, book, version, name, sha, actor, progress)

    return idempotency.run(engine, key, "tally import", {"sha256": sha}, work)


def _register(conn: Connection, records: list[TallyRecord], book: Rulebook, version: int, name: str,
              sha: str, actor: str, progress=None) -> dict:
    now = posting.now_iso()
    batch = batches.record(conn, "tally", name, sha, len(records), now, actor)
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
        spent, _, until = revokes.get(r.tally_id, (0, None, None))
        if until is not None and (expires is None or until < expires):
            expires = until  # the grams it corrects keep the life of the tally they were first credited under
        amount = r.creditable_g - spent
        if amount <= 0:
            raise ValidationFailed([Problem.of(name, r.row, "baseline_actual", "supersede_spent",
                                               credit_g=r.creditable_g, spent_g=revokes[r.tally_id][0])])
        tallies.append((r.tally_id, r.source_id, r.measure, r.zone, r.pollutant, str(r.baseline_actual),
                        None if r.permitted is None else str(r.permitted), None if r.post is None else str(r.post),
                        r.unit, r.baseline_year, r.effective_date, r.method, r.assessor, r.report_no,
                        r.creditable_g, r.supersedes or None, batch, r.row))
        lots.append((serial, r.tally_id, r.pollutant, r.zone, r.effective_date, expires, amount))
        legs = [posting.Leg(posting.lot_account(serial), serial, r.pollutant, amount, r.zone),
                posting.Leg(pool_account("issued", r.pollutant), serial, r.pollutant, -amount, r.zone)]
        meta = issue_meta(r, expires)
        specs.append(posting.TxnSpec("issue", r.effective_date, legs, f"{r.measure} {r.source_name}",
                                    r.report_no, None, meta))
        serials.append(serial)
    db.insert_many(conn, "tally", ["tally_id", "source_id", "measure", "zone", "pollutant", "baseline_actual",
                                   "permitted", "post", "unit", "baseline_year", "effective_date", "method",
                                   "assessor", "report_no", "creditable_g", "supersedes", "import_id", "row"], tallies)
    db.insert_many(conn, "lot", ["serial", "tally_id", "pollutant", "zone", "effective_date", "expires", "issued_g"],
                   lots)
    revoke_specs = sorted((spec for _, spec, _ in revokes.values() if spec), key=lambda spec: spec.ref)
    all_specs = revoke_specs + specs
    expiry = {lot[0]: lot[5] for lot in lots}  # serial -> expires, for the balance totals
    new = set(expiry)  # the lots issued here: no balance pair holds them yet
    step = 20_000
    seqs: list[int] = []
    for i in range(0, len(all_specs), step):  # batches, so progress can be shown; still one transaction
        seqs += posting.post_many(conn, all_specs[i:i + step], actor=actor, rulebook=version, lot_expiry=expiry,
                                 new_lots=new)
        if progress:
            progress("write", min(i + step, len(all_specs)), len(all_specs))
    for spec, seq in zip(revoke_specs, seqs):  # queued after the transactions they cite
        driver.write(conn, ("INSERT INTO lot_status (serial, status, txn_seq) VALUES (?, ?, ?)",
                            (spec.meta["lot"], "superseded", seq)))
    result = _summary(records, book, serials)
    result["import_id"] = int(batch)
    return result


def issue_meta(r: TallyRecord, expires: dt.date | None) -> dict:
    """What the issue transaction's hashed body commits about its tally: everything a source statement
    cites (amounts as the exact text stored in the tally table). `verify` compares the tally, lot and
    source rows with it."""
    return {"tally_id": r.tally_id, "source_id": r.source_id, "source_name": r.source_name, "zone": r.zone,
            "measure": r.measure, "pollutant": r.pollutant, "baseline_actual": str(r.baseline_actual),
            "permitted": None if r.permitted is None else str(r.permitted),
            "post": None if r.post is None else str(r.post), "unit": r.unit, "baseline_year": r.baseline_year,
            "creditable_g": r.creditable_g, "effective_date": r.effective_date.isoformat(),
            "expires": expires.isoformat() if expires else None, "method": r.method, "assessor": r.assessor,
            "report_no": r.report_no, "supersedes": r.supersedes or None}


def _supersede(conn: Connection, records: list[TallyRecord], book: Rulebook) -> dict:
    """For superseding tallies: {new tally_id: (grams spent by the tallies it replaces, revoke spec or None, the
    earliest expiry in the chain it replaces: the new lot expires no later)}.

    A correction credits its creditable amount less what the whole chain of tallies it replaces gave out for
    good: grams allocated to projects, and grams that expired (posted to expired:, or still on a lot past its
    expiry). Grams only reserved on the old lot are not spent: they can never be approved from it and go to
    superseded: when released. The old lot's balance leaves it now (to superseded:, or to expired: when it has
    lapsed) and the lot is marked superseded; a lot already revoked keeps its mark."""
    today = clock.today()
    out = {}
    for r in records:
        if not r.supersedes:
            continue
        chain, tally = [], r.supersedes
        while tally:
            row = conn.execute(text(
                "SELECT l.serial, l.zone, l.pollutant, l.expires, s.status, t.supersedes FROM lot l "
                "JOIN tally t ON t.tally_id = l.tally_id LEFT JOIN lot_status s ON s.serial = l.serial "
                "WHERE l.tally_id = :t"), {"t": tally}).one()
            chain.append(row)
            tally = row[5]
        expired = {c[0] for c in chain if c[3] is not None and clock.as_date(c[3]) <= today}
        spent, available = 0, 0
        for account, lot, amount in conn.execute(
                text("SELECT account, lot, amount_g FROM balance WHERE lot IN :lots").bindparams(
                    bindparam("lots", expanding=True)), {"lots": [c[0] for c in chain]}):
            kind = posting.account_kind(account)
            if kind in ("allocated", "expired") or (kind == "lot" and lot in expired):
                spent += int(amount)
            if kind == "lot" and lot == chain[0][0]:
                available = int(amount)
        serial, zone, pol, _, status, _ = chain[0]
        spec = None
        if not status:
            dest = pool_account("expired" if serial in expired else "superseded", pol)
            legs = [posting.Leg(posting.lot_account(serial), serial, pol, -available, zone),
                    posting.Leg(dest, serial, pol, available, zone)] if available else []
            # dated today: it changes the old lot's balance now (the new lot is booked at its vintage); marked
            # superseded even when nothing is left (a transaction without postings)
            spec = posting.TxnSpec("revoke", today, legs, f"superseded by tally {r.tally_id}", r.report_no, None,
                                  {"lot": serial, "superseded_by": r.tally_id})
        lives = [clock.as_date(c[3]) for c in chain]
        until = None if any(x is None for x in lives) else min(lives)  # a correction never extends a lot's life
        out[r.tally_id] = (spent, spec, until)
    return out


def _summary(records: list[TallyRecord], book: Rulebook, serials: list[str], dry_run: bool = False) -> dict:
    totals: dict[str, int] = {}
    for r in records:
        totals[r.pollutant] = totals.get(r.pollutant, 0) + r.creditable_g
    return {"tallies": len(records), "lots": serials, "dry_run": dry_run,
            "capped": [{"tally_id": r.tally_id, "by": r.capped_by, "creditable_g": r.creditable_g,
                        "amount": units.display(r.creditable_g, book.pollutants[r.pollutant].unit),
                        "unit": book.pollutants[r.pollutant].unit} for r in records if r.capped_by],
            "credited": [{"pollutant": p, "amount_g": g, "unit": book.pollutants[p].unit,
                          "amount": units.display(g, book.pollutants[p].unit)} for p, g in sorted(totals.items())]}
