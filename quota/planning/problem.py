"""The planning problem: pooled lots, projects and candidate measures, the Hall-condition rows, and every
answer checked and turned into draws in exact integer grams (floats exist only inside the solver)."""
from __future__ import annotations

import bisect
import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from quota import units


FAR = dt.date.max
# grams -> kilograms inside the solver: its feasibility tolerance (1e-6) is then a milligram, so a
# plan it accepts also holds in whole grams (in tonnes, a row could be over by a gram, and a
# project the solver funded was then dropped by the integer re-check)
SCALE = 1e-3


@dataclass(frozen=True)
class PLot:
    serial: str
    pollutant: str
    key: str
    expires: dt.date | None
    available_g: int
    candidate: str | None = None  # id of the candidate measure that would create it


@dataclass(frozen=True)
class PNeed:
    pollutant: str
    key: str
    required_g: int
MAX_PRIORITY = units.MAX_PRIORITY        # priorities are 0 < p <= 10^6 with at most 4 decimal places
PRIORITY_PLACES = units.PRIORITY_PLACES  # (units.parse_priority): exact as float through the solver


def check_priority(value) -> str | None:
    """Why `value` is not a valid priority (a whole number or a decimal like 7.5), or None."""
    try:
        units.parse_priority(value if isinstance(value, (int, Decimal)) and not isinstance(value, bool)
                             else str(value))
    except units.AmountError as exc:
        return str(exc)
    return None


def objective_exact(projects, funded) -> Decimal:
    """The priority funded, exactly (priorities are int or Decimal; whole ones are summed as ints)."""
    whole, frac = 0, Decimal(0)
    for i in funded:
        p = projects[i].priority
        if type(p) is int:
            whole += p
        else:
            frac += p
    return frac + whole


@dataclass(frozen=True)
class PProject:
    project_id: str
    priority: int | Decimal  # see check_priority
    must_fund: bool
    on: dt.date  # lots must not expire by this date (needed_by, or the plan's as_of)
    needs: tuple[PNeed, ...]


@dataclass(frozen=True)
class PCandidate:
    candidate_id: str
    cost: int
    lots: tuple[PLot, ...]


@dataclass
class Row:
    """Hall condition: sum(required of funded projects with on >= d) <= supply after d."""
    group: tuple[str, str]
    threshold: dt.date
    supply_g: int
    terms: list[tuple[int, int]] = field(default_factory=list)   # (project index, grams)
    cand_terms: list[tuple[int, int]] = field(default_factory=list)  # (candidate index, grams)

    @property
    def name(self) -> str:
        return f"{self.group[0]}@{self.group[1]}>{self.threshold}"


@dataclass
class Solution:
    status: str
    funded: list[int]
    chosen: list[int]
    objective: float
    bound: float
    lp_bound: float
    seconds: float
    solver: str
    duals: dict[str, float] = field(default_factory=dict)
    parts: list[dict] = field(default_factory=list)  # per independent part: size, status, how, seconds


def lot_expiry(lot: PLot) -> dt.date:
    return lot.expires or FAR


def build_rows(projects: list[PProject], lots: list[PLot], candidates: list[PCandidate]) -> list[Row]:
    """One row per (group, supply plateau) that some project's date falls in; dominated rows dropped."""
    supply: dict[tuple, list[tuple[dt.date, int]]] = defaultdict(list)
    for lot in lots:
        supply[(lot.pollutant, lot.key)].append((lot_expiry(lot), lot.available_g))
    cand_supply: dict[tuple, list[tuple[dt.date, int, int]]] = defaultdict(list)
    for ci, cand in enumerate(candidates):
        for lot in cand.lots:
            cand_supply[(lot.pollutant, lot.key)].append((lot_expiry(lot), lot.available_g, ci))
    needs: dict[tuple, list[tuple[dt.date, int, int]]] = defaultdict(list)
    for pi, p in enumerate(projects):
        for n in p.needs:
            needs[(n.pollutant, n.key)].append((p.on, n.required_g, pi))
    rows = []
    for group in sorted(needs):
        expiries = sorted({e for e, _ in supply.get(group, [])} | {e for e, _, _ in cand_supply.get(group, [])})
        items = sorted(needs[group])
        # plateau index of a date d = number of expiries <= d; rows at the smallest d of each plateau
        by_plateau: dict[int, dt.date] = {}
        for on, _, _ in items:
            by_plateau.setdefault(bisect.bisect_right(expiries, on), on)
        for plateau, threshold in sorted(by_plateau.items()):
            row = Row(group, threshold, sum(g for e, g in supply.get(group, []) if e > threshold))
            # items are sorted by date: the projects dated on or after the threshold are a suffix
            row.terms = [(pi, g) for _, g, pi in items[bisect.bisect_left(items, (threshold,)):]]
            agg: dict[int, int] = defaultdict(int)
            for e, g, ci in cand_supply.get(group, []):
                if e > threshold:
                    agg[ci] += g
            row.cand_terms = sorted(agg.items())
            rows.append(row)
    return rows


