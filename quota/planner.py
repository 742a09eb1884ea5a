"""Allocation planner: a compact MILP over pooled lots (PuLP + HiGHS/CBC), exact integer draws.

Eligibility has a nested structure: within one (pollutant, matching key) a lot can serve a
project iff it outlives the project's date, so the sets of usable lots are nested. Pooling
interchangeable lots then reduces the transportation part of the model to Hall conditions:
for each group and each date threshold d, the requirements of funded projects dated >= d
must fit in the supply of lots expiring after d. The MILP keeps only the binaries y_j (the
LP relaxations of this model and of the per-lot x_jqk model are the same); draws are then
recovered exactly, in integer grams, by serving the most restrictive project first from the
lots that expire first. Floats exist only inside the solver; every answer is re-checked in
integer arithmetic.
"""
from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field

FAR = dt.date.max


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


@dataclass(frozen=True)
class PProject:
    project_id: str
    priority: int
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


@contextlib.contextmanager
def quiet():
    """Silence what the solver libraries print (HiGHS prints a banner even with output off),
    so stdout stays clean for --json and stderr for diagnostics."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError):  # no real stdout (e.g. captured by a test runner)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def _exp(lot: PLot) -> dt.date:
    return lot.expires or FAR


def build_rows(projects: list[PProject], lots: list[PLot], candidates: list[PCandidate]) -> list[Row]:
    """One row per (group, supply plateau) that some project's date falls in; dominated rows dropped."""
    supply: dict[tuple, list[tuple[dt.date, int]]] = defaultdict(list)
    for lot in lots:
        supply[(lot.pollutant, lot.key)].append((_exp(lot), lot.available_g))
    cand_supply: dict[tuple, list[tuple[dt.date, int, int]]] = defaultdict(list)
    for ci, cand in enumerate(candidates):
        for lot in cand.lots:
            cand_supply[(lot.pollutant, lot.key)].append((_exp(lot), lot.available_g, ci))
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
            row.terms = [(pi, g) for on, g, pi in items if on >= threshold]
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


def _fill(projects: list[PProject], rows: list[Row], start: set[int], chosen: set[int], order) -> set[int]:
    """Add projects to `start`, in the order given by the key function `order(pi, cap)`, while every
    row still holds in integer grams."""
    cap = {id(r): r.supply_g + sum(g for ci, g in r.cand_terms if ci in chosen) for r in rows}
    use = {id(r): sum(g for pi, g in r.terms if pi in start) for r in rows}
    rows_of: dict[int, list[tuple[Row, int]]] = defaultdict(list)
    for r in rows:
        for pi, g in r.terms:
            rows_of[pi].append((r, g))
    funded = set(start)
    for pi in sorted((i for i in range(len(projects)) if i not in funded), key=lambda i: order(i, cap, rows_of)):
        if all(use[id(r)] + g <= cap[id(r)] for r, g in rows_of[pi]):
            for r, g in rows_of[pi]:
                use[id(r)] += g
            funded.add(pi)
    return funded


def greedy(projects: list[PProject], rows: list[Row], start: set[int], chosen: set[int]) -> set[int]:
    """Add projects to `start` by priority per unit of scarce resource while every row still holds."""
    def density(i, cap, rows_of):
        load = sum(g / max(cap[id(r)], 1) for r, g in rows_of[i])
        return (-projects[i].priority / (load + 1e-9), projects[i].project_id)
    return _fill(projects, rows, start, chosen, density)


def lp_rounding(projects: list[PProject], rows: list[Row], must: set[int], chosen: set[int],
                lp: dict[int, float]) -> set[int]:
    """LP-guided rounding and repair: keep what the LP funds fully, then add the rest in order of
    LP value (then priority) while every row holds; the better of that and the plain greedy."""
    whole = _repair(projects, rows, {i for i, v in lp.items() if v > 1 - 1e-6} | must, chosen, must)
    funded = _fill(projects, rows, whole, chosen,
                   lambda i, cap, rows_of: (-lp.get(i, 0.0), -projects[i].priority, projects[i].project_id))
    plain = greedy(projects, rows, must, chosen)
    return funded if _value(projects, funded) >= _value(projects, plain) else plain


def must_fund_shortfalls(projects: list[PProject], rows: list[Row], chosen: set[int]) -> list[dict]:
    """For must-fund projects alone: which (pollutant, key) is short and by how much (max over dates)."""
    must = {i for i, p in enumerate(projects) if p.must_fund}
    worst: dict[tuple, int] = {}
    for row, excess in feasible(rows, must, chosen):
        worst[row.group] = max(worst.get(row.group, 0), excess)
    return [{"pollutant": g[0], "key": g[1], "short_g": v} for g, v in sorted(worst.items())]


