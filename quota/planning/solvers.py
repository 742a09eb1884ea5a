"""The solvers behind the planner: the model loaded straight into highspy (LP relaxation and warm-started
MILP), and PuLP for CBC; HiGHS's own output silenced. Only quota.planning imports pulp or highspy, and only
when a plan is solved."""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading

from quota.planning.problem import SCALE


_QUIET = threading.Lock()
_quieted = {"depth": 0, "saved": None}  # solves inside quiet() now, and the real stdout kept while they run


@contextlib.contextmanager
def quiet():
    """Silence what the solver libraries print (HiGHS prints a banner even with output off),
    so stdout stays clean for --json and stderr for diagnostics. File descriptor 1 belongs to the whole
    process: with solves in several threads at once (the web workspace), the first in sends it to /dev/null
    and the last out restores it (each saving and restoring it alone left it on /dev/null for good)."""
    with _QUIET:
        if _quieted["depth"] == 0:
            try:
                sys.stdout.flush()
                saved = os.dup(1)
            except (OSError, ValueError):  # no real stdout (e.g. captured by a test runner)
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 1)
                os.close(devnull)
            _quieted["saved"] = saved
        _quieted["depth"] += 1
    try:
        yield
    finally:
        with _QUIET:
            _quieted["depth"] -= 1
            saved = _quieted["saved"]
            if _quieted["depth"] == 0 and saved is not None:
                try:
                    sys.stdout.flush()
                except (OSError, ValueError):
                    pass
                os.dup2(saved, 1)
                os.close(saved)
                _quieted["saved"] = None


def use_highs(solver: str) -> bool:
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


def highs_model(projects, rows, candidates, budget, chosen_fixed, *, integer: bool, threads: int | None = None):
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
        if threads:  # only in the planner's worker processes (see pulp_solver)
            h.setOptionValue("threads", threads)
        h.passModel(lp)
    return h


def lp_highs(projects, rows, candidates, budget, chosen_fixed):
    """LP relaxation: bound (None if it failed), duals per row name (per tonne), y and z values."""
    import highspy
    h = highs_model(projects, rows, candidates, budget, chosen_fixed, integer=False)
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


def mip_highs(projects, rows, candidates, budget, *, time_limit, gap, start, threads):
    """The MILP in highspy, warm-started: (optimal?, funded, chosen, claimed objective -- None without
    a solution, "infeasible" when there is none --, MIP bound)."""
    import highspy
    h = highs_model(projects, rows, candidates, budget, None, integer=True, threads=threads)
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


def pulp_model(projects, rows, candidates, budget, chosen_fixed):
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


def pulp_solver(name: str, time_limit: float, gap: float, start: set[int] | None, y: dict, threads: int | None = None):
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


def mip_bound(engine, lp_bound: float) -> float:
    """The best proven bound: HiGHS's MIP dual bound when it has one, else the LP bound.

    PuLP hands HiGHS a maximisation as the minimisation of -objective, hence the sign.
    """
    raw = getattr(engine, "mip_bound", None)
    if raw is None or raw != raw or abs(raw) == float("inf"):
        return lp_bound
    return min(lp_bound, -raw) if lp_bound else -raw


def lp_relaxation(prob, y, z, solver: str) -> tuple[float | None, dict[str, float]]:
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
