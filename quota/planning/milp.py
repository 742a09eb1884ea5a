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
import functools
import datetime as dt
import math
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction

FAR = dt.date.max
# grams -> kilograms inside the solver: its feasibility tolerance (1e-6) is then a milligram, so a
# plan it accepts also holds in whole grams (in tonnes, a row could be over by a gram, and a
# project the solver funded was then dropped by the integer re-check)
SCALE = 1e-3
BIG = 5000  # projects in a part above which the start skips the density greedy (see lp_rounding)


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


MAX_PRIORITY = Decimal(10) ** 6   # priorities are 0 < p <= 10^6 ...
PRIORITY_PLACES = 4               # ... with at most 4 decimal places: a total over 50,000 projects
# then has at most 15 significant digits, so the float the solver and JSON carry is exact


def check_priority(value) -> str | None:
    """Why `value` is not a valid priority (a whole number or a decimal like 7.5), or None."""
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return f"must be a number, not {value!r}"
    if not d.is_finite() or d <= 0 or d > MAX_PRIORITY:
        return f"must be greater than 0 and at most {MAX_PRIORITY:,}"
    if d.as_tuple().exponent < -PRIORITY_PLACES and d != d.quantize(Decimal(1).scaleb(-PRIORITY_PLACES)):
        return f"must have at most {PRIORITY_PLACES} decimal places"
    return None


def objective_exact(projects, funded) -> Decimal:
    """The priority funded, exactly (priorities are int or Decimal)."""
    return sum((Decimal(projects[i].priority) for i in funded), Decimal(0))


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
        return (-float(projects[i].priority) / (load + 1e-9), projects[i].project_id)
    return _fill(projects, rows, start, chosen, density)


def lp_rounding(projects: list[PProject], rows: list[Row], must: set[int], chosen: set[int],
                lp: dict[int, float]) -> set[int]:
    """LP-guided rounding and repair: keep what the LP funds fully, then add the rest in order of
    LP value (then priority) while every row holds; the better of that and the plain greedy."""
    whole = _repair(projects, rows, {i for i, v in lp.items() if v > 1 - 1e-6} | must, chosen, must)
    funded = _lp_fill(projects, rows, whole, chosen, lp)
    if len(projects) > BIG:  # the LP guides well at this size; a second pass costs seconds
        return funded
    plain = greedy(projects, rows, must, chosen)
    return funded if _value(projects, funded) >= _value(projects, plain) else plain


def _lp_fill(projects, rows, start, chosen, lp):
    """Add projects in order of LP value, then priority, while every row holds."""
    return _fill(projects, rows, start, chosen,
                 lambda i, cap, rows_of: (-lp.get(i, 0.0), -projects[i].priority, projects[i].project_id))


def must_fund_shortfalls(projects: list[PProject], rows: list[Row], chosen: set[int]) -> list[dict]:
    """For must-fund projects alone: which (pollutant, key) is short and by how much (max over dates)."""
    must = {i for i, p in enumerate(projects) if p.must_fund}
    worst: dict[tuple, int] = {}
    for row, excess in feasible(rows, must, chosen):
        worst[row.group] = max(worst.get(row.group, 0), excess)
    return [{"pollutant": g[0], "key": g[1], "short_g": v} for g, v in sorted(worst.items())]


