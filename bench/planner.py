"""Planner benchmark: our planner beside plain PuLP+CBC / PuLP+HiGHS calls at the same time limit.

    .venv/bin/python -m bench.planner [--projects 2000] [--time-limit 10] [--seed 1] [--scaling]

Prints wall time, objective and objective / LP-relaxation bound for each method, and how the
model build and solve times grow from 200 to 2,000 to 10,000 projects with --scaling.
"""
from __future__ import annotations

import argparse
import time

import pulp

from bench.generate import describe, instance
from quota import planner
from quota.planner import _exp, quiet


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
                if _exp(lots[k]) > p.on:
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
    t0 = time.perf_counter()
    prob, y = naive_model(projects, lots)
    with quiet():
        prob.solve(solver(msg=False, timeLimit=time_limit))
    funded = {j for j, v in y.items() if (v.varValue or 0) > 0.5}
    rows = planner.build_rows(projects, lots, [])
    ok = not planner.feasible(rows, funded, set())
    return time.perf_counter() - t0, sum(projects[j].priority for j in funded), ok


def fund_in_order(projects, lots, order) -> int:
    """Fund projects in the given order whenever they still fit; returns the priority funded."""
    rows = planner.build_rows(projects, lots, [])
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projects", type=int, default=2000)
    ap.add_argument("--lots", type=int, default=720)
    ap.add_argument("--zones", type=int, default=40)
    ap.add_argument("--tightness", type=float, default=0.6)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--scaling", action="store_true", help="also time 200 / 2,000 / 10,000 projects")
    ap.add_argument("--skip-plain", action="store_true", help="skip the plain CBC/HiGHS runs")
    args = ap.parse_args()
    projects, lots = instance(args.projects, args.zones, args.lots, args.tightness, args.seed)
    print(f"instance (seed {args.seed}): {describe(projects, lots)}; time limit {args.time_limit:g} s")
    t0 = time.perf_counter()
    sol, rows = planner.solve(projects, lots, time_limit=args.time_limit, gap=0.0)
    ours = time.perf_counter() - t0
    lp = sol.lp_bound
    print(f"LP-relaxation bound: {lp:.2f}   best proven bound: {sol.bound:.2f}")
    print(f"{'method':<34}{'wall s':>8}{'objective':>11}{'/ LP bound':>12}")
    print(f"{'quota planner (' + sol.solver + ', compact MILP)':<34}{ours:>8.2f}{sol.objective:>11.0f}"
          f"{100 * sol.objective / lp:>11.2f}%")
    if not args.skip_plain:
        for name, solver in (("plain PuLP+CBC (x_jqk model)", pulp.PULP_CBC_CMD), ("plain PuLP+HiGHS (x_jqk model)", pulp.HiGHS)):
            secs, value, ok = plain(projects, lots, solver, args.time_limit)
            print(f"{name:<34}{secs:>8.2f}{value:>11.0f}{100 * value / lp:>11.2f}%" + ("" if ok else "  (INVALID)"))
    g = priority_greedy(projects, lots)
    print(f"{'greedy by priority':<34}{'':>8}{g:>11.0f}{100 * g / lp:>11.2f}%")
    f = fcfs(projects, lots)
    print(f"{'first come, first served':<34}{'':>8}{f:>11.0f}{100 * f / lp:>11.2f}%")
    if args.scaling:
        print("\nscaling (same generator, lots and zones scaled with projects):")
        print(f"{'projects':>9}{'rows':>8}{'lots':>7}{'build s':>9}{'solve s':>9}{'/ LP bound':>12}"
              f"{'/ proven bound':>16}  status")
        for n in (200, 2000, 10000):
            ps, ls = instance(n, max(8, args.zones * n // 2000), max(60, args.lots * n // 2000), args.tightness,
                              args.seed)
            t0 = time.perf_counter()
            rows = planner.build_rows(ps, ls, [])
            planner._model(ps, rows, [], None, None)
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            s, _ = planner.solve(ps, ls, time_limit=args.time_limit, gap=0.0)
            total = time.perf_counter() - t0
            print(f"{n:>9}{sum(len(p.needs) for p in ps):>8}{len(ls):>7}{build:>9.2f}{total:>9.2f}"
                  f"{100 * s.objective / s.lp_bound:>11.2f}%{100 * s.objective / s.bound:>15.2f}%  {s.status}")


if __name__ == "__main__":
    main()
