"""Tally import: validate every row (errors as data), then credit each tally as one lot."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
from array import array
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
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
from quota.errors import Problem, Refused, ValidationFailed
from quota.intake.fields import RowReader
from quota.rules.book import Rulebook
from quota.intake.columns import TALLY_NAMES, TALLY_OPTIONAL, TALLY_REQUIRED
from quota.intake.tables import alias_map, file_sha256, open_rows, preview_rows, unreadable

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
    """Creditable grams of one tally (docs/design.md, Domain rules), rounded down to the gram. `cap_g` caps the baseline
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


# ------------------------------------------------------------------------------------------------ reading rows
#
# A tally file is read in passes, never held whole (docs/performance.md: under 300 MB at 10^6 lots):
# (1) `_scan` keeps 64-bit hashes of each row's ids; the rows whose checks compare them with other rows or with the ledger (a repeated
# hash, a source or key the ledger knows, a superseding row) are found from the hashes; (2) `_validate` checks
# every row as before and keeps only those rows as records, in full; (3) `_write` reads the file once more and
# writes it in batches, in one transaction. A hash only picks rows for the exact checks, which compare the ids
# themselves: equal ids always hash alike, so a collision only adds rows to check. Two checks also rely on
# distinct values hashing apart (one source under two names; two sources under one name): a 64-bit collision
# between two such strings of one file (SipHash, keyed per process) would hide that problem, a chance of about
# 1 in 10^19 per pair.

BATCH = 2000  # records written (and posted) at a time in the import's one transaction


def _cells(r: RowReader, book: Rulebook, today: dt.date) -> tuple:
    """One row's typed cells, checked on their own (each bad cell a problem in `r`)."""
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
    return (tally_id, source_id, source_name, measure, zone, pollutant, unit, actual, permitted, post, year,
            effective, report_no, distinct)


def _record(r: RowReader, cells: tuple, credit: int) -> TallyRecord:
    (tally_id, source_id, source_name, measure, zone, pollutant, unit, actual, permitted, post, year, effective,
     report_no, distinct) = cells
    return TallyRecord(r.row, tally_id, source_id, source_name, measure, zone, pollutant, actual, permitted, post,
                       unit, year, effective, r.text("method", False), r.text("assessor", False), report_no,
                       r.code("supersedes", False), credit, distinct_source=distinct)


@dataclass
class _Index:
    """Per data row, in file order, 64-bit hashes (this process's `hash`) of: the tally id, the tally it
    supersedes (0: none), the source id, (source name, zone), (name_key, zone) as sources compares names, and
    (source, pollutant), the key of a source's history."""
    tally: np.ndarray
    sup: np.ndarray
    source: np.ndarray
    name_zone: np.ndarray
    look: np.ndarray
    key: np.ndarray

    @property
    def n(self) -> int:
        return len(self.tally)


def _scan(rows, name: str) -> _Index:
    cols = {f: array("q") for f in ("tally", "sup", "source", "name_zone", "look", "key")}
    sink: list[Problem] = []
    for rowno, cells in rows():
        r = RowReader(name, rowno, cells, sink)
        t, s, nm, z, p, sup = (r.code("tally_id"), r.code("source_id"), r.text("source_name"), r.code("zone"),
                               r.code("pollutant"), r.code("supersedes", False))
        sink.clear()
        cols["tally"].append(hash(t))
        cols["sup"].append(hash(sup) if sup else 0)
        cols["source"].append(hash(s))
        cols["name_zone"].append(hash((nm, z)))
        cols["look"].append(hash((identity.name_key(nm), z)))
        cols["key"].append(hash((s, p)))
    return _Index(**{f: np.frombuffer(a, dtype=np.int64) if len(a) else np.zeros(0, np.int64)
                     for f, a in cols.items()})


def _index_of(records: list[TallyRecord]) -> _Index:
    """The index of records already read (settle_ledger's callers)."""
    def col(values):
        return np.fromiter(values, np.int64, len(records))
    return _Index(col(hash(r.tally_id) for r in records), col(hash(r.supersedes) if r.supersedes else 0
                                                              for r in records),
                  col(hash(r.source_id) for r in records), col(hash((r.source_name, r.zone)) for r in records),
                  col(hash((identity.name_key(r.source_name), r.zone)) for r in records),
                  col(hash((r.source_id, r.pollutant)) for r in records))


