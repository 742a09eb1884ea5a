"""What a quota operation reads: a project's snapshot, and its candidate lots in drawing order."""
from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Iterator, NamedTuple

from sqlalchemy import Connection

from quota import clock
from quota.accounts import lot_balance_join, project_account
from quota.store import driver
from quota.ledger import posting
from quota.rules.eligibility import LotFacts
from quota.errors import NotFound
from quota.ledger.projects import PROJECT_SQL, Need, ProjectInfo, projects_from_rows
from quota.rules.book import Rulebook


class LotAvail(NamedTuple):
    """A lot that can serve a need: its zone, expiry and the grams it has available."""
    serial: str
    zone: str
    expires: dt.date | None
    available_g: int
    last_date: dt.date | None = None  # of the lot's own balance, when read with it
    pollutant: str = ""
    effective: dt.date | None = None

    def facts(self) -> LotFacts:
        """The lot as the eligibility rule sees it (a candidate lot has a positive balance, so it is active:
        revoked and superseded lots keep none, see eligibility)."""
        return LotFacts(self.serial, self.pollutant, self.zone, self.effective, self.expires)


# One need's candidate lots: positive, of its pollutant, in a zone with its matching key, effective by the
# date and not expired on the later of that date and the day the project needs them (eligibility.serves_until;
# PostgreSQL's GREATEST ignores a NULL needed_by); earliest expiry first (never-expiring last), then
# serial; the first DRAW_LIMIT of them (a need they do not cover reads again without the limit). The lots are
# walked in that order along ix_lot_draw (pollutant, expires, serial) with one primary-key probe of each lot's
# balance, and the walk stops at the limit. PostgreSQL keeps NULL last in the index and in ORDER BY, and
# probes with LATERAL ... OFFSET 0 so the planner cannot turn the probe into a scan of the balance table.
# SQLite keeps NULL first, so it walks the expiring lots, and only when they are fewer than the limit the
# never-expiring ones after them (two statements; a sort of the union cost more than the second walk).
LOT_SELECT = "SELECT l.serial, l.zone, l.expires, b.amount_g, l.pollutant, b.last_date, l.effective_date FROM lot l "
LOT_JOIN = {"sqlite": "JOIN balance b ON " + lot_balance_join("b", "l.serial") + " ",
            "postgresql": "CROSS JOIN LATERAL (SELECT amount_g, last_date FROM balance "
                          "WHERE " + lot_balance_join("balance", "l.serial") + " OFFSET 0) b "}
LOT_WHERE = "WHERE l.pollutant = ? AND l.zone IN ({zones}) AND b.amount_g > 0 AND l.effective_date <= ? "
LOT_PG = LOT_SELECT + LOT_JOIN["postgresql"] + LOT_WHERE + ("AND (l.expires IS NULL OR l.expires > ?) "
                                                            "ORDER BY l.expires, l.serial LIMIT ?")
_SQLITE_WALK = LOT_SELECT + LOT_JOIN["sqlite"] + LOT_WHERE
LOT_SQLITE = _SQLITE_WALK + "AND l.expires > ? ORDER BY l.expires, l.serial LIMIT ?"
LOT_SQLITE_NEVER = _SQLITE_WALK + "AND l.expires IS NULL ORDER BY l.serial LIMIT ?"
# PostgreSQL reads every need's first lots with the chain-head lock, in one round trip: the matching keys
# come from the matching table of the current rulebook version.
PROJECT_LOTS_PG = (
    "SELECT x.serial, x.zone, x.expires, x.amount_g, x.pollutant, x.last_date, x.effective_date FROM project_need n "
    "JOIN project p ON p.project_id = n.project_id JOIN matching pm ON pm.version = "
    "(SELECT max(version) FROM rulebook) AND pm.pollutant = n.pollutant AND pm.zone = p.zone CROSS JOIN LATERAL ("
    + LOT_SELECT + LOT_JOIN["postgresql"]
    + "WHERE l.pollutant = n.pollutant AND l.zone = ANY (ARRAY(SELECT zone FROM matching WHERE version = "
      "pm.version AND pollutant = n.pollutant AND key = pm.key)) AND b.amount_g > 0 AND l.effective_date <= ? "
      "AND (l.expires IS NULL OR l.expires > GREATEST(p.needed_by, ?)) ORDER BY l.expires, l.serial LIMIT ?) x "
      "WHERE n.project_id = ? ORDER BY x.pollutant, x.expires, x.serial")
DRAW_LIMIT = 4  # most needs are met by one or two lots; a need the first 4 do not cover reads all
NO_LIMIT = 2 ** 62