def solve(projects: list[PProject], lots: list[PLot], candidates: list[PCandidate] | None = None, *,
          time_limit: float = 10.0, gap: float = 0.0, mode: str = "priority", budget: int | None = None,
          solver: str = "auto", workers: int | None = None, split: bool = True) -> tuple[Solution, list[Row]]:
    """Choose the projects to fund (and candidate measures to take) and return them with the rows.

    mode "priority": maximise the total priority funded (within `budget` if given).
    mode "cheapest": the cheapest set of candidate measures that funds every must-fund project,
    then the most priority with that set.

    The model is split into independent parts (quota.decompose): parts where everything fits or
    the LP optimum is whole are settled at once; the others are solved in `workers` processes
    (default: one per core; 0 = here, without a watchdog) with the time shared by difficulty.
    split=False keeps the model whole (one part), for comparison.
    """
    from quota.planning import decompose

    t0 = time.perf_counter()
    deadline = t0 + max(0.3, time_limit - 0.2)
    decompose.warm(len(projects), workers)
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
    if _use_highs(solver):
        lp_bound, duals, lp_y, lp_z = _lp_highs(projects, rows, candidates, budget, chosen_fixed)
    else:
        relaxed, ry, rz = _model(projects, rows, candidates, budget, chosen_fixed)
        lp_bound, duals = _lp_relaxation(relaxed, ry, rz, solver)
        lp_y = {i: v.varValue or 0.0 for i, v in ry.items()}
        lp_z = {i: v.varValue or 0.0 for i, v in rz.items()}
        del relaxed, ry, rz
    lp_ok = lp_bound is not None
    if not lp_ok:
        lp_y, lp_z, lp_bound = {}, {}, float(sum(p.priority for p in projects))
    parts = decompose.split(len(projects), rows, len(candidates), couple_candidates=chosen_fixed is None,
                            budget=budget is not None)
    if not split and len(parts) > 1:
        parts = [decompose.Part(list(range(len(projects))), list(range(len(rows))),
                                sorted(ci for p in parts for ci in p.cands))]
    funded: set[int] = set()
    chosen: set[int] = set(chosen_fixed or ())
    bound, status, report, jobs, subs = 0.0, "optimal", {}, [], {}
    for k, part in enumerate(parts):
        sub = _subproblem(projects, rows, candidates, part, chosen_fixed)
        sp, srows, scands = sub
        y = {li: lp_y.get(pi, 0.0) for li, pi in enumerate(part.projects)}
        z = {li: lp_z.get(ci, 0.0) for li, ci in enumerate(part.cands)}
        part_lp = sum(float(p.priority) * y[i] for i, p in enumerate(sp)) if lp_ok else _value(sp, range(len(sp)))
        settled, how = None, ""
        if not feasible(srows, set(range(len(sp))), set()):
            settled, how = (set(range(len(sp))), set()), "all fit"
        elif lp_ok and all(min(v, 1 - v) < 1e-9 for v in (*y.values(), *z.values())):
            whole = ({i for i, v in y.items() if v > 0.5}, {i for i, v in z.items() if v > 0.5})
            if not feasible(srows, *whole) and _within_budget(scands, whole[1], budget):
                settled, how = whole, "LP whole"
        if settled is not None:
            funded |= {part.projects[i] for i in settled[0]}
            chosen |= {part.cands[i] for i in settled[1]}
            bound += _value(sp, settled[0])
            report[k] = {"projects": len(sp), "rows": len(srows), "status": "optimal", "how": how, "seconds": 0.0}
            continue
        frac = sum(1 for v in (*y.values(), *z.values()) if min(v, 1 - v) >= 1e-9)
        subs[k] = (part, sub, part_lp)
        jobs.append(decompose.Job(k, frac + 0.01 * len(sp), (sp, srows, scands, y, part_lp, gap, budget, solver)))
    decompose.run(jobs, deadline, workers)
    results = {}
    for job in jobs:
        part, (sp, srows, scands), part_lp = subs[job.key]
        res = job.result if job.result and "error" not in job.result else \
            _fallback(sp, srows, job.start, part_lp, job.payload[3] if not scands else None)
        results[job.key] = (res, job.seconds, job.limit)
    # time left (parts that finished early): a second round for the parts not proven, from their plans
    again = [decompose.Job(k, res["bound"] - _value(subs[k][1][0], res["funded"]),
                           (*subs[k][1], {li: lp_y.get(pi, 0.0) for li, pi in enumerate(subs[k][0].projects)},
                            res["bound"], gap, budget, solver, res["funded"]))
             for k, (res, _, _) in sorted(results.items())
             if res["status"] == "feasible" and not res["chosen"] and not subs[k][1][2]]
    if again and deadline - time.perf_counter() > 1.0:
        decompose.run(again, deadline, workers)
        for job in again:
            res, secs, limit = results[job.key]
            new = job.result
            if new and "error" not in new and new["status"] != "infeasible":
                sp = subs[job.key][1][0]
                better = _value(sp, new["funded"]) > _value(sp, res["funded"])
                merged = dict(new if better else res, bound=min(res["bound"], new["bound"]))
                if _proven(sp, _value(sp, merged["funded"]), merged["bound"]):
                    merged["status"] = "optimal"
                results[job.key] = (merged, secs + job.seconds, limit + job.limit)
    for k, (res, secs, limit) in sorted(results.items()):
        part, (sp, srows, scands), _ = subs[k]
        if res["status"] == "infeasible":
            return Solution("infeasible", [], [], 0.0, 0.0, lp_bound, time.perf_counter() - t0, ""), rows
        funded |= {part.projects[i] for i in res["funded"]}
        chosen |= {part.cands[i] for i in res["chosen"]}
        bound += res["bound"]
        if res["status"] != "optimal":
            status = "feasible"
        report[k] = {"projects": len(sp), "rows": len(srows), "status": res["status"],
                     "how": res.get("how", "fallback"), "seconds": round(secs, 3), "limit": round(limit, 3)}
    objective = _value(projects, funded)
    name = "highs" if _use_highs(solver) else "cbc"
    sol = Solution(status, sorted(funded), sorted(chosen), objective, max(bound, objective), lp_bound,
                   time.perf_counter() - t0, name, duals)
    sol.parts = [report[k] for k in sorted(report)]
    return sol, rows