def _repeated(a: np.ndarray) -> np.ndarray:
    """The values that occur more than once, sorted."""
    s = np.sort(a)
    return np.unique(s[1:][s[1:] == s[:-1]])


def _spread(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The values of `a` that pair with more than one value of `b`, sorted."""
    order = np.lexsort((b, a))
    a_s, b_s = a[order], b[order]
    return np.unique(a_s[1:][(a_s[1:] == a_s[:-1]) & (b_s[1:] != b_s[:-1])])


def _member(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """values[i] in sorted_set, for each i."""
    if not len(sorted_set) or not len(values):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_set, values), len(sorted_set) - 1)
    return sorted_set[at] == values


@dataclass
class _Ledger:
    """What the ledger holds that a file's rows may meet: exactly, every stored tally whose id or (source,
    pollutant) a row's hashes name, every source whose id or (name, zone) they name; the ids of all superseded
    tallies; the issued total; whether the file was imported before. Read in one streamed pass per table."""
    prior: tuple | None
    tallies: list[tuple]            # (source_id, pollutant, measure, tally_id, supersedes, effective_date, post, unit)
    superseded: set[str]
    sources: dict[str, tuple[str, str]]
    issued: int
    hashes: dict[str, np.ndarray]   # tally, key, source, look: sorted hashes of what is in the lists above


def _ledger(conn: Connection, idx: _Index, sha: str) -> _Ledger:
    ids = np.unique(np.concatenate([idx.tally, idx.sup[idx.sup != 0]]))
    keys, srcs, looks = np.unique(idx.key), np.unique(idx.source), np.unique(idx.look)
    prior = conn.execute(text("SELECT id, imported_at FROM import_batch WHERE kind = 'tally' AND sha256 = :s"),
                         {"s": sha}).first()
    tallies, superseded, h = [], set(), {"tally": [], "key": [], "source": [], "look": []}
    stream = {"stream_results": True, "yield_per": BATCH}  # this statement's options, not the connection's
    for part in conn.execute(text("SELECT source_id, pollutant, measure, tally_id, supersedes, effective_date, "
                                  "post, unit FROM tally"), execution_options=stream).partitions(BATCH):
        th = np.fromiter((hash(identity.loose(r[3])) for r in part), np.int64, len(part))
        kh = np.fromiter((hash((identity.loose(r[0]), r[1])) for r in part), np.int64, len(part))
        for r, keep, t, k in zip(part, _member(th, ids) | _member(kh, keys), th.tolist(), kh.tolist()):
            if keep:
                tallies.append(tuple(r))
                h["tally"].append(t)
                h["key"].append(k)
        superseded.update(identity.loose(r[4]) for r in part if r[4])
    sources = {}
    for part in conn.execute(text("SELECT source_id, name, zone FROM source"), execution_options=stream).partitions(BATCH):
        sh = np.fromiter((hash(identity.loose(r[0])) for r in part), np.int64, len(part))
        lh = np.fromiter((hash((identity.name_key(r[1]), r[2])) for r in part), np.int64, len(part))
        for r, keep, s, look in zip(part, _member(sh, srcs) | _member(lh, looks), sh.tolist(), lh.tolist()):
            if keep:
                sources[r[0]] = (r[1], r[2])
                h["source"].append(s)
                h["look"].append(look)
    issued = int(conn.execute(text("SELECT COALESCE(SUM(issued_g), 0) FROM lot")).scalar_one())
    return _Ledger(prior, tallies, superseded, sources, issued,
                   {k: np.unique(np.array(v, dtype=np.int64)) for k, v in h.items()})


@dataclass
class _Plan:
    """Which rows get which exact check, from the index (and the ledger's hashes)."""
    tally_ids: np.ndarray     # bool per row: its tally id's hash repeats in the file
    source_names: np.ndarray  # its source's hash has two (name, zone) hashes in the file
    hold: np.ndarray          # kept as a record for sources.settle and the ledger's checks
    new_source_repeats: np.ndarray  # its source's hash repeats: whether it is the first is checked exactly


def _plan(idx: _Index, led: _Ledger | None) -> _Plan:
    hold = (_member(idx.key, _repeated(idx.key)) | _member(idx.look, _spread(idx.look, idx.source))
            | (idx.sup != 0))
    if led is not None:
        hold |= (_member(idx.tally, led.hashes["tally"]) | _member(idx.key, led.hashes["key"])
                 | _member(idx.source, led.hashes["source"]) | _member(idx.look, led.hashes["look"]))
    repeats = _member(idx.source, _repeated(idx.source))
    return _Plan(_member(idx.tally, _repeated(idx.tally)), _member(idx.source, _spread(idx.source, idx.name_zone)),
                 hold, repeats)


@dataclass
class _Checked:
    """A validated file: its problems, the kept records (row index -> record) and the others' count and grams."""
    problems: list[Problem]
    held: dict[int, TallyRecord]
    count: int
    grams: dict[str, int]       # per pollutant, of the rows not held


def _validate(rows, name: str, book: Rulebook, plan: _Plan | None) -> _Checked:
    """Every row's checks, in file order, as a list of the file would have them; `plan` None keeps every record."""
    problems: list[Problem] = []
    held: dict[int, TallyRecord] = {}
    grams: dict[str, int] = {}
    seen_ids: dict[str, int] = {}
    known: dict[str, tuple[str, str, int]] = {}
    today = clock.today()
    count = n = 0
    for i, (rowno, cells) in enumerate(rows()):
        n += 1
        before = len(problems)
        r = RowReader(name, rowno, cells, problems)
        cells = _cells(r, book, today)
        tally_id, source_id, source_name, zone = cells[0], cells[1], cells[2], cells[4]
        if plan is None or plan.tally_ids[i]:
            if tally_id in seen_ids:
                r.fail("tally_id", "repeated_id", value=tally_id, first_row=seen_ids[tally_id])
            seen_ids.setdefault(tally_id, rowno)
        if plan is None or plan.source_names[i]:
            if source_id in known and known[source_id][:2] != (source_name, zone):
                r.fail("source_id", "source_differs", source=source_id, first_row=known[source_id][2])
            known.setdefault(source_id, (source_name, zone, rowno))
        if len(problems) > before:
            continue
        measure, pollutant, unit, actual, permitted, post = cells[3], cells[5], cells[6], cells[7], cells[8], cells[9]
        credit = creditable_g(book, measure, unit, actual, permitted, post)
        if credit <= 0:
            r.fail("baseline_actual", "zero_credit")
            continue
        count += 1
        if plan is None or plan.hold[i]:
            held[i] = _record(r, cells, credit)
        else:
            grams[pollutant] = grams.get(pollutant, 0) + credit
    if not n and not problems:
        problems.append(Problem.of(name, 0, "", "no_data_rows"))
    # one history per source and pollutant within the file (the ledger's part: settle_ledger)
    settled, found = sources.settle(name, list(held.values()), book, credit=_credit)
    return _Checked(problems + found, dict(zip(held, settled)), count, grams)


def preview(path: str, sheet: str | None = None, marked=()) -> dict | None:
    """The file's rows as an import reads them, for a preview beside its problems (tables.preview_rows)."""
    return preview_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet, marked)