def solve(projects: list[PProject], lots: list[PLot], candidates: list[PCandidate] | None = None, *,
          time_limit: float = 10.0, gap: float = 0.0, mode: str = "priority", budget: int | None = None,
          solver: str = "auto") -> tuple[Solution, list[Row]]:
    """Choose the projects to fund (and candidate measures to take) and return them with the rows.

    mode "priority": maximise the total priority funded (within `budget` if given).
    mode "cheapest": the cheapest set of candidate measures that funds every must-fund project,
    then the most priority with that set.
    """
    import pulp

    t0 = time.perf_counter()
    candidates = candidates or []
    rows = build_rows(projects, lots, candidates)
    must = {i for i, p in enumerate(projects) if p.must_fund}
    if not candidates and feasible(rows, must, set()):
        return Solution("infeasible", [], [], 0.0, 0.0, 0.0, time.perf_counter() - t0, ""), rows
    chosen_fixed: set[int] | None = None
    if mode == "cheapest" and candidates:
        chosen_fixed = _cheapest(projects, rows, candidates, time_limit, solver)
        if chosen_fixed is None:
            return Solution("infeasible", [], [], 0.0, 0.0, 0.0, time.perf_counter() - t0, ""), rows
    relaxed, ry, rz = _model(projects, rows, candidates, budget, chosen_fixed)  # a separate copy for the LP
    lp_bound, duals = _lp_relaxation(relaxed, ry, rz, solver)
    prob, y, z = _model(projects, rows, candidates, budget, chosen_fixed)
    start = None
    if not candidates or chosen_fixed is not None:
        start = lp_rounding(projects, rows, must, chosen_fixed or set(), {i: v.varValue or 0.0 for i, v in ry.items()})
    remaining = max(0.5, time_limit - (time.perf_counter() - t0) - 0.2)
    engine = _solver(solver, remaining, gap, start, y)
    with quiet():
        status = prob.solve(engine)
    funded = {i for i, v in y.items() if (v.varValue or 0) > 0.5}
    chosen = {i for i, v in z.items() if (v.varValue or 0) > 0.5}
    if chosen_fixed is not None:
        chosen = set(chosen_fixed)
    if status != pulp.LpStatusOptimal and not funded and start is None:
        return Solution("infeasible", [], [], 0.0, 0.0, lp_bound, time.perf_counter() - t0, engine.name), rows
    funded = _repair(projects, rows, funded, chosen, must)
    if start is not None and _value(projects, start) > _value(projects, funded):
        funded = start
    funded = greedy(projects, rows, funded, chosen)  # fill what still fits
    bound = _mip_bound(engine, lp_bound)
    objective = _value(projects, funded)
    exact = status == pulp.LpStatusOptimal and _gap(objective, bound) <= max(gap, 1e-6) + 1e-9
    return Solution("optimal" if exact else "feasible", sorted(funded), sorted(chosen), objective, bound, lp_bound,
                    time.perf_counter() - t0, engine.name, duals), rows


def _value(projects, funded) -> float:
    return float(sum(projects[i].priority for i in funded))


def _gap(objective: float, bound: float) -> float:
    return 0.0 if bound <= 0 else max(0.0, (bound - objective) / bound)


def _model(projects, rows, candidates, budget, chosen_fixed):
    import pulp
    prob = pulp.LpProblem("quota_plan", pulp.LpMaximize)
    y = {i: pulp.LpVariable(f"y_{i}", cat="Binary") for i in range(len(projects))}
    z = {i: pulp.LpVariable(f"z_{i}", cat="Binary") for i in range(len(candidates))}
    for i, p in enumerate(projects):
        if p.must_fund:
            y[i].lowBound = 1
    if chosen_fixed is not None:
        for i, v in z.items():
            v.lowBound = v.upBound = 1 if i in chosen_fixed else 0
    prob += pulp.LpAffineExpression([(y[i], float(p.priority)) for i, p in enumerate(projects)])
    for r_i, row in enumerate(rows):
        scale = 1e-6  # grams -> tonnes inside the solver
        expr = pulp.LpAffineExpression([(y[pi], g * scale) for pi, g in row.terms] +
                                       [(z[ci], -g * scale) for ci, g in row.cand_terms])
        prob += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{r_i}", row.supply_g * scale)
    if budget is not None and candidates:
        prob += pulp.LpConstraint(pulp.LpAffineExpression([(z[i], float(c.cost)) for i, c in enumerate(candidates)]),
                                  pulp.LpConstraintLE, "budget", float(budget))
    return prob, y, z


def _solver(name: str, time_limit: float, gap: float, start: set[int] | None, y: dict):
    import pulp
    use_highs = name in ("auto", "highs") and "HiGHS" in pulp.listSolvers(onlyAvailable=True)
    if name == "highs" and not use_highs:
        raise RuntimeError("HiGHS is not installed (pip install highspy)")
    if not use_highs:
        s = pulp.PULP_CBC_CMD(msg=False, timeLimit=time_limit, gapRel=gap, warmStart=start is not None)
        if start is not None:
            for i, v in y.items():
                v.setInitialValue(1 if i in start else 0)
        s.name = "cbc"
        return s
    # no "threads" option: HiGHS keeps one global scheduler and refuses a different count later
    return _WarmHiGHS(start, y, msg=False, timeLimit=time_limit, gapRel=gap)


