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

import math
import time
from decimal import Decimal
from fractions import Fraction
from typing import NamedTuple

from quota.planning.problem import (SCALE, PCandidate, PLot, PProject, Row, Solution, build_rows, feasible,
                                     objective_exact)
from quota.planning.solvers import (lp_highs, lp_relaxation, mip_highs, pulp_model,
                                     pulp_solver, quiet, use_highs)

BIG = 5000  # projects in a part above which the start skips the density greedy (see lp_rounding)
MIN_SOLVE = 0.1  # seconds: a part left less solver time than this keeps its start
HIGHS_OVERRUN = 0.05  # share of its time limit by which HiGHS may overrun it on a big part
TAIL_PER_TERM = 4e-6  # seconds per project and row term that the repair and fill after a solve take


class _Slim(NamedTuple):
    """What a part's solve reads of a project (its rows carry the rest): sent to a worker process,
    a named tuple pickles and unpickles many times faster than a PProject with its needs."""
    project_id: str
    priority: int | Decimal
    must_fund: bool


def _slim(projects: list[PProject]) -> list[_Slim]:
    return [_Slim(p.project_id, p.priority, p.must_fund) for p in projects]


def _fill(projects: list[PProject], rows: list[Row], start: set[int], chosen: set[int], order) -> set[int]:
    """Add projects to `start`, in the order given by the key function `order(pi, cap, rows_of)`, while
    every row still holds in integer grams (`cap` per row index; `rows_of[pi]` lists (row index, grams))."""
    cap = [r.supply_g + sum(g for ci, g in r.cand_terms if ci in chosen) for r in rows]
    use = [0] * len(rows)
    rows_of: list[list[tuple[int, int]]] = [[] for _ in projects]
    for k, r in enumerate(rows):
        for pi, g in r.terms:
            rows_of[pi].append((k, g))
    for pi in start:
        for k, g in rows_of[pi]:
            use[k] += g
    funded = set(start)
    for pi in sorted((i for i in range(len(projects)) if i not in funded), key=lambda i: order(i, cap, rows_of)):
        mine = rows_of[pi]
        if all(use[k] + g <= cap[k] for k, g in mine):
            for k, g in mine:
                use[k] += g
            funded.add(pi)
    return funded


def greedy(projects: list[PProject], rows: list[Row], start: set[int], chosen: set[int]) -> set[int]:
    """Add projects to `start` by priority per unit of scarce resource while every row still holds."""
    def density(i, cap, rows_of):
        load = sum(g / max(cap[k], 1) for k, g in rows_of[i])
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
    # the time limit covers the whole solve: the parts' results are merged (and a part whose worker
    # overran falls back to its start) in the time held back here
    deadline = t0 + max(0.3, time_limit - 0.2 - 1e-5 * len(projects))
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
    if use_highs(solver):
        lp_bound, duals, lp_y, lp_z = lp_highs(projects, rows, candidates, budget, chosen_fixed)
    else:
        relaxed, ry, rz = pulp_model(projects, rows, candidates, budget, chosen_fixed)
        lp_bound, duals = lp_relaxation(relaxed, ry, rz, solver)
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
        jobs.append(decompose.Job(k, frac + 0.01 * len(sp), (_slim(sp), srows, scands, y, part_lp, gap, budget, solver)))
    decompose.run(jobs, deadline, workers)
    results = {}
    for job in jobs:
        part, (sp, srows, scands), part_lp = subs[job.key]
        res = job.result if job.result and "error" not in job.result else \
            _fallback(sp, srows, job.start, part_lp, job.payload[3] if not scands else None)
        results[job.key] = (res, job.seconds, job.limit)
    # time left (parts that finished early): a second round for the parts not proven, from their plans
    again = [decompose.Job(k, res["bound"] - _value(subs[k][1][0], res["funded"]),
                           (_slim(subs[k][1][0]), *subs[k][1][1:],
                            {li: lp_y.get(pi, 0.0) for li, pi in enumerate(subs[k][0].projects)},
                            res["bound"], gap, budget, solver, res["funded"]))
             for k, (res, _, _) in sorted(results.items())
             if res["status"] == "feasible" and not res["chosen"] and not subs[k][1][2]
             # worth it only when the time left well exceeds the part's transfer, repair and fill
             and 3 * _tail(*subs[k][1][:2]) < deadline - time.perf_counter() - 1.0]
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
    name = "highs" if use_highs(solver) else "cbc"
    sol = Solution(status, sorted(funded), sorted(chosen), objective, max(bound, objective), lp_bound,
                   time.perf_counter() - t0, name, duals)
    sol.parts = [report[k] for k in sorted(report)]
    return sol, rows


def _within_budget(cands, chosen, budget) -> bool:
    return budget is None or sum(cands[i].cost for i in chosen) <= budget