def validate_rows(path: str, book: Rulebook, sheet: str | None = None,
                  read: dict | None = None) -> tuple[list[TallyRecord], list[Problem]]:
    """Parse and check a tally file against the rulebook alone (no database); every record at once. `sheet` names
    the sheet of a workbook; `read` receives how the file was read (tables.read_rows: encoding, sheet)."""
    problems, rows = open_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet=sheet, info=read)
    if problems:
        return [], problems
    try:
        checked = _validate(rows, Path(path).name, book, None)
    except Exception as exc:  # noqa: BLE001 -- a malformed file: reported, never a crash
        return [], [unreadable(Path(path).name, exc)]
    return list(checked.held.values()), checked.problems


def check_ledger(conn: Connection, name: str, sha: str, records: list[TallyRecord],
                 book: Rulebook | None = None) -> list[Problem]:
    """Rules that need the database: repeated file, tally ids, source identity and history,
    supersession, the 64-bit total."""
    return settle_ledger(conn, name, sha, records, book)[1]


def settle_ledger(conn: Connection, name: str, sha: str, records: list[TallyRecord],
                  book: Rulebook | None = None) -> tuple[list[TallyRecord], list[Problem]]:
    """check_ledger's problems, and the records as they will be written: source and superseded
    tally ids spelled as the ledger has them, credits capped by each source's history."""
    if book is None:
        book = versions.current(conn)[1]
    return _settle_ledger(_ledger(conn, _index_of(records), sha), name, records, book, 0)


