"""Seeded instance generator for the planner benchmark (pure planner objects, no database).

Shape of DESIGN 9: N projects (about 2.5 pollutants each), Z zones grouped into watersheds and
airsheds, 8 pollutants, L lots, supply about `tightness` x demand per (pollutant, key).
`SHAPES` names the instance shapes the benchmark runs (DESIGN 9, issue 16): few large or many
small matching keys, tight or loose supply, must-fund sets, dated or undated lots and projects.
"""
from __future__ import annotations

import datetime as dt
import math
import random
from collections import defaultdict

from quota.planning.problem import PLot, PNeed, PProject

WATER = ["COD", "NH3-N", "TP", "TN"]
AIR = ["SO2", "NOX", "VOCS", "PM"]
AS_OF = dt.date(2026, 1, 1)


def instance(projects: int = 2000, zones: int = 40, lots: int = 720, tightness: float = 0.6, seed: int = 1,
             must_fund_share: float = 0.01, sigma: float = 1.2, watersheds: int = 20, airsheds: int = 10,
             priorities: tuple[int, int] = (1, 10), dated: bool = True) -> tuple[list[PProject], list[PLot]]:
    """A seeded instance. Zone z lies in watershed z mod `watersheds` and in airshed z mod `airsheds`. `dated=False`: no needed_by dates and lots that never expire."""
    rng = random.Random(seed)
    watershed = {z: f"W{z % watersheds}" for z in range(zones)}
    airshed = {z: f"A{z % airsheds}" for z in range(zones)}
    non_attain = {z for z in range(zones) if rng.random() < 0.25}
    scale = {"COD": 8.0, "NH3-N": 0.8, "TP": 0.1, "TN": 1.5, "SO2": 4.0, "NOX": 6.0, "VOCS": 3.0, "PM": 2.0}

    def key(pol: str, z: int) -> str:
        return watershed[z] if pol in WATER else airshed[z]

    plist, demand = [], defaultdict(int)
    for j in range(projects):
        z = rng.randrange(zones)
        k = min(4, max(1, round(rng.gauss(2.5, 0.9))))
        pols = rng.sample(WATER + AIR, k)
        needs = []
        for pol in sorted(pols):
            tonnes = rng.lognormvariate(math.log(scale[pol]), sigma)
            ratio = 2.0 if (pol == "VOCS" or (pol in AIR and z in non_attain)) else 1.0
            g = math.ceil(tonnes * 1_000_000 * ratio)
            needs.append(PNeed(pol, key(pol, z), g))
            demand[(pol, key(pol, z))] += g
        on = AS_OF + dt.timedelta(days=rng.choice([0, 0, 90, 180, 365, 540, 730, 1095]))
        plist.append(PProject(f"P{j:05d}", rng.randint(*priorities), rng.random() < must_fund_share,
                              on if dated else AS_OF, tuple(needs)))
    groups = sorted(demand)
    per_group = defaultdict(list)
    for i in range(lots):
        per_group[groups[i % len(groups)]].append(i)
    llist = []
    for group, ids in per_group.items():
        total = demand[group] * tightness * rng.uniform(0.8, 1.2)
        weights = [rng.random() + 0.2 for _ in ids]
        for i, w in zip(ids, weights):
            expires = None if rng.random() < 0.15 else AS_OF + dt.timedelta(days=rng.randint(60, 1800))
            expires = expires if dated else None
            llist.append(PLot(f"L{i:05d}", group[0], group[1], expires, int(total * w / sum(weights))))
    # must-fund projects must be fundable: drop the flag where they alone do not fit
    from quota.planning.problem import build_rows, feasible
    rows = build_rows(plist, llist, [])
    while True:
        bad = feasible(rows, {i for i, p in enumerate(plist) if p.must_fund}, set())
        if not bad:
            break
        row = bad[0][0]
        victim = next(pi for pi, _ in row.terms if plist[pi].must_fund)
        p = plist[victim]
        plist[victim] = PProject(p.project_id, p.priority, False, p.on, p.needs)
    return plist, llist


# name -> instance() arguments. 40 zones and 720 lots per 2,000 projects (at least 40 zones and 60 lots);
# a float number of watersheds or airsheds is a share of the zones (so small keys stay small at scale).
SMALL = {"watersheds": 1.0, "airsheds": 0.5, "priorities": (100, 1000)}
SHAPES: dict[str, dict] = {
    # DESIGN 9's reference: 40 zones in 20 watersheds and 10 airsheds, priorities 1-10
    "reference": {"watersheds": 0.5, "airsheds": 0.25},
    # issue 16: many small keys -- each zone its own watershed, airsheds pairing zones, priorities 100-1000
    "many-small": SMALL,
    "many-small-tight": {**SMALL, "tightness": 0.4},
    "many-small-loose": {**SMALL, "tightness": 0.9},
    # few large keys: a district with 3 watersheds and 2 airsheds
    "few-large": {"watersheds": 3, "airsheds": 2, "priorities": (100, 1000)},
    "few-large-tight": {"watersheds": 3, "airsheds": 2, "priorities": (100, 1000), "tightness": 0.4},
    # a must-fund set of about 10% of the projects
    "must-fund": {**SMALL, "must_fund_share": 0.10},
    # no dates: every project needed now, lots that never expire (one Hall row per group)
    "undated": {**SMALL, "dated": False},
}


def shape(name: str, projects: int = 2000, seed: int = 1) -> tuple[list[PProject], list[PLot]]:
    """The named shape (see SHAPES) with `projects` projects."""
    args = dict(SHAPES[name])
    zones = max(40, 40 * projects // 2000)
    for k in ("watersheds", "airsheds"):
        if isinstance(args.get(k), float):
            args[k] = max(1, round(args[k] * zones))
    return instance(projects, zones, max(60, 720 * projects // 2000), seed=seed, **args)


def describe(projects: list[PProject], lots: list[PLot]) -> str:
    rows = sum(len(p.needs) for p in projects)
    demand = sum(n.required_g for p in projects for n in p.needs)
    supply = sum(l.available_g for l in lots)
    return (f"{len(projects)} projects ({rows} project-pollutant rows), {len(lots)} lots, "
            f"{len({(l.pollutant, l.key) for l in lots})} (pollutant, key) groups, supply/demand {supply / demand:.2f}, "
            f"{sum(p.must_fund for p in projects)} must-fund")
