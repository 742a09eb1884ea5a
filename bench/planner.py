"""Planner benchmark: our planner beside plain HiGHS, per-component HiGHS, plain CBC and a greedy
pass, per instance shape (bench.generate.SHAPES), at the same time limit, in one run.

    .venv/bin/python -m bench.planner [--shapes many-small,few-large] [--projects 2000] [--time-limit 10]
    .venv/bin/python -m bench.planner --large 50000 --time-limit 30 --shapes many-small,few-large

Each result is shown as a share of the LP-relaxation bound and of the best proven bound (the
smallest MIP bound any method proved). --large runs only our planner and reports wall time
(model build included) and peak memory of the parent and of the largest worker process.
"""
from __future__ import annotations

import argparse
import time

import pulp

from bench.generate import SHAPES, describe, shape
from quota.planning import problem
from quota.planning import decompose
from quota.planning import milp
from quota.planning.decompose import cores
from quota.planning.problem import lot_expiry
from quota.planning.solvers import quiet


def naive_model(projects, lots):
    """The textbook model of DESIGN 7: y_j binary, x_jqk >= 0 per eligible lot."""
    prob = pulp.LpProblem("naive", pulp.LpMaximize)
    y = {j: pulp.LpVariable(f"y{j}", cat="Binary") for j in range(len(projects))}
    for j, p in enumerate(projects):
        if p.must_fund:
            y[j].lowBound = 1
    by_group = {}
    for k, lot in enumerate(lots):
        by_group.setdefault((lot.pollutant, lot.key), []).append(k)
    use = {k: [] for k in range(len(lots))}
    for j, p in enumerate(projects):
        for n in p.needs:
            terms = []
            for k in by_group.get((n.pollutant, n.key), []):
                if lot_expiry(lots[k]) > p.on:
                    x = pulp.LpVariable(f"x{j}_{n.pollutant}_{k}", lowBound=0)
                    terms.append((x, 1.0))
                    use[k].append(x)
            prob += pulp.LpConstraint(pulp.LpAffineExpression(terms + [(y[j], -n.required_g * 1e-6)]),
                                      pulp.LpConstraintGE, f"cover{j}_{n.pollutant}", 0)
    for k, xs in use.items():
        if xs:
            prob += pulp.LpConstraint(pulp.LpAffineExpression([(x, 1.0) for x in xs]), pulp.LpConstraintLE,
                                      f"cap{k}", lots[k].available_g * 1e-6)
    prob += pulp.LpAffineExpression([(y[j], float(p.priority)) for j, p in enumerate(projects)])
    return prob, y


def plain(projects, lots, solver, time_limit):
    """One plain solver call on the x_jqk model: (seconds, objective, valid, proven bound or None)."""
    t0 = time.perf_counter()
    prob, y = naive_model(projects, lots)
    with quiet():
        prob.solve(solver(msg=False, timeLimit=time_limit))
    funded = {j for j, v in y.items() if (v.varValue or 0) > 0.5}
    rows = problem.build_rows(projects, lots, [])
    must = {j for j, p in enumerate(projects) if p.must_fund}
    ok = not problem.feasible(rows, funded, set()) and must <= funded  # else: no valid plan in time
    bound = None
    model = getattr(prob, "solverModel", None)
    if model is not None:  # HiGHS: PuLP minimises -objective
        raw = model.getInfo().mip_dual_bound
        bound = -raw if raw == raw and abs(raw) != float("inf") else None
    return time.perf_counter() - t0, sum(projects[j].priority for j in funded) if ok else 0, ok, bound


def per_component(projects, lots, time_limit):
    """Plain HiGHS on each connected component of the project-pool graph, one after another,
    each with an equal share of the time limit: (seconds, objective, valid, proven bound, components)."""
    t0 = time.perf_counter()
    rows = problem.build_rows(projects, lots, [])
    parts = decompose.split(len(projects), rows, 0, couple_candidates=False, budget=False)
    value, bound, ok = 0, 0.0, True
    for part in parts:
        groups = {rows[r].group for r in part.rows}
        sub = [projects[i] for i in part.projects]
        sub_lots = [lot for lot in lots if (lot.pollutant, lot.key) in groups]
        _, v, valid, b = plain(sub, sub_lots, pulp.HiGHS, time_limit / len(parts))
        value, ok = value + v, ok and valid
        bound += b if b is not None else sum(p.priority for p in sub)
    return time.perf_counter() - t0, value, ok, bound, len(parts)