def _settle_ledger(led: _Ledger, name: str, records: list[TallyRecord], book: Rulebook,
                   others_g: int) -> tuple[list[TallyRecord], list[Problem]]:
    """settle_ledger on the records that can meet the ledger (`led` holds all of the ledger they can meet);
    `others_g`: the grams of the file's other rows, for the 64-bit total."""
    problems: list[Problem] = []
    if led.prior:
        problems.append(Problem.of(name, 0, "", "already_imported", batch=led.prior[0], at=str(led.prior[1])))
    rows = led.tallies
    stored_ids = {identity.loose(r[3]): r[3] for r in rows}
    current = [r for r in rows if identity.loose(r[3]) not in led.superseded]
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
    history = [sources.Prior(r[3], r[0], r[1], r[2], clock.as_date(r[5]),
                             units.grams_exact(Decimal(r[6]), r[7]) if r[2] == "upgrade" and r[6] else None)
               for r in current]
    records, found = sources.settle(name, records, book, history, led.sources, credit=_credit)
    problems += found
    adding = others_g + sum(r.creditable_g for r in records)
    if led.issued + adding > units.MAX_TOTAL_G:
        problems.append(Problem.of(name, 0, "", "overflow", issued=f"{led.issued:,}", adding=f"{adding:,}",
                                   limit=f"{units.MAX_TOTAL_G:,}"))
    return records, problems


def _signature(path: str) -> tuple:
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns, st.st_ino


def _unchanged(path: str, name: str, signature: tuple, sha: str) -> None:
    """The file is read more than once: refuse it if it changed in between (what was checked is what is written).
    Its bytes are hashed again: a same-size rewrite keeps the signature where mtime is coarse (FAT, some shares)
    or was set back."""
    if _signature(path) != signature or file_sha256(path) != sha:
        raise ValidationFailed([Problem.of(name, 0, "", "file_changed")])


def import_tallies(engine: Engine, path: str, *, actor: str, key: str | None = None,
                   dry_run: bool = False, progress=None, sheet: str | None = None, read: dict | None = None,
                   shown: str | None = None) -> dict:
    """Validate a tally file and, if every row is valid, credit each tally as a lot.

    All or nothing: any problem raises ValidationFailed listing every problem, and nothing
    is written. With `dry_run`, the checks run and nothing is written either way. `sheet` names the sheet of
    a workbook (default: the first with the columns); `read` receives how the file was read (encoding, sheet),
    also when it is refused. The file is read in passes (see `_scan`); memory stays flat in the number of rows
    and of lots in the ledger. `shown` is the preview_digest of a dry run shown to the user (the web's confirm):
    the import is refused (import_changed, nothing written) if, under the rulebook in force and the ledger as the
    write finds them, it would credit anything else.
    """
    name = Path(path).name
    with db.reading(engine) as conn:
        version, book = versions.current(conn)
    if progress:
        progress("validate", 0, 2)
    problems, rows = open_rows(path, ALIASES, REQUIRED, OPTIONAL, sheet=sheet, info=read)
    if problems:
        raise ValidationFailed(problems)
    signature = _signature(path)
    try:
        idx = _scan(rows, name)
    except Exception as exc:  # noqa: BLE001 -- a file malformed further on: reported as read_rows would
        raise ValidationFailed([unreadable(name, exc)]) from None
    sha = file_sha256(path)
    with db.reading(engine) as conn:
        led = _ledger(conn, idx, sha)
    plan = _plan(idx, led)
    checked = _validate(rows, name, book, plan)
    if progress:
        progress("validate", 1, 2)
    if checked.problems:
        raise ValidationFailed(checked.problems)
    _unchanged(path, name, signature, sha)
    others_g = sum(checked.grams.values())
    if dry_run:
        held, problems = _settle_ledger(led, name, list(checked.held.values()), book, others_g)
        if problems:
            raise ValidationFailed(problems)
        return _summary(checked, held, book, [], dry_run=True, version=version)

    def work(conn: Connection) -> dict:
        nonlocal checked, plan, idx
        if idx is None:  # a retried transaction: the index was let go before the writes
            idx = _scan(rows, name)
        led_now = _ledger(conn, idx, sha)  # the ledger as this transaction sees it
        plan_now = _plan(idx, led_now)
        idx = None  # the writes need the plan's masks only: 48 bytes a row less from here on
        if (plan_now.hold & ~plan.hold).any():  # it met more of this file since: those rows are read again
            plan, checked = plan_now, _validate(rows, name, book, plan_now)
            if checked.problems:
                raise ValidationFailed(checked.problems)
        held, found = _settle_ledger(led_now, name, list(checked.held.values()), book,
                                     sum(checked.grams.values()))
        if found:
            raise ValidationFailed(found)
        if shown is not None and preview_digest(_summary(checked, held, book, [], version=versions.current(conn)[0])) \
                != shown:  # the rulebook (read before this transaction) or the ledger changed since the dry run
            raise Refused("import_changed", file=name)
        if progress:
            progress("validate", 2, 2)
        result = _register(conn, rows, dict(zip(checked.held, held)), checked, led_now, plan, book, version, name,
                           sha, actor, progress)
        _unchanged(path, name, signature, sha)
        return result

    return idempotency.run(engine, key, "tally import", {"sha256": sha}, work, actor=actor)


