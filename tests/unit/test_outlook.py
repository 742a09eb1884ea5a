"""The five-year outlook from plain data: a hand-computed case and conservation properties."""
import datetime as dt
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.planning import problem
from quota.planning import outlook
from quota.planning import milp
from quota.planning.problem import PLot, PNeed, PProject

DAY = dt.date(2026, 3, 1)


def run(lots, later, projects, years=3):
    sol, _ = milp.solve(projects, lots, time_limit=10, workers=0)
    drawn = problem.draws(projects, lots, sol.funded)
    return outlook.compute(DAY, years, lots, later, projects, drawn, sol, set(), {"COD": "t/a"}), sol, drawn


def test_hand_computed_outlook():
    t = 1_000_000
    lots = [PLot("L1", "COD", "W1", dt.date(2027, 6, 30), 10 * t),  # expires in 2027
            PLot("L2", "COD", "W1", None, 5 * t)]
    later = [(dt.date(2028, 1, 1), PLot("L3", "COD", "W1", None, 4 * t))]  # effective in 2028
    projects = [PProject("A", 5, False, DAY, (PNeed("COD", "W1", 6 * t),)),                # needed 2026
                PProject("B", 4, False, dt.date(2027, 3, 1), (PNeed("COD", "W1", 3 * t),)),  # 2027
                PProject("C", 3, False, dt.date(2028, 5, 1), (PNeed("COD", "W1", 7 * t),)),  # 2028
                PProject("D", 1, False, dt.date(2031, 1, 1), (PNeed("COD", "W1", 1 * t),))]  # after 2028
    out, sol, drawn = run(lots, later, projects)
    # the plan funds A, B, D (6 + 3 from L1; D 1 from L2, since L1 expires first) but not C:
    # after 2027 only L2 (5 t) is usable, less D's 1 t, and the planner does not see L3 (effective later)
    assert [projects[i].project_id for i in sol.funded] == ["A", "B", "D"]
    [g] = out["groups"]
    assert (g["pollutant"], g["key"], g["first_short_year"], g["later_demand_g"]) == ("COD", "W1", 2028, 1 * t)
    assert out["years"] == [2026, 2027, 2028]
    expected = [  # opening, effective, demand, allocated, expiring, unmet, closing (tonnes)
        (2026, 15, 0, 6, 6, 0, 0, 9),
        (2027, 9, 0, 3, 3, 1, 0, 5),   # L1: 10 - 6 - 3 = 1 t left expires
        (2028, 5, 4, 7, 0, 0, 7, 9),   # C is unmet; L3 arrives; D's 1 t is beyond the horizon
    ]
    got = [(r["year"], r["opening_g"] // t, r["effective_g"] // t, r["demand_g"] // t, r["allocated_g"] // t,
            r["expiring_g"] // t, r["unmet_g"] // t, r["closing_g"] // t) for r in g["years"]]
    assert got == expected


def random_case(rng):
    keys = ["W1", "W2"]
    lots = [PLot(f"L{k}", "COD", rng.choice(keys),
                 None if rng.random() < 0.3 else DAY + dt.timedelta(days=rng.randint(1, 2500)),
                 rng.randint(1, 30) * 100_000) for k in range(rng.randint(0, 8))]
    later = []
    for k in range(rng.randint(0, 3)):
        eff = DAY + dt.timedelta(days=rng.randint(1, 2500))
        later.append((eff, PLot(f"F{k}", "COD", rng.choice(keys),
                                None if rng.random() < 0.5 else eff + dt.timedelta(days=rng.randint(1, 900)),
                                rng.randint(1, 30) * 100_000)))
    projects = [PProject(f"P{j}", rng.randint(1, 9), False, DAY + dt.timedelta(days=rng.choice([0, 200, 700, 1500, 2400])),
                         (PNeed("COD", rng.choice(keys), rng.randint(1, 20) * 100_000),)) for j in range(rng.randint(0, 10))]
    return lots, later, projects


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.integers(0, 10**6), st.integers(1, 6))
def test_supply_minus_demand_matches_the_lots_and_the_plan(seed, years):
    lots, later, projects = random_case(random.Random(seed))
    out, sol, drawn = run(lots, later, projects, years)
    last = DAY.year + years - 1
    inside = {pi for pi in sol.funded if projects[pi].on.year <= last}
    for g in out["groups"]:
        key = (g["pollutant"], g["key"])
        mine = [l for l in lots if (l.pollutant, l.key) == key]
        ys = g["years"]
        # opening is what the lots hold; each year's closing is the next year's opening
        assert ys[0]["opening_g"] == sum(l.available_g for l in mine)
        assert all(a["closing_g"] == b["opening_g"] for a, b in zip(ys, ys[1:]))
        # allocations are the plan's draws, demand the pipeline's requirements, nothing allocated twice
        plan_draws = sum(gr for pi in inside for lot, _, gr in drawn.get(pi, []) if (lot.pollutant, lot.key) == key)
        assert sum(r["allocated_g"] for r in ys) == plan_draws
        demand = sum(n.required_g for p in projects for n in p.needs if (n.pollutant, n.key) == key)
        assert sum(r["demand_g"] for r in ys) + g["later_demand_g"] == demand
        assert all(0 <= r["unmet_g"] <= r["demand_g"] for r in ys)
        # what is left at the end: lots that outlive the horizon, less what the plan draws from them
        lasting = [l for l in mine if l.expires is None or l.expires.year > last]
        lasting_later = [l for e, l in later if (l.pollutant, l.key) == key and e.year <= last and
                         (l.expires is None or l.expires.year > last)]
        drawn_lasting = sum(gr for pi in inside for lot, _, gr in drawn.get(pi, []) if lot in lasting)
        assert ys[-1]["closing_g"] == sum(l.available_g for l in lasting + lasting_later) - drawn_lasting
        first = next((r["year"] for r in ys if r["unmet_g"] > 0), None)
        assert g["first_short_year"] == first
    unfunded_inside = sum(n.required_g for pi, p in enumerate(projects) if pi not in set(sol.funded)
                          and p.on.year <= last for n in p.needs)
    assert sum(r["unmet_g"] for g in out["groups"] for r in g["years"]) == unfunded_inside