def feasible(rows: list[Row], funded: set[int], chosen: set[int]) -> list[tuple[Row, int]]:
    """Rows violated by a selection, with the excess in grams (integer arithmetic)."""
    bad = []
    for row in rows:
        used = sum(g for pi, g in row.terms if pi in funded)
        cap = row.supply_g + sum(g for ci, g in row.cand_terms if ci in chosen)
        if used > cap:
            bad.append((row, used - cap))
    return bad


def must_fund_shortfalls(projects: list[PProject], rows: list[Row], chosen: set[int]) -> list[dict]:
    """For must-fund projects alone: which (pollutant, key) is short and by how much (max over dates)."""
    must = {i for i, p in enumerate(projects) if p.must_fund}
    worst: dict[tuple, int] = {}
    for row, excess in feasible(rows, must, chosen):
        worst[row.group] = max(worst.get(row.group, 0), excess)
    return [{"pollutant": g[0], "key": g[1], "short_g": v} for g, v in sorted(worst.items())]


def draws(projects: list[PProject], lots: list[PLot], funded: list[int]) -> dict[int, list[tuple[PLot, str, int]]]:
    """Integer-gram draws: most restrictive project first, each from the lots that expire first.

    Within a group the usable lots of a project are those expiring after its date; serving the
    latest-dated projects first from the earliest-expiring usable lots never strands a project
    whose Hall conditions hold, and leaves long-lived lots for later.
    """
    left = {lot.serial: lot.available_g for lot in lots}
    by_group: dict[tuple, list[PLot]] = defaultdict(list)
    for lot in lots:
        by_group[(lot.pollutant, lot.key)].append(lot)
    for group in by_group.values():
        group.sort(key=lambda l: (lot_expiry(l), l.serial))
    out: dict[int, list[tuple[PLot, str, int]]] = defaultdict(list)
    order = sorted(funded, key=lambda i: (-projects[i].on.toordinal(), projects[i].project_id))
    for pi in order:
        p = projects[pi]
        for need in p.needs:
            want = need.required_g
            for lot in by_group.get((need.pollutant, need.key), []):
                if want == 0:
                    break
                if lot_expiry(lot) <= p.on or left[lot.serial] == 0:
                    continue
                take = min(want, left[lot.serial])
                left[lot.serial] -= take
                want -= take
                out[pi].append((lot, need.pollutant, take))
            if want:
                raise AssertionError(f"draw failed for {p.project_id} {need.pollutant}: {want} g left")
    return out


def shortfalls(projects: list[PProject], lots: list[PLot], funded: list[int],
               drawn: dict[int, list[tuple[PLot, str, int]]]) -> dict[int, dict[str, int]]:
    """For each unfunded project: grams missing per pollutant after the funded projects' draws."""
    left = {lot.serial: lot.available_g for lot in lots}
    for items in drawn.values():
        for lot, _, g in items:
            left[lot.serial] -= g
    out = {}
    fset = set(funded)
    for pi, p in enumerate(projects):
        if pi in fset:
            continue
        short = {}
        for need in p.needs:
            avail = sum(left[l.serial] for l in lots
                        if l.pollutant == need.pollutant and l.key == need.key and lot_expiry(l) > p.on)
            if avail < need.required_g:
                short[need.pollutant] = need.required_g - avail
        out[pi] = short
    return out