def _use_highs(solver: str) -> bool:
    """HiGHS through highspy (preferred), else CBC through PuLP."""
    if solver not in ("auto", "highs"):
        return False
    try:
        import highspy  # noqa: F401
        return True
    except ImportError:
        if solver == "highs":
            raise RuntimeError("HiGHS is not installed (pip install highspy)") from None
        return False


def _highs(projects, rows, candidates, budget, chosen_fixed, *, integer: bool, threads: int | None = None):
    """The model loaded straight into highspy (row-wise arrays; no modelling layer: at 50,000
    projects this takes a fraction of a second where PuLP took several)."""
    import highspy
    import numpy as np
    n, m = len(projects), len(candidates)
    lower = [1.0 if p.must_fund else 0.0 for p in projects] + [0.0] * m
    upper = [1.0] * (n + m)
    if chosen_fixed is not None:
        for ci in range(m):
            lower[n + ci] = upper[n + ci] = 1.0 if ci in chosen_fixed else 0.0
    starts, index, value, rhs = [0], [], [], []
    for row in rows:
        for pi, g in row.terms:
            index.append(pi)
            value.append(g * SCALE)
        for ci, g in row.cand_terms:
            index.append(n + ci)
            value.append(-g * SCALE)
        starts.append(len(index))
        rhs.append(row.supply_g * SCALE)
    if budget is not None and candidates:
        for ci, c in enumerate(candidates):
            index.append(n + ci)
            value.append(float(c.cost))
        starts.append(len(index))
        rhs.append(float(budget))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n + m, len(rhs)
    lp.col_cost_ = np.array([float(p.priority) for p in projects] + [0.0] * m, dtype=float)
    lp.col_lower_, lp.col_upper_ = np.array(lower, dtype=float), np.array(upper, dtype=float)
    lp.row_lower_ = np.full(len(rhs), -highspy.kHighsInf)
    lp.row_upper_ = np.array(rhs, dtype=float)
    lp.sense_ = highspy.ObjSense.kMaximize
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.start_ = np.array(starts, dtype=np.int32)
    lp.a_matrix_.index_ = np.array(index, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(value, dtype=float)
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n + m, len(rhs)
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger] * (n + m)
    with quiet():  # HiGHS prints its banner when the first instance is made, whatever the options
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        if threads:  # only in the planner's worker processes (see _solver)
            h.setOptionValue("threads", threads)
        h.passModel(lp)
    return h