def _subproblem(projects, rows, candidates, part, chosen_fixed):
    """The part's projects, rows and candidates, renumbered from 0. Candidates already chosen
    (mode "cheapest") become plain supply."""
    if not chosen_fixed and len(part.projects) == len(projects) and len(part.rows) == len(rows) \
            and len(part.cands) == len(candidates):  # one part: the whole model, already numbered so
        return projects, rows, candidates
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


def _tail(projects, rows) -> float:
    """Seconds the repair and fill of a part take (by its size), about what its transfer to a worker takes."""
    return TAIL_PER_TERM * (len(projects) + sum(len(r.terms) for r in rows))


def solve_part(projects, rows, candidates, lp_y, lp_bound, gap, budget, solver, start=None, *,
               time_limit: float, threads: int | None = None, on_start=None) -> dict:
    """One independent part (local indices): the LP-guided start, proven optimal when it reaches the
    LP bound's step, else the warm-started MILP, then repair and fill in integer grams."""
    t0 = time.perf_counter()
    must = {i for i, p in enumerate(projects) if p.must_fund}
    if start is not None:
        start = set(start)
        # what the repair and fill after the solver will take: the start's own cost, else by size
        tail = _tail(projects, rows)
    elif not candidates:
        start = lp_rounding(projects, rows, must, set(), lp_y)
        tail = 1.2 * (time.perf_counter() - t0)
    else:
        tail = _tail(projects, rows)
    fill_cost = tail
    if start is not None and _proven(projects, _value(projects, start), lp_bound):
        return {"status": "optimal", "funded": sorted(start), "chosen": [], "bound": _value(projects, start),
                "how": "start reaches bound"}
    if start is not None and time_limit - tail - (time.perf_counter() - t0) < MIN_SOLVE:
        # no time for the solver (or not enough to then repair and fill): the start, already filled
        return {"status": "feasible", "funded": sorted(start), "chosen": [], "bound": max(lp_bound, _value(projects, start)),
                "how": "start"}
    if start is not None and on_start is not None:
        on_start(sorted(start))
    # the solver stops early enough for the repair and fill to end within the part's time
    # HiGHS checks its clock between steps, which on a big part can overrun its limit by a second:
    # allow it HIGHS_OVERRUN of its time on top of the tail
    budget_left = time_limit - tail - (time.perf_counter() - t0)
    tail += HIGHS_OVERRUN * max(0.0, budget_left)
    left = lambda: time_limit - tail - (time.perf_counter() - t0)  # noqa: E731
    if use_highs(solver):
        optimal, funded, chosen, claimed, mip_bound = mip_highs(projects, rows, candidates, budget, time_limit=left(),
                                                                 gap=gap, start=start, threads=threads)
        if start is not None and isinstance(claimed, float) and \
                abs(claimed - _value(projects, funded)) > 1e-6 * max(1.0, claimed):
            # HiGHS 1.16, warm-started, can report an objective (and bound) that the solution it returns
            # does not have, and call it optimal: solve once more without the start, and trust that one
            optimal, funded, chosen, claimed, mip_bound = mip_highs(projects, rows, candidates, budget,
                                                                     time_limit=left(), gap=gap, start=None,
                                                                     threads=threads)
        bound = lp_bound if mip_bound is None else min(lp_bound, mip_bound)
        infeasible = claimed == "infeasible"
    else:
        import pulp
        prob, y, z = pulp_model(projects, rows, candidates, budget, None)
        engine = pulp_solver(solver, max(0.05, left()), gap, start, y, threads)
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
    # fill what still fits (in LP order on a big part: the density order costs seconds there), unless
    # the solver overran so far that the fill would end past the part's time: the plan is due
    if time_limit - (time.perf_counter() - t0) > 0.8 * fill_cost or len(projects) <= BIG:
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
    must_set = set(must)
    prob = pulp.LpProblem("cheapest_measures", pulp.LpMinimize)
    z = {i: pulp.LpVariable(f"z_{i}", cat="Binary") for i in range(len(candidates))}
    prob += pulp.LpAffineExpression([(z[i], float(c.cost)) for i, c in enumerate(candidates)])
    for r_i, row in enumerate(rows):
        need = sum(g for pi, g in row.terms if pi in must_set)
        if need > row.supply_g:
            prob += pulp.LpConstraint(pulp.LpAffineExpression([(z[ci], g * SCALE) for ci, g in row.cand_terms]),
                                      pulp.LpConstraintGE, f"c{r_i}", (need - row.supply_g) * SCALE)
    with quiet():
        status = prob.solve(pulp_solver(solver, time_limit, 0.0, None, {}))
    if status != pulp.LpStatusOptimal:
        return None
    chosen = {i for i, v in z.items() if (v.varValue or 0) > 0.5}
    if feasible(rows, set(must), chosen):  # re-check in integer grams
        return None
    return chosen
