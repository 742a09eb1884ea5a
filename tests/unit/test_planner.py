"""The planner alone: optimal against brute force with an independent max-flow, and the draw rules."""
import datetime as dt
import itertools
import random
from collections import defaultdict, deque

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from quota.planning import solvers
from quota.planning import problem
from quota.planning import milp
from quota.planning.problem import PLot, PNeed, PProject

DAY = dt.date(2026, 1, 1)


def max_flow_feasible(projects, lots, funded) -> bool:
    """Independent check (no Hall conditions): can the funded needs be served from eligible lots?
    Edmonds-Karp max-flow per (pollutant, key) group: source -> need -> eligible lot -> sink."""
    groups = defaultdict(lambda: ([], []))
    for pi in funded:
        for n in projects[pi].needs:
            groups[(n.pollutant, n.key)][0].append((projects[pi].on, n.required_g))
    for lot in lots:
        if (lot.pollutant, lot.key) in groups:
            groups[(lot.pollutant, lot.key)][1].append(lot)
    for needs, glots in groups.values():
        n, m = len(needs), len(glots)
        size = n + m + 2
        cap = [[0] * size for _ in range(size)]
        s, t = 0, size - 1
        for i, (on, g) in enumerate(needs):
            cap[s][1 + i] = g
            for k, lot in enumerate(glots):
                if (lot.expires or dt.date.max) > on:
                    cap[1 + i][1 + n + k] = g
        for k, lot in enumerate(glots):
            cap[1 + n + k][t] = lot.available_g
        flow = 0
        while True:
            parent = [-1] * size
            parent[s] = s
            q = deque([s])
            while q and parent[t] == -1:
                u = q.popleft()
                for v in range(size):
                    if parent[v] == -1 and cap[u][v] > 0:
                        parent[v] = u
                        q.append(v)
            if parent[t] == -1:
                break
            push, v = float("inf"), t
            while v != s:
                push, v = min(push, cap[parent[v]][v]), parent[v]
            v = t
            while v != s:
                cap[parent[v]][v] -= push
                cap[v][parent[v]] += push
                v = parent[v]
            flow += push
        if flow < sum(g for _, g in needs):
            return False
    return True


def random_instance(rng: random.Random, n_projects: int, n_lots: int):
    pols, keys = ["COD", "NOX"], ["A", "B"]
    lots = [PLot(f"L{k:02d}", rng.choice(pols), rng.choice(keys),
                 # expiries share dates with projects, so the "expires on the day it is needed" edge is common
                 None if rng.random() < 0.2 else DAY + dt.timedelta(days=rng.choice([50, 100, 300, 600, 900])),
                 rng.randint(1, 20) * 100_000) for k in range(n_lots)]
    projects = []
    for j in range(n_projects):
        # a project has one zone, so one matching key per pollutant
        chosen = [(p, rng.choice(keys)) for p in rng.sample(pols, rng.randint(1, 2))]
        projects.append(PProject(f"P{j:02d}", rng.randint(1, 6), False,
                                 DAY + dt.timedelta(days=rng.choice([0, 100, 300, 600])),
                                 tuple(PNeed(p, k, rng.randint(1, 15) * 100_000) for p, k in sorted(chosen))))
    return projects, lots


@pytest.mark.parametrize("seed", range(25))
def test_planner_matches_brute_force_optimum(seed):
    rng = random.Random(seed)
    projects, lots = random_instance(rng, rng.randint(4, 10), rng.randint(2, 8))
    best = 0
    for size in range(len(projects) + 1):
        for subset in itertools.combinations(range(len(projects)), size):
            value = sum(projects[i].priority for i in subset)
            if value > best and max_flow_feasible(projects, lots, subset):
                best = value
    sol, _ = milp.solve(projects, lots, time_limit=20, gap=0.0)
    assert sol.status == "optimal"
    assert sol.objective == best
    assert max_flow_feasible(projects, lots, sol.funded)