def _lp_highs(projects, rows, candidates, budget, chosen_fixed):
    """LP relaxation: bound (None if it failed), duals per row name (per tonne), y and z values."""
    import highspy
    h = _highs(projects, rows, candidates, budget, chosen_fixed, integer=False)
    with quiet():
        h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return None, {}, {}, {}
    sol = h.getSolution()
    col, dual = list(sol.col_value), list(sol.row_dual)
    n = len(projects)
    duals = {f"r{i}": abs(float(dual[i])) * 1e6 * SCALE for i in range(len(rows))}
    return (float(h.getInfo().objective_function_value), duals, {i: col[i] for i in range(n)},
            {ci: col[n + ci] for ci in range(len(candidates))})


def _mip_highs(projects, rows, candidates, budget, *, time_limit, gap, start, threads):
    """The MILP in highspy, warm-started: (optimal?, funded, chosen, claimed objective -- None without
    a solution, "infeasible" when there is none --, MIP bound)."""
    import highspy
    h = _highs(projects, rows, candidates, budget, None, integer=True, threads=threads)
    h.setOptionValue("time_limit", max(0.05, float(time_limit)))
    h.setOptionValue("mip_rel_gap", float(gap))
    # light presolve: HiGHS 1.16's full presolve can loop forever (HPresolve::strengthenInequalities,
    # after a restart, ignoring the time limit) on a warm-started model of the "few-large" shape
    h.setOptionValue("presolve_mode", 2)
    n = len(projects)
    if start is not None:
        sol = highspy.HighsSolution()
        sol.col_value = [1.0 if i in start else 0.0 for i in range(n)] + [0.0] * len(candidates)
        h.setSolution(sol)
    with quiet():
        h.run()
    info = h.getInfo()
    col = list(h.getSolution().col_value) if info.primal_solution_status else []
    funded = {i for i in range(n) if col and col[i] > 0.5}
    chosen = {ci for ci in range(len(candidates)) if col and col[n + ci] > 0.5}
    bound = info.mip_dual_bound
    bound = None if bound != bound or abs(bound) == float("inf") else float(bound)
    claimed = float(info.objective_function_value) if col else None
    status = h.getModelStatus()
    if status == highspy.HighsModelStatus.kInfeasible:
        claimed = "infeasible"
    return status == highspy.HighsModelStatus.kOptimal, funded, chosen, claimed, bound


def _within_budget(cands, chosen, budget) -> bool:
    return budget is None or sum(cands[i].cost for i in chosen) <= budget


def _subproblem(projects, rows, candidates, part, chosen_fixed):
    """The part's projects, rows and candidates, renumbered from 0. Candidates already chosen
    (mode "cheapest") become plain supply."""
    loc = {pi: li for li, pi in enumerate(part.projects)}
    cloc = {ci: li for li, ci in enumerate(part.cands)}
    srows = []
    for r_i in part.rows:
        r = rows[r_i]
        supply = r.supply_g + (sum(g for ci, g in r.cand_terms if ci in chosen_fixed) if chosen_fixed else 0)
        srows.append(Row(r.group, r.threshold, supply, [(loc[pi], g) for pi, g in r.terms],
                         [(cloc[ci], g) for ci, g in r.cand_terms if ci in cloc]))
    return [projects[i] for i in part.projects], srows, [candidates[i] for i in part.cands]


def _step(projects) -> Fraction:
    """The objective moves in steps of the priorities' greatest common divisor (1 for whole numbers)."""
    from math import gcd
    fr = [Fraction(p.priority) for p in projects if p.priority]
    if not fr:
        return Fraction(1)
    den = 1
    for f in fr:
        den = den * f.denominator // gcd(den, f.denominator)
    num = 0
    for f in fr:
        num = gcd(num, int(f * den))
    return Fraction(num, den)


def _proven(projects, value: float, bound: float) -> bool:
    """True when no selection can beat `value`: the bound, rounded down to the objective's step, is reached."""
    step = float(_step(projects))
    return value >= step * math.floor(bound / step + 1e-7) - 1e-9 * max(1.0, abs(bound))