try:
    import pulp as _pulp

    class _WarmHiGHS(_pulp.HiGHS):
        """PuLP's HiGHS with a starting solution (a greedy plan) and access to the MIP bound."""

        def __init__(self, start, y, **kw):
            super().__init__(**kw)
            self.start, self.y, self.name = start, y, "highs"

        def callSolver(self, lp):
            if self.start is not None:
                import highspy
                sol = highspy.HighsSolution()
                values = [0.0] * lp.solverModel.getNumCol()
                for i, v in self.y.items():
                    values[v.index] = 1.0 if i in self.start else 0.0
                sol.col_value = values
                lp.solverModel.setSolution(sol)
            lp.solverModel.run()
            info = lp.solverModel.getInfo()
            self.mip_bound = getattr(info, "mip_dual_bound", None)
except ImportError:  # pragma: no cover - pulp is a dependency
    _WarmHiGHS = None


def _mip_bound(engine, lp_bound: float) -> float:
    """The best proven bound: HiGHS's MIP dual bound when it has one, else the LP bound.

    PuLP hands HiGHS a maximisation as the minimisation of -objective, hence the sign.
    """
    raw = getattr(engine, "mip_bound", None)
    if raw is None or raw != raw or abs(raw) == float("inf"):
        return lp_bound
    return min(lp_bound, -raw) if lp_bound else -raw


def _lp_relaxation(prob, y, z, solver: str) -> tuple[float, dict[str, float]]:
    """Bound and duals (per row name) of the LP relaxation; the y values stay on `y`."""
    import pulp
    relaxed = prob  # mip=False relaxes integrality without touching the (shared) variables
    highs = solver in ("auto", "highs") and "HiGHS" in pulp.listSolvers(onlyAvailable=True)
    engine = pulp.HiGHS(msg=False, mip=False) if highs else pulp.PULP_CBC_CMD(msg=False, mip=False)
    with quiet():
        status = relaxed.solve(engine)
    if status != pulp.LpStatusOptimal:
        return 0.0, {}
    # HiGHS reports duals of the negated (minimisation) problem; a <= row of a maximisation is worth >= 0
    duals = {name: abs(float(c.pi or 0.0)) for name, c in relaxed.constraints.items()}
    return float(pulp.value(relaxed.objective) or 0.0), duals


def _repair(projects, rows, funded: set[int], chosen: set[int], must: set[int]) -> set[int]:
    """Drop the least valuable optional projects until every row holds in integer grams."""
    funded = set(funded)
    while True:
        bad = feasible(rows, funded, chosen)
        if not bad:
            return funded
        row = bad[0][0]
        victims = sorted((pi for pi, _ in row.terms if pi in funded and pi not in must),
                         key=lambda pi: (projects[pi].priority, projects[pi].project_id))
        if not victims:
            return funded
        funded.discard(victims[0])


def _cheapest(projects, rows, candidates, time_limit, solver) -> set[int] | None:
    """Cheapest set of candidates that makes every must-fund project feasible."""
    import pulp
    must = [i for i, p in enumerate(projects) if p.must_fund]
    prob = pulp.LpProblem("cheapest_measures", pulp.LpMinimize)
    z = {i: pulp.LpVariable(f"z_{i}", cat="Binary") for i in range(len(candidates))}
    prob += pulp.LpAffineExpression([(z[i], float(c.cost)) for i, c in enumerate(candidates)])
    for r_i, row in enumerate(rows):
        need = sum(g for pi, g in row.terms if pi in set(must))
        if need > row.supply_g:
            prob += pulp.LpConstraint(pulp.LpAffineExpression([(z[ci], g * 1e-6) for ci, g in row.cand_terms]),
                                      pulp.LpConstraintGE, f"c{r_i}", (need - row.supply_g) * 1e-6)
    with quiet():
        status = prob.solve(_solver(solver, time_limit, 0.0, None, {}))
    if status != pulp.LpStatusOptimal:
        return None
    chosen = {i for i, v in z.items() if (v.varValue or 0) > 0.5}
    if feasible(rows, set(must), chosen):  # re-check in integer grams
        return None
    return chosen


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
        group.sort(key=lambda l: (_exp(l), l.serial))
    out: dict[int, list[tuple[PLot, str, int]]] = defaultdict(list)
    order = sorted(funded, key=lambda i: (-projects[i].on.toordinal(), projects[i].project_id))
    for pi in order:
        p = projects[pi]
        for need in p.needs:
            want = need.required_g
            for lot in by_group.get((need.pollutant, need.key), []):
                if want == 0:
                    break
                if _exp(lot) <= p.on or left[lot.serial] == 0:
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
                        if l.pollutant == need.pollutant and l.key == need.key and _exp(l) > p.on)
            if avail < need.required_g:
                short[need.pollutant] = need.required_g - avail
        out[pi] = short
    return out