def check_draws(projects, lots, funded, drawn):
    by_serial = {l.serial: l for l in lots}
    used = defaultdict(int)
    for pi in funded:
        got = defaultdict(int)
        for lot, pol, g in drawn[pi]:
            assert g > 0 and isinstance(g, int)
            assert lot.pollutant == pol
            need = {n.pollutant: n for n in projects[pi].needs}[pol]
            assert lot.key == need.key, "drawn from a lot with another matching key"
            assert (lot.expires or dt.date.max) > projects[pi].on, "drawn from a lot that expires too early"
            got[pol] += g
            used[lot.serial] += g
        assert dict(got) == {n.pollutant: n.required_g for n in projects[pi].needs}, "not covered exactly"
    for serial, g in used.items():
        assert g <= by_serial[serial].available_g, f"lot {serial} overdrawn"


instances = st.builds(lambda seed, n, m: random_instance(random.Random(seed), n, m),
                      st.integers(0, 10**6), st.integers(0, 25), st.integers(0, 15))


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(instances)
def test_plans_never_overdraw_and_cover_every_funded_project_exactly(instance):
    projects, lots = instance
    sol, rows = milp.solve(projects, lots, time_limit=10, gap=0.0)
    assert not problem.feasible(rows, set(sol.funded), set())
    drawn = problem.draws(projects, lots, sol.funded)
    check_draws(projects, lots, sol.funded, drawn)
    again, _ = milp.solve(projects, lots, time_limit=10, gap=0.0)
    assert again.funded == sol.funded and problem.draws(projects, lots, again.funded) == drawn
    # grams are conserved: what each lot gives plus what it keeps is what it had
    short = problem.shortfalls(projects, lots, sol.funded, drawn)
    assert set(short) == set(range(len(projects))) - set(sol.funded)


def test_earliest_expiring_lots_are_drawn_first():
    lots = [PLot("late", "COD", "A", DAY + dt.timedelta(days=900), 5_000_000),
            PLot("early", "COD", "A", DAY + dt.timedelta(days=100), 5_000_000),
            PLot("never", "COD", "A", None, 5_000_000)]
    p = [PProject("P1", 1, False, DAY, (PNeed("COD", "A", 6_000_000),))]
    drawn = problem.draws(p, lots, [0])
    assert [(l.serial, g) for l, _, g in drawn[0]] == [("early", 5_000_000), ("late", 1_000_000)]


def test_restrictive_projects_are_served_first_so_nobody_is_stranded():
    lots = [PLot("short", "COD", "A", DAY + dt.timedelta(days=50), 1_000_000),
            PLot("long", "COD", "A", DAY + dt.timedelta(days=500), 1_000_000)]
    p = [PProject("EARLY", 1, False, DAY, (PNeed("COD", "A", 1_000_000),)),
         PProject("LATE", 1, False, DAY + dt.timedelta(days=200), (PNeed("COD", "A", 1_000_000),))]
    sol, _ = milp.solve(p, lots, time_limit=5)
    assert sol.funded == [0, 1]
    drawn = problem.draws(p, lots, sol.funded)
    assert drawn[1][0][0].serial == "long" and drawn[0][0][0].serial == "short"


def test_infeasible_must_fund_names_pollutant_key_and_amount():
    lots = [PLot("L1", "TP", "CDH", None, 50_000)]
    p = [PProject("M", 1, True, DAY, (PNeed("TP", "CDH", 120_000), PNeed("COD", "CDH", 1))),
         PProject("O", 5, False, DAY, (PNeed("TP", "CDH", 10_000),))]
    sol, rows = milp.solve(p, lots, time_limit=5)
    assert sol.status == "infeasible"
    assert problem.must_fund_shortfalls(p, rows, set()) == [
        {"pollutant": "COD", "key": "CDH", "short_g": 1}, {"pollutant": "TP", "key": "CDH", "short_g": 70_000}]


