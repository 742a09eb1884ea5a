"""Five-year outlook: year by year, per (pollutant, matching key), supply against the pipeline.

For each calendar year from the as-of year, and each (pollutant, matching key):
  opening_g    grams in lots usable at the start (the first year: active lots on the as-of date,
               as the ledger holds them, plus a scenario's extra lots and chosen candidates)
  effective_g  grams of lots that become effective during the year (not yet in the plan)
  demand_g     pipeline requirements needed during the year (no date, or a past one: the first year)
  allocated_g  what a fresh plan (not stored) draws for those projects
  unmet_g      demand_g - allocated_g: the demand that year the plan cannot fund
  expiring_g   grams left, after the plan's draws for projects within the horizon, in lots
               expiring during the year
  closing_g    opening_g + effective_g - allocated_g - expiring_g (the next year's opening)
`first_short_year` is the first year with unmet demand. Candidate measures the plan chooses carry
`tally_by`: the earliest date a project funded from them needs it.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict

from sqlalchemy import Engine, text

from quota.accounts import lot_balance_join
from quota import clock
from quota.store import db
from quota.planning import problem
from quota.planning import milp
from quota.planning import plans
from quota.errors import Refused


def outlook(engine: Engine, *, years: int = 5, as_of: dt.date | None = None, scenario_path: str | None = None,
            time_limit: float = 10.0, gap: float = 0.0) -> dict:
    if not 1 <= years <= 50:
        raise Refused("bad_option", option="years", value=str(years))
    plans.check_options(time_limit, gap, "auto")
    with db.reading(engine) as conn:
        _, book, scenario, day = plans.planning_inputs(conn, as_of, scenario_path)
        lots, pairs, candidates, _ = plans.gather(conn, book, day, scenario)
        later = []  # active lots with a balance that become effective after the as-of date
        for serial, pol, zone, expires, effective, amount, status in conn.execute(text(
                "SELECT l.serial, l.pollutant, l.zone, l.expires, l.effective_date, b.amount_g, s.status FROM lot l "
                "JOIN balance b ON " + lot_balance_join("b", "l.serial") + " "
                "LEFT JOIN lot_status s ON s.serial = l.serial WHERE b.amount_g > 0 ORDER BY l.serial")):
            effective, expires = clock.as_date(effective), clock.as_date(expires)
            if (status or "active") == "active" and effective > day and (expires is None or expires > effective):
                later.append((effective, problem.PLot(serial, pol, book.matching_key(pol, zone), expires, int(amount))))
    projects = [p for _, p in pairs]
    sol, _ = milp.solve(projects, lots, candidates, time_limit=time_limit, gap=gap,
                           mode=scenario.mode if scenario else "priority",
                           budget=scenario.budget if scenario else None)
    chosen = {candidates[i].candidate_id for i in sol.chosen}
    usable = [l for l in lots + [l for c in candidates for l in c.lots] if l.candidate is None or l.candidate in chosen]
    drawn = problem.draws(projects, usable, sol.funded) if sol.status != "infeasible" else {}
    return compute(day, years, usable, later, projects, drawn, sol,
                   {c.candidate_id for c in candidates}, {p: book.pollutants[p].unit for p in book.pollutants})


def settled(result: dict) -> bool:
    """True when an outlook does not depend on how fast it was solved: its plan was proved optimal (or
    infeasible); False when the time limit stopped the solve with the best found so far ("feasible"), which a
    solve on a less busy machine may better (a cache must not keep it)."""
    return result["plan"]["status"] != "feasible"


def compute(day: dt.date, years: int, lots, later, projects, drawn, sol, candidate_ids, unit) -> dict:
    """The outlook from plain data (see the module's docstring); `later` is [(effective date, PLot)]."""
    span = list(range(day.year, day.year + years))
    last = span[-1]
    zero = {k: 0 for k in ("effective_g", "demand_g", "allocated_g", "expiring_g")}
    table: dict[tuple, dict[int, dict]] = defaultdict(lambda: {y: dict(zero) for y in span})
    opening: dict[tuple, int] = defaultdict(int)
    beyond: dict[tuple, int] = defaultdict(int)
    used: dict[str, int] = defaultdict(int)  # drawn by projects needed within the horizon
    for pi, items in drawn.items():
        if projects[pi].on.year <= last:
            for lot, _, g in items:
                used[lot.serial] += g
    for lot in lots:
        g = (lot.pollutant, lot.key)
        opening[g] += lot.available_g
        if lot.expires is not None and lot.expires.year <= last:
            table[g][max(lot.expires.year, day.year)]["expiring_g"] += lot.available_g - used[lot.serial]
        table[g]  # every group with supply appears
    for effective, lot in later:
        g = (lot.pollutant, lot.key)
        if effective.year > last:
            continue
        table[g][effective.year]["effective_g"] += lot.available_g
        if lot.expires is not None and lot.expires.year <= last:
            table[g][lot.expires.year]["expiring_g"] += lot.available_g
    funded = set(sol.funded)
    tally_by: dict[str, dt.date] = {}
    for pi, p in enumerate(projects):
        for need in p.needs:
            g = (need.pollutant, need.key)
            if p.on.year > last:
                beyond[g] += need.required_g
                continue
            table[g][p.on.year]["demand_g"] += need.required_g
        if pi in funded and p.on.year <= last:
            for lot, pol, grams in drawn.get(pi, []):
                table[(pol, lot.key)][p.on.year]["allocated_g"] += grams
                if lot.candidate is not None:
                    tally_by[lot.candidate] = min(tally_by.get(lot.candidate, p.on), p.on)
    groups = []
    for g in sorted(table):
        rows, balance, first_short = [], opening[g], None
        for y in span:
            r = table[g][y]
            unmet = r["demand_g"] - r["allocated_g"]
            closing = balance + r["effective_g"] - r["allocated_g"] - r["expiring_g"]
            rows.append({"year": y, "opening_g": balance, **r, "unmet_g": unmet, "closing_g": closing})
            if unmet > 0 and first_short is None:
                first_short = y
            balance = closing
        groups.append({"pollutant": g[0], "key": g[1], "unit": unit.get(g[0], ""), "first_short_year": first_short,
                       "later_demand_g": beyond[g], "years": rows})
    groups.sort(key=lambda x: (x["first_short_year"] is None, x["first_short_year"] or 0, x["pollutant"], x["key"]))
    return {"as_of": day.isoformat(), "years": span,
            "plan": {"status": sol.status, "objective": sol.objective, "bound": sol.bound, "solver": sol.solver},
            "groups": groups,
            "candidates": [{"candidate_id": c, "chosen": c in {l.candidate for l in lots if l.candidate},
                            "tally_by": tally_by[c].isoformat() if c in tally_by else None}
                           for c in sorted(candidate_ids)]}