def _fallback(projects, rows, start, lp_bound, lp_y=None) -> dict:
    """A part whose worker failed or overran: its LP-guided start (as the worker sent it, or made
    here), else the greedy plan; with the LP bound."""
    must = {i for i, p in enumerate(projects) if p.must_fund}
    if feasible(rows, must, set()):
        return {"status": "infeasible", "funded": [], "chosen": [], "bound": 0.0, "how": "fallback"}
    if start is None and lp_y is not None:
        start = lp_rounding(projects, rows, must, set(), lp_y)
    # an LP-guided start is already filled (lp_rounding); otherwise fill greedily
    funded = set(start) if start is not None else greedy(projects, rows, must, set())
    return {"status": "feasible", "funded": sorted(funded), "chosen": [], "bound": max(lp_bound, _value(projects, funded)),
            "how": "fallback"}


def solve_part(projects, rows, candidates, lp_y, lp_bound, gap, budget, solver, start=None, *,
               time_limit: float, threads: int | None = None, on_start=None) -> dict:
    """One independent part (local indices): the LP-guided start, proven optimal when it reaches the
    LP bound's step, else the warm-started MILP, then repair and fill in integer grams."""
    t0 = time.perf_counter()
    must = {i for i, p in enumerate(projects) if p.must_fund}
    if start is not None:
        start = set(start)
    elif not candidates:
        start = lp_rounding(projects, rows, must, set(), lp_y)
    if start is not None and _proven(projects, _value(projects, start), lp_bound):
        return {"status": "optimal", "funded": sorted(start), "chosen": [], "bound": _value(projects, start),
                "how": "start reaches bound"}
    if start is not None and time_limit <= 0:  # no time for the solver: the start (already filled)
        return {"status": "feasible", "funded": sorted(start), "chosen": [], "bound": max(lp_bound, _value(projects, start)),
                "how": "start"}
    if start is not None and on_start is not None:
        on_start(sorted(start))
    left = lambda: time_limit - (time.perf_counter() - t0)  # noqa: E731
    if _use_highs(solver):
        optimal, funded, chosen, claimed, mip_bound = _mip_highs(projects, rows, candidates, budget, time_limit=left(),
                                                                 gap=gap, start=start, threads=threads)
        if start is not None and isinstance(claimed, float) and \
                abs(claimed - _value(projects, funded)) > 1e-6 * max(1.0, claimed):
            # HiGHS 1.16, warm-started, can report an objective (and bound) that the solution it returns
            # does not have, and call it optimal: solve once more without the start, and trust that one
            optimal, funded, chosen, claimed, mip_bound = _mip_highs(projects, rows, candidates, budget,
                                                                     time_limit=left(), gap=gap, start=None,
                                                                     threads=threads)
        bound = lp_bound if mip_bound is None else min(lp_bound, mip_bound)
        infeasible = claimed == "infeasible"
    else:
        import pulp
        prob, y, z = _model(projects, rows, candidates, budget, None)
        engine = _solver(solver, max(0.05, left()), gap, start, y, threads)
        with quiet():
            status = prob.solve(engine)
        funded = {i for i, v in y.items() if (v.varValue or 0) > 0.5}
        chosen = {i for i, v in z.items() if (v.varValue or 0) > 0.5}
        # CBC's "Optimal" (sol_status) is a proof that no selection beats its incumbent by more than `gap`: its own
        # bound; stopped at the time limit with a solution, PuLP says Optimal with an integer-feasible sol_status
        optimal = status == pulp.LpStatusOptimal and prob.sol_status == pulp.LpSolutionOptimal
        bound = min(lp_bound, _value(projects, funded) / (1 - gap)) if optimal and gap < 1 else lp_bound
        infeasible = status == pulp.LpStatusInfeasible
    if not optimal and not funded and start is None:
        if infeasible:
            return {"status": "infeasible", "funded": [], "chosen": [], "bound": 0.0, "how": "MIP"}
        funded = set(must)
    funded = _repair(projects, rows, funded, chosen, must)
    if start is not None and _value(projects, start) > _value(projects, funded):
        funded = start
    # fill what still fits (in LP order on a big part: the density order costs seconds there)
    funded = _lp_fill(projects, rows, funded, chosen, lp_y) if len(projects) > BIG else \
        greedy(projects, rows, funded, chosen)
    objective = _value(projects, funded)
    exact = (optimal and relative_gap(objective, bound) <= max(gap, 1e-6) + 1e-9) or _proven(projects, objective, bound)
    return {"status": "optimal" if exact else "feasible", "funded": sorted(funded), "chosen": sorted(chosen),
            "bound": max(bound, objective), "how": "MIP"}