def test_cheapest_candidates_fund_the_must_fund_projects():
    from quota.planning.problem import PCandidate
    lots = [PLot("L1", "TP", "X", None, 50_000)]
    p = [PProject("M", 1, True, DAY, (PNeed("TP", "X", 120_000),))]
    cands = [PCandidate("big", 900, (PLot("c1", "TP", "X", None, 200_000, "big"),)),
             PCandidate("small", 300, (PLot("c2", "TP", "X", None, 80_000, "small"),)),
             PCandidate("tiny", 100, (PLot("c3", "TP", "X", None, 60_000, "tiny"),))]
    sol, _ = milp.solve(p, lots, cands, mode="cheapest", time_limit=5)
    assert sol.status == "optimal" and sol.chosen == [1] and sol.funded == [0]  # 300 < 100+? tiny alone is short
    sol, _ = milp.solve(p, lots, cands, mode="priority", budget=150, time_limit=5)
    assert sol.status == "infeasible" or sol.funded == []


def keyed_instance(rng: random.Random, n_projects: int, n_lots: int, keys=("A", "B", "C", "D")):
    """Like random_instance, with more matching keys, so that the model falls apart into several parts."""
    pols = ["COD", "NOX"]
    lots = [PLot(f"L{k:02d}", rng.choice(pols), rng.choice(keys),
                 None if rng.random() < 0.2 else DAY + dt.timedelta(days=rng.choice([50, 100, 300, 600])),
                 rng.randint(1, 20) * 100_000) for k in range(n_lots)]
    projects = []
    for j in range(n_projects):
        zone = rng.randrange(len(keys))  # a project's zone gives one key per pollutant
        chosen = [(p, keys[zone] if p == "COD" else keys[zone // 2]) for p in rng.sample(pols, rng.randint(1, 2))]
        projects.append(PProject(f"P{j:02d}", rng.randint(1, 9), False,
                                 DAY + dt.timedelta(days=rng.choice([0, 100, 300])),
                                 tuple(PNeed(p, k, rng.randint(1, 15) * 100_000) for p, k in sorted(chosen))))
    return projects, lots


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.builds(lambda seed, n, m: keyed_instance(random.Random(seed), n, m),
                 st.integers(0, 10**6), st.integers(1, 24), st.integers(1, 16)))
def test_decomposed_solve_equals_the_monolithic_optimum(instance):
    projects, lots = instance
    whole, rows = milp.solve(projects, lots, time_limit=20, gap=0.0, split=False, workers=0)
    parts, _ = milp.solve(projects, lots, time_limit=20, gap=0.0)
    assert whole.status == parts.status == "optimal"
    assert parts.objective == whole.objective
    assert abs(parts.lp_bound - whole.lp_bound) <= 1e-6 * max(1.0, whole.lp_bound)
    assert not problem.feasible(rows, set(parts.funded), set())
    assert max_flow_feasible(projects, lots, parts.funded)


def two_markets():
    """Two keys that share nothing, each a knapsack whose LP optimum is fractional."""
    lots = [PLot("LA", "COD", "A", None, 1_000_000), PLot("LB", "COD", "B", None, 1_000_000)]
    projects = [PProject("A1", 5, False, DAY, (PNeed("COD", "A", 600_000),)),
                PProject("A2", 4, False, DAY, (PNeed("COD", "A", 500_000),)),
                PProject("A3", 4, False, DAY, (PNeed("COD", "A", 500_000),)),
                PProject("B1", 7, False, DAY, (PNeed("COD", "B", 700_000),)),
                PProject("B2", 6, False, DAY, (PNeed("COD", "B", 400_000),)),
                PProject("B3", 2, False, DAY, (PNeed("COD", "B", 450_000),)),
                PProject("B4", 2, False, DAY, (PNeed("COD", "B", 300_000),))]
    return projects, lots


def test_independent_parts_are_solved_separately(monkeypatch):
    projects, lots = two_markets()
    built = []
    real = solvers.highs_model

    def spy(ps, rows, *args, **kw):
        built.append(sorted(p.project_id for p in ps))
        return real(ps, rows, *args, **kw)

    monkeypatch.setattr(solvers, "highs_model", spy)
    sol, _ = milp.solve(projects, lots, time_limit=10, workers=0)
    # one model of everything for the LP bound and the shadow prices, then one MILP per part
    assert built[0] == sorted(p.project_id for p in projects)
    assert sorted(built[1:]) == [["A1", "A2", "A3"], ["B1", "B2", "B3", "B4"]]
    assert [p["projects"] for p in sol.parts] == [3, 4]
    assert sol.status == "optimal" and sol.objective == 8 + 9  # A2+A3 (A1 fits with neither), B1+B4 (B2+B3 or B2+B4 give 8)
    assert [projects[i].project_id for i in sol.funded] == ["A2", "A3", "B1", "B4"]


def test_parts_that_fit_are_settled_without_a_solver(monkeypatch):
    projects, lots = two_markets()
    lots.append(PLot("LB2", "COD", "B", None, 1_000_000))  # now everything in B fits
    built = []
    real = solvers.highs_model
    monkeypatch.setattr(solvers, "highs_model", lambda ps, *a, **kw: built.append(len(ps)) or real(ps, *a, **kw))
    sol, _ = milp.solve(projects, lots, time_limit=10, workers=0)
    assert built == [7, 3]  # the LP of everything, then the MILP of A alone
    assert [(p["projects"], p["how"]) for p in sol.parts] == [(3, "MIP"), (4, "all fit")]
    assert {projects[i].project_id for i in sol.funded} >= {"B1", "B2", "B3", "B4"}


def test_worker_processes_give_the_same_plan_as_solving_here():
    rng = random.Random(7)
    projects, lots = keyed_instance(rng, 40, 14)
    here, _ = milp.solve(projects, lots, time_limit=20, gap=0.0, workers=0)
    pooled, _ = milp.solve(projects, lots, time_limit=20, gap=0.0, workers=2)
    assert here.status == pooled.status == "optimal"
    assert pooled.funded == here.funded and pooled.objective == here.objective
    assert sum(p["how"] == "MIP" for p in pooled.parts) >= 2  # more than one part went to the workers


@pytest.mark.parametrize("seed", range(8))
def test_decimal_priorities_match_brute_force_exactly(seed):
    from decimal import Decimal
    rng = random.Random(100 + seed)
    projects, lots = random_instance(rng, rng.randint(4, 9), rng.randint(2, 6))
    # scores like 7.5 and economic values with 4 decimals, up to the 10^6 bound
    values = [Decimal("7.5"), Decimal("0.0001"), Decimal("1000000"), Decimal("123.4567"), Decimal("3.3333")]
    projects = [PProject(p.project_id, rng.choice(values), p.must_fund, p.on, p.needs) for p in projects]
    best = Decimal(0)
    for size in range(len(projects) + 1):
        for subset in itertools.combinations(range(len(projects)), size):
            value = sum((projects[i].priority for i in subset), Decimal(0))
            if value > best and max_flow_feasible(projects, lots, subset):
                best = value
    sol, _ = milp.solve(projects, lots, time_limit=20, gap=0.0)
    assert sol.status == "optimal"
    assert problem.objective_exact(projects, sol.funded) == best
    assert Decimal(repr(sol.objective)) == best  # the float carried to JSON reads back exactly


def test_priority_rule():
    assert problem.check_priority("7.5") is None and problem.check_priority(1_000_000) is None
    assert problem.check_priority("0.0001") is None and problem.check_priority("2.50000") is None
    assert "at most 1,000,000" in problem.check_priority("1000000.5")
    assert "greater than 0" in problem.check_priority("0")
    assert "4 decimal places" in problem.check_priority("1.23456")
    assert "a number" in problem.check_priority("high")


def test_the_watchdog_never_waits_past_the_runs_deadline():
    """A worker is presumed stuck GRACE after its own limit, but never later than END_GRACE past the deadline of
    the whole solve (the plan is due: its part keeps its start)."""
    from quota.planning import decompose
    job = decompose.Job(0, 1.0, ())
    # a part given 10 s from t=0, its solver started at t=1: stuck at 11 s, well before a deadline at 20 s
    assert decompose._kill_at((job, 0.0, 10.0), 1.0, 20.0) == 10.0 + decompose.GRACE
    # the same part when the run's deadline is 10.2 s: killed END_GRACE after it, not GRACE after its limit
    assert decompose._kill_at((job, 0.0, 10.0), 1.0, 10.2) == pytest.approx(10.2 + decompose.END_GRACE)


def test_a_part_sent_to_a_worker_carries_no_needs():
    """What a worker needs of a project is its id, priority and must-fund flag (its rows carry the rest); the
    slim form pickles small and fast, and a solve through the workers equals one in this process."""
    import pickle
    projects = [PProject(f"P{i}", 7.5 if i % 2 else 3, i == 0, DAY, tuple(PNeed("COD", "A", 1000 + j) for j in range(8)))
                for i in range(200)]
    slim = milp._slim(projects)
    assert [(s.project_id, s.priority, s.must_fund) for s in slim] == \
        [(p.project_id, p.priority, p.must_fund) for p in projects]
    assert len(pickle.dumps(slim)) < len(pickle.dumps(projects)) / 3


def test_a_worker_past_its_time_is_killed_and_its_part_keeps_its_start(monkeypatch):
    from quota.planning import decompose
    projects, lots = two_markets()
    # the watchdog's margin made hugely negative: every worker counts as stuck once its solver starts
    monkeypatch.setattr(decompose, "GRACE", -1000.0)
    decompose.POOL.ensure(1)
    before = decompose.POOL.workers[0].proc.pid  # workers=1 runs on the first worker
    sol, rows = milp.solve(projects, lots, time_limit=10, workers=1)
    assert [p["how"] for p in sol.parts] == ["fallback", "fallback"]
    # the LP-guided starts (A1; B2 and B3), not the solver's optimum of 17 (A2+A3, B1+B4)
    assert sol.status == "feasible" and sol.objective == 13 and sol.funded == [0, 4, 5]
    assert not problem.feasible(rows, set(sol.funded), set())
    assert decompose.POOL.workers[0].proc.pid != before and decompose.POOL.workers[0].alive()


def test_solves_in_several_threads_at_once_each_use_their_own_workers():
    """The web serves requests in threads: solves at once in one process shared the worker pool's pipes and
    read each other's results (an IndexError, or a view waiting without end)."""
    import threading
    from quota.planning import decompose
    projects, lots = two_markets()
    alone, _ = milp.solve(projects, lots, time_limit=10, workers=2)
    assert alone.status == "optimal" and len(alone.parts) == 2  # two parts, each sent to a worker
    got, errors = {}, []

    def one(i):
        try:
            for k in range(3):
                got[i, k] = milp.solve(projects, lots, time_limit=10, workers=2)[0]
        except Exception as exc:  # noqa: BLE001 -- reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)  # a guard against a hang, not a timing assert: each solve has 10 s
    assert not errors and not any(t.is_alive() for t in threads)
    assert [(s.status, s.funded, s.objective) for s in got.values()] == [(alone.status, alone.funded,
                                                                          alone.objective)] * 12
    assert len(decompose.POOL.workers) <= decompose.cores() and all(w.alive() for w in decompose.POOL.workers)
    first, second = decompose.POOL.take(2), decompose.POOL.take(2)  # two runs at once: never the same worker
    assert not {w.proc.pid for w in first} & {w.proc.pid for w in second}
    decompose.POOL.give(first)
    decompose.POOL.give(second)
    assert len(decompose.POOL.workers) == min(4, decompose.cores())  # the rest ended
    assert sum(w.alive() for w in first + second) == len(decompose.POOL.workers)


def test_quiet_in_overlapping_threads_gives_stdout_back():
    """The first solve in silences fd 1, the last out restores it, whatever the order they leave in."""
    import os
    import threading
    before = os.fstat(1)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a():
        with solvers.quiet():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with solvers.quiet():
            b_in.set()
            a_out.wait(10)  # A leaves first: it must not restore fd 1 while B still solves
            assert os.fstat(1).st_ino != before.st_ino
    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    after = os.fstat(1)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