def project_lots_query(project_id: str, today: dt.date, floor: dt.date | None = None) -> tuple[str, tuple]:
    """PROJECT_LOTS_PG for a reservation made on `today`, of lots valid at least until `floor` (the later of
    today and the clock's today; a needed_by later still raises it in SQL)."""
    return PROJECT_LOTS_PG, (today, floor or today, DRAW_LIMIT, project_id)


def lot_query(dialect: str, book: Rulebook, need: Need, on: dt.date, today: dt.date, limit: int,
              never: bool = False) -> tuple[str, tuple]:
    """The query of `need`'s first `limit` candidate lots for a project needing them on `on` (on SQLite:
    the expiring ones, or with `never` the never-expiring ones)."""
    zones = book.zones_with_key(need.pollutant, need.key) or ("",)
    head = (need.pollutant, *zones, today)
    if dialect != "sqlite":
        return _with_zones(LOT_PG, len(zones)), (*head, on, limit)
    if never:
        return _with_zones(LOT_SQLITE_NEVER, len(zones)), (*head, limit)
    return _with_zones(LOT_SQLITE, len(zones)), (*head, on, limit)


@functools.lru_cache(maxsize=256)
def _with_zones(sql: str, n: int) -> str:
    """`sql` with its zone list of `n` placeholders."""
    return sql.format(zones=", ".join("?" * n))


class HeldRow(NamedTuple):
    """One balance row of a project's account (SNAPSHOT_PAIRS), with the lot's facts and its own balance."""
    account: str
    lot: str
    pollutant: str
    amount_g: int
    last_date: dt.date | str | None
    zone: str
    expires: dt.date | str | None
    lot_amount_g: int | None        # the lot's own balance (None: none)
    lot_last_date: dt.date | str | None
    effective: dt.date | str | None
    status: str | None              # lot_status (None: active)


@dataclass
class Snapshot:
    """What one operation on a project reads, in one round trip: the project and its needs, and every
    balance row of its accounts (with the lot's zone, expiry and own balance)."""
    info: ProjectInfo
    rows: list[HeldRow]

    def held(self, part: str) -> dict[str, dict[str, int]]:
        """{pollutant: {lot: grams}} held by the project's reserved or allocated account."""
        account = posting.project_account(self.info.project_id, part)
        out: dict[str, dict[str, int]] = {}
        for r in sorted(self.rows, key=lambda r: r.lot):
            if r.account == account and r.amount_g > 0:
                out.setdefault(r.pollutant, {})[r.lot] = int(r.amount_g)
        return out

    def known(self, drawn: list[LotAvail] = ()) -> dict[str, dict[str, tuple[int, dt.date | None]]]:
        """Balance pairs read here, for ledger.post_many: the project's accounts, the held lots' own
        and those of the `drawn` lots."""
        out: dict[str, dict[str, tuple[int, dt.date | None]]] = {}
        for account in ("reserved", "allocated"):
            out[posting.project_account(self.info.project_id, account)] = {}
        for r in self.rows:
            out.setdefault(r.account, {})[r.lot] = (int(r.amount_g), r.last_date)
            if r.lot_amount_g is not None:
                out[posting.lot_account(r.lot)] = {r.lot: (int(r.lot_amount_g), r.lot_last_date)}
        for lot in drawn:
            out[posting.lot_account(lot.serial)] = {lot.serial: (lot.available_g, lot.last_date)}
        return out

    def lot_facts(self) -> dict[str, LotFacts]:
        """{serial: LotFacts} of the lots the project holds, for the eligibility rule."""
        return {r.lot: LotFacts(r.lot, r.pollutant, r.zone, clock.as_date(r.effective), clock.as_date(r.expires),
                                r.status or "active") for r in self.rows}


SNAPSHOT_PROJECT = PROJECT_SQL + " WHERE p.project_id = ? ORDER BY n.pollutant"
SNAPSHOT_PAIRS = ("SELECT b.account, b.lot, b.pollutant, b.amount_g, b.last_date, l.zone, l.expires, lb.amount_g, "
                  "lb.last_date, l.effective_date, s.status FROM balance b JOIN lot l ON l.serial = b.lot LEFT JOIN balance lb "
                  "ON " + lot_balance_join("lb", "b.lot") + " LEFT JOIN lot_status s ON s.serial = b.lot "
                  "WHERE b.account IN (?, ?) ORDER BY b.account, b.lot")