def preview_digest(result: dict) -> str:
    """A short fingerprint of what an import (or its dry run) credits: the rulebook version, the number of tallies,
    the grams per pollutant and the capped tallies. The lots' serials are not in it (a dry run makes none)."""
    import hashlib
    import json
    credited = sorted((c["pollutant"], int(c["amount_g"])) for c in result.get("credited", []))
    capped = sorted((c["tally_id"], c["by"], int(c["creditable_g"])) for c in result.get("capped", []))
    return hashlib.sha256(json.dumps([result.get("rulebook"), result.get("tallies"), credited, capped]).encode()
                          ).hexdigest()[:32]


def _serial(pollutant: str, year: int, n: int) -> str:
    """A lot's serial: its pollutant, its vintage's year and its number in the ledger (COD-2022-00001)."""
    return f"{pollutant}-{year}-{n:05d}"


def _register(conn: Connection, rows, held: dict[int, TallyRecord], checked: _Checked, led: _Ledger, plan: _Plan,
              book: Rulebook, version: int, name: str, sha: str, actor: str, progress=None) -> dict:
    """Write the file's tallies, lots and issue transactions, BATCH rows at a time, reading it once more (the kept
    records replace their rows: they carry what settling changed)."""
    now = posting.now_iso()
    batch = batches.record(conn, "tally", name, sha, checked.count, now, actor)
    nlots = conn.execute(text("SELECT count(*) FROM lot")).scalar_one()
    revokes = _supersede(conn, [held[i] for i in sorted(held)], book)
    revoke_specs = sorted((spec for _, spec, _ in revokes.values() if spec), key=lambda spec: spec.ref)
    if revoke_specs:  # first in the chain, as before the issues; the lots they mark are stored lots
        seqs = posting.post_many(conn, revoke_specs, actor=actor, rulebook=version)
        for spec, seq in zip(revoke_specs, seqs):
            driver.write(conn, ("INSERT INTO lot_status (serial, status, txn_seq) VALUES (?, ?, ?)",
                                (spec.meta["lot"], "superseded", seq)))
    stored = set(led.sources)
    repeated: set[str] = set()  # sources already written here whose hash repeats in the file (checked exactly)
    pollutants = sorted(book.pollutants)
    lot_pollutant, lot_year = array("B"), array("H")  # the serials, 3 bytes a lot until the end (see _serials)
    today = clock.today()
    pending: list[tuple[TallyRecord, bool]] = []

    def flush() -> None:
        new_sources, tallies, lots, specs = [], [], [], []
        for r, repeats in pending:
            n = nlots + len(lot_year) + 1
            serial = _serial(r.pollutant, r.effective_date.year, n)
            expires = book.lot_expiry(r.effective_date)
            spent, _, until = revokes.get(r.tally_id, (0, None, None))
            if until is not None and (expires is None or until < expires):
                expires = until  # the grams it corrects keep the life of the tally they were first credited under
            amount = r.creditable_g - spent
            if amount <= 0:
                raise ValidationFailed([Problem.of(name, r.row, "baseline_actual", "supersede_spent",
                                                   credit_g=r.creditable_g, spent_g=revokes[r.tally_id][0])])
            if r.source_id not in stored and not (repeats and r.source_id in repeated):
                new_sources.append((r.source_id, r.source_name, r.zone))  # its first row: the file's spelling
                if repeats:
                    repeated.add(r.source_id)
            tallies.append((r.tally_id, r.source_id, r.measure, r.zone, r.pollutant, str(r.baseline_actual),
                            None if r.permitted is None else str(r.permitted),
                            None if r.post is None else str(r.post), r.unit, r.baseline_year, r.effective_date,
                            r.method, r.assessor, r.report_no, r.creditable_g, r.supersedes or None, batch, r.row))
            lots.append((serial, r.tally_id, r.pollutant, r.zone, r.effective_date, expires, amount))
            legs = [posting.Leg(posting.lot_account(serial), serial, r.pollutant, amount, r.zone),
                    posting.Leg(pool_account("issued", r.pollutant), serial, r.pollutant, -amount, r.zone)]
            specs.append(posting.TxnSpec("issue", r.effective_date, legs, f"{r.measure} {r.source_name}",
                                         r.report_no, None, issue_meta(r, expires)))
            lot_pollutant.append(pollutants.index(r.pollutant))
            lot_year.append(r.effective_date.year)
        db.insert_many(conn, "source", ["source_id", "name", "zone"], new_sources)
        db.insert_many(conn, "tally", ["tally_id", "source_id", "measure", "zone", "pollutant", "baseline_actual",
                                       "permitted", "post", "unit", "baseline_year", "effective_date", "method",
                                       "assessor", "report_no", "creditable_g", "supersedes", "import_id", "row"],
                       tallies)
        db.insert_many(conn, "lot", ["serial", "tally_id", "pollutant", "zone", "effective_date", "expires",
                                     "issued_g"], lots)
        expiry = {lot[0]: lot[5] for lot in lots}  # serial -> expires, for the balance totals
        if specs:
            posting.post_many(conn, specs, actor=actor, rulebook=version, lot_expiry=expiry, new_lots=set(expiry))
        pending.clear()
        if progress:
            progress("write", len(lot_year), checked.count)

    changed = ValidationFailed([Problem.of(name, 0, "", "file_changed")])
    for i, (rowno, cells) in enumerate(rows()):
        r = held.get(i)
        if r is None:
            problems: list[Problem] = []
            reader = RowReader(name, rowno, cells, problems)
            parsed = _cells(reader, book, today)
            credit = creditable_g(book, parsed[3], parsed[6], parsed[7], parsed[8], parsed[9]) if not problems else 0
            if problems or credit <= 0:
                raise changed
            r = _record(reader, parsed, credit)
        pending.append((r, bool(plan.new_source_repeats[i])))
        if len(pending) >= BATCH:
            flush()
    flush()
    if len(lot_year) != checked.count:
        raise changed
    serials = [_serial(pollutants[p], y, n) for n, p, y in zip(range(nlots + 1, nlots + len(lot_year) + 1),
                                                                 lot_pollutant, lot_year)]
    result = _summary(checked, [held[i] for i in sorted(held)], book, serials, version=version)
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


def _summary(checked: _Checked, held: list[TallyRecord], book: Rulebook, serials: list[str],
             dry_run: bool = False, version: int | None = None) -> dict:
    """What an import credits: the kept records as settled (`held`, in file order), the others by their grams;
    `version`: the rulebook version it is judged under."""
    totals = dict(checked.grams)
    for r in held:
        totals[r.pollutant] = totals.get(r.pollutant, 0) + r.creditable_g
    return {"tallies": checked.count, "lots": serials, "dry_run": dry_run, "rulebook": version,
            "capped": [{"tally_id": r.tally_id, "by": r.capped_by, "creditable_g": r.creditable_g,
                        "amount": units.display(r.creditable_g, book.pollutants[r.pollutant].unit),
                        "unit": book.pollutants[r.pollutant].unit} for r in held if r.capped_by],
            "credited": [{"pollutant": p, "amount_g": g, "unit": book.pollutants[p].unit,
                          "amount": units.display(g, book.pollutants[p].unit)} for p, g in sorted(totals.items())]}