def fund_in_order(projects, lots, order) -> int:
    """Fund projects in the given order whenever they still fit; returns the priority funded."""
    rows = problem.build_rows(projects, lots, [])
    cap = [r.supply_g for r in rows]
    use = [0] * len(rows)
    rows_of = {}
    for r_i, r in enumerate(rows):
        for pi, g in r.terms:
            rows_of.setdefault(pi, []).append((r_i, g))
    value = 0
    for j in order:
        if all(use[r] + g <= cap[r] for r, g in rows_of.get(j, [])):
            for r, g in rows_of.get(j, []):
                use[r] += g
            value += projects[j].priority
    return value


def fcfs(projects, lots) -> int:
    """The spreadsheet way: must-fund first, then projects in order of arrival (id), if they still fit."""
    must = [j for j, p in enumerate(projects) if p.must_fund]
    return fund_in_order(projects, lots, must + [j for j in range(len(projects)) if j not in set(must)])


def priority_greedy(projects, lots) -> int:
    """A greedy pass by priority (highest first), funded if they still fit."""
    return fund_in_order(projects, lots, sorted(range(len(projects)),
                                                key=lambda j: (not projects[j].must_fund, -projects[j].priority, j)))


def shape_table(names, n, time_limit, seed, skip_plain=False) -> None:
    print(f"{'shape':<17}{'method':<22}{'wall s':>8}{'objective':>12}{'/ LP':>9}{'/ proven':>10}")
    for name in names:
        projects, lots = shape(name, n, seed)
        print(f"{name:<17}{describe(projects, lots)}")
        t0 = time.perf_counter()
        sol, rows = milp.solve(projects, lots, time_limit=time_limit, gap=0.0)
        results = [("ours", time.perf_counter() - t0, sol.objective, True, sol.bound)]
        if not skip_plain:
            secs, value, ok, bound = plain(projects, lots, pulp.HiGHS, time_limit)
            results.append(("plain HiGHS", secs, value, ok, bound))
            secs, value, ok, bound, k = per_component(projects, lots, time_limit)
            results.append((f"per-component HiGHS ({k})", secs, value, ok, bound))
            secs, value, ok, _ = plain(projects, lots, pulp.PULP_CBC_CMD, time_limit)
            results.append(("plain CBC", secs, value, ok, None))
        t0 = time.perf_counter()
        results.append(("greedy by priority", time.perf_counter() - t0 + 0, priority_greedy(projects, lots), True, None))
        best = min(b for *_, b in results if b is not None)
        for method, secs, value, ok, _ in results:
            print(f"{'':<17}{method:<22}{secs:>8.2f}{value:>12.0f}{100 * value / sol.lp_bound:>8.2f}%"
                  f"{100 * value / best:>9.2f}%" + ("" if ok else "  (no valid plan)"))
        print(f"{'':<17}LP bound {sol.lp_bound:.1f}, best proven bound {best:.1f}; ours: {sol.status}, "
              f"{len(sol.parts)} parts, {sum(p['how'] in ('MIP', 'fallback') for p in sol.parts)} needed the MILP")


def large(names, n, time_limit, seed) -> None:
    """One solve per shape at n projects, in this process: wall time including the model build, memory."""
    import resource
    print(f"{'shape':<17}{'projects':>9}{'wall s':>8}{'/ LP':>9}{'/ proven':>10}  status    parent MB  worker MB")
    for name in names:
        projects, lots = shape(name, n, seed)
        t0 = time.perf_counter()
        sol, _ = milp.solve(projects, lots, time_limit=time_limit, gap=0.0)
        secs = time.perf_counter() - t0
        feasible = not problem.feasible(problem.build_rows(projects, lots, []), set(sol.funded), set())
        for w in decompose.POOL.workers:  # reap the workers so their peak memory is counted
            w.kill()
        decompose.POOL.workers = []
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{name:<17}{n:>9}{secs:>8.2f}{100 * sol.objective / sol.lp_bound:>8.2f}%"
              f"{100 * sol.objective / sol.bound:>9.2f}%  {sol.status if feasible else 'INVALID':<9}"
              f"{parent:>10.0f}{child:>11.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help="comma-separated names from bench.generate.SHAPES")
    ap.add_argument("--projects", type=int, default=2000)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-plain", action="store_true", help="skip the plain CBC/HiGHS runs")
    ap.add_argument("--large", type=int, default=0, help="instead: one solve per shape at this many projects")
    args = ap.parse_args()
    names = args.shapes.split(",")
    print(f"{cores()} cores; time limit {args.time_limit:g} s; seed {args.seed}")
    if args.large:
        large(names, args.large, args.time_limit, args.seed)
    else:
        shape_table(names, args.projects, args.time_limit, args.seed, args.skip_plain)


if __name__ == "__main__":
    main()