def _value(projects, funded) -> float:
    return float(objective_exact(projects, funded))


def relative_gap(objective: float, bound: float) -> float:
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
        expr = pulp.LpAffineExpression([(y[pi], g * SCALE) for pi, g in row.terms] +
                                       [(z[ci], -g * SCALE) for ci, g in row.cand_terms])
        prob += pulp.LpConstraint(expr, pulp.LpConstraintLE, f"r{r_i}", row.supply_g * SCALE)
    if budget is not None and candidates:
        prob += pulp.LpConstraint(pulp.LpAffineExpression([(z[i], float(c.cost)) for i, c in enumerate(candidates)]),
                                  pulp.LpConstraintLE, "budget", float(budget))
    return prob, y, z


def _solver(name: str, time_limit: float, gap: float, start: set[int] | None, y: dict, threads: int | None = None):
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
    # HiGHS keeps one global scheduler and refuses a different thread count later, so a count is
    # only set in the planner's worker processes (quota.decompose), which set the same one each time
    # light presolve: HiGHS 1.16's full presolve can loop forever (HPresolve::strengthenInequalities,
    # after a restart, ignoring the time limit) on a warm-started model of the "few-large" shape
    return _warm_highs_class()(start, y, msg=False, timeLimit=time_limit, gapRel=gap, presolve_mode=2,
                      **({"threads": threads} if threads else {}))


@functools.cache
def _warm_highs_class():
    """PuLP's HiGHS subclass, built on first use: importing the planner must not load pulp or highspy."""
    import pulp

    class WarmHiGHS(pulp.HiGHS):
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
            self.claimed = -float(getattr(info, "objective_function_value", float("nan")))  # PuLP minimises -obj

    return WarmHiGHS


def _mip_bound(engine, lp_bound: float) -> float:
    """The best proven bound: HiGHS's MIP dual bound when it has one, else the LP bound.

    PuLP hands HiGHS a maximisation as the minimisation of -objective, hence the sign.
    """
    raw = getattr(engine, "mip_bound", None)
    if raw is None or raw != raw or abs(raw) == float("inf"):
        return lp_bound
    return min(lp_bound, -raw) if lp_bound else -raw


def _lp_relaxation(prob, y, z, solver: str) -> tuple[float | None, dict[str, float]]:
    """Bound and duals (per row name) of the LP relaxation (bound None if it failed); the y values stay on `y`."""
    import pulp
    relaxed = prob  # mip=False relaxes integrality without touching the (shared) variables
    highs = solver in ("auto", "highs") and "HiGHS" in pulp.listSolvers(onlyAvailable=True)
    engine = pulp.HiGHS(msg=False, mip=False) if highs else pulp.PULP_CBC_CMD(msg=False, mip=False)
    with quiet():
        status = relaxed.solve(engine)
    if status != pulp.LpStatusOptimal:
        return None, {}
    # HiGHS reports duals of the negated (minimisation) problem; a <= row of a maximisation is worth >= 0
    duals = {name: abs(float(c.pi or 0.0)) * 1e6 * SCALE for name, c in relaxed.constraints.items()}  # per tonne
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
            prob += pulp.LpConstraint(pulp.LpAffineExpression([(z[ci], g * SCALE) for ci, g in row.cand_terms]),
                                      pulp.LpConstraintGE, f"c{r_i}", (need - row.supply_g) * SCALE)
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