def snapshot_reads(project_id: str) -> list[tuple[str, tuple]]:
    """The queries of `snapshot` (so db.run_write can read them ahead with the chain-head lock)."""
    return [(SNAPSHOT_PROJECT, (project_id,)),
            (SNAPSHOT_PAIRS, (project_account(project_id, "reserved"), project_account(project_id, "allocated")))]


# the date of the chain's last operation: every operation is dated no earlier than the one before it (check_date),
# so the last one carries the latest date. Issues are booked at their vintage and registers move no grams: neither
# counts (the walk back from the head passes an import's issues once; the next operation is the head again).
LAST_DATE = ("SELECT effective_date FROM txn WHERE kind NOT IN ('register', 'issue') ORDER BY seq DESC LIMIT 1", ())


def reads_ahead(bind, project_id: str, reserve_on: dt.date | None = None,
                floor: dt.date | None = None) -> list[tuple[str, tuple]]:
    """What db.run_write should read with the lock on PostgreSQL (one round trip): the last transaction's date,
    the project's snapshot and, for a reservation made on `reserve_on`, its first candidate lots. None on SQLite,
    which has no round trips to save."""
    if bind.dialect.name == "sqlite":
        return []
    return [LAST_DATE] + snapshot_reads(project_id) + (
        [project_lots_query(project_id, reserve_on, floor)] if reserve_on else [])


def snapshot(conn: Connection, book: Rulebook, project_id: str) -> Snapshot:
    """The project's Snapshot, with its needs under `book` (NotFound if there is no such project)."""
    found = driver.select(conn, *snapshot_reads(project_id))
    infos = projects_from_rows(book, found[0])
    if not infos:
        raise NotFound(what="project", value=project_id)
    return Snapshot(infos[0], [HeldRow(*r) for r in found[1]])


def candidate_lots(conn: Connection, book: Rulebook, project_id: str, needs: list[Need], on: dt.date,
                   today: dt.date, limit: int | None = None, floor: dt.date | None = None) -> dict[str, list[LotAvail]]:
    """{pollutant: candidate lots in drawing order}, the first `limit` (DRAW_LIMIT) of each need, all needs in
    one round trip. On PostgreSQL the first rows of every need were read ahead with the chain-head lock
    (PROJECT_LOTS_PG)."""
    if conn.dialect.name != "sqlite" and limit is None:
        lots = list(as_lots(driver.select(conn, project_lots_query(project_id, today, floor))[0]))
        # the rulebook has the last word on matching, whatever the matching table says (verify checks it too)
        return {n.pollutant: [x for x in lots if x.pollutant == n.pollutant
                              and book.matching_key(n.pollutant, x.zone) == n.key] for n in needs}
    dialect, limit = conn.dialect.name, limit or DRAW_LIMIT
    found = driver.select(conn, *[lot_query(dialect, book, n, on, today, limit) for n in needs])
    out = {n.pollutant: list(as_lots(rows)) for n, rows in zip(needs, found)}
    if dialect == "sqlite":  # never-expiring lots come after all the expiring ones
        more = [n for n in needs if len(out[n.pollutant]) < limit]
        found = driver.select(conn, *[lot_query(dialect, book, n, on, today, limit - len(out[n.pollutant]), True)
                                      for n in more]) if more else []
        for n, rows in zip(more, found):
            out[n.pollutant] = out[n.pollutant] + list(as_lots(rows))
    return out


def as_lots(rows: list[tuple]) -> Iterator[LotAvail]:
    """LotAvail per LOT_SELECT row, in the rows' (drawing) order."""
    for serial, zone, expires, amount, pollutant, last, effective in rows:
        yield LotAvail(serial, zone, clock.as_date(expires), int(amount), clock.as_date(last), pollutant,
                       clock.as_date(effective))


Draws = dict[str, list[tuple[LotAvail, int]]]


def plan_draws(needs: list[Need], lots: dict[str, list[LotAvail]],
               cut: int | None = None) -> tuple[Draws, list[tuple[Need, int]]]:
    """Draw each need from its candidate lots (in drawing order); returns (draws, shortfalls). With `cut`,
    a need whose lots were cut at that many rows is not a shortfall yet: it is returned with -1."""
    draws: Draws = {}
    short: list[tuple[Need, int]] = []
    for need in needs:
        left = need.required_g
        picks = []
        for lot in lots[need.pollutant]:
            if left == 0:
                break
            take = min(left, lot.available_g)
            picks.append((lot, take))
            left -= take
        if left:
            short.append((need, -1 if cut and len(lots[need.pollutant]) >= cut else left))
        draws[need.pollutant] = picks
    return draws, short
