"""Plans in the database: gather lots and pipeline projects, solve, store, and apply as reservations."""
from __future__ import annotations

import datetime as dt
import json

from sqlalchemy import Connection, Engine, text

from quota.accounts import lot_balance_join
from quota import clock
from quota.store import db
from quota.ledger import idempotency
from quota.ledger import posting
from quota.planning import problem
from quota.planning import milp
from quota.ledger import operations
from quota.rules import versions
from quota import units
from quota.rules.eligibility import LotFacts, available_on, serves_until, why_not
from quota.errors import NotFound, Reason, Refused
from quota.planning.problem import PCandidate, PLot, PNeed, PProject
from quota.ledger.projects import Need, ProjectInfo, load_projects, required_g
from quota.ledger.drawing import LotAvail
from quota.rules.book import Rulebook
from quota.planning.scenario import Scenario, load_scenario


def gather(conn: Connection, book: Rulebook, as_of: dt.date, scenario: Scenario | None = None
           ) -> tuple[list[PLot], list[tuple[ProjectInfo, PProject]], list[PCandidate], dict]:
    """Active lots (with balance, effective and not expired on `as_of`) and pipeline projects."""
    lots, zones = [], {}
    for serial, pol, zone, expires, effective, amount, status in conn.execute(text(
            "SELECT l.serial, l.pollutant, l.zone, l.expires, l.effective_date, b.amount_g, s.status FROM lot l "
            "JOIN balance b ON " + lot_balance_join("b", "l.serial") + " "
            "LEFT JOIN lot_status s ON s.serial = l.serial WHERE b.amount_g > 0 ORDER BY l.serial")):
        expires, effective = clock.as_date(expires), clock.as_date(effective)
        if not available_on(LotFacts(serial, pol, zone, effective, expires, status or "active"), as_of):
            continue  # the planner's candidate sets follow the eligibility rule (each project's date in solve)
        lots.append(PLot(serial, pol, book.matching_key(pol, zone), expires, int(amount)))
        zones[serial] = zone
    infos = load_projects(conn, book, state="pipeline")
    candidates: list[PCandidate] = []
    if scenario is not None:
        life = book.lot_expiry(as_of)
        for x in scenario.lots:
            serial = f"scenario:{x.lot_id}"
            lots.append(PLot(serial, x.pollutant, book.matching_key(x.pollutant, x.zone), x.expires or life,
                             x.amount_g))
            zones[serial] = x.zone
        removed = set(scenario.remove_projects) | {p.project_id for p in scenario.projects}
        infos = [i for i in infos if i.project_id not in removed]
        for x in scenario.projects:
            info = ProjectInfo(x.project_id, x.name, x.zone, x.industry, x.priority, x.needed_by, x.must_fund,
                               "scenario")
            for pol, inc in sorted(x.needs.items()):
                ratio, why = book.ratio(pol, x.industry, x.zone, x.ratios.get(pol))
                info.needs.append(Need(pol, inc, ratio, tuple(why), required_g(inc, ratio),
                                       book.matching_key(pol, x.zone)))
            infos.append(info)
        for c in scenario.candidates:
            clots = []
            for pol, g in sorted(c.reductions.items()):
                serial = f"candidate:{c.candidate_id}:{pol}"
                clots.append(PLot(serial, pol, book.matching_key(pol, c.zone), life, g, c.candidate_id))
                zones[serial] = c.zone
            candidates.append(PCandidate(c.candidate_id, c.cost, tuple(clots)))
    infos.sort(key=lambda i: i.project_id)
    projects = []
    for info in infos:
        on = serves_until(as_of, info.needed_by)
        projects.append((info, PProject(info.project_id, info.priority, info.must_fund, on,
                                        tuple(PNeed(n.pollutant, n.key, n.required_g) for n in info.needs))))
    return lots, projects, candidates, zones


def run_plan(engine: Engine, *, as_of: dt.date | None = None, scenario_path: str | None = None,
             time_limit: float = 10.0, gap: float = 0.0, actor: str = "planner", solver: str = "auto",
             out: str | None = None, key: str | None = None) -> dict:
    """Solve the allocation for all pipeline projects; store and return the plan (the shape of docs/design.md,
    JSON shapes). With `out`, the plan's files are written (write_plan_files) inside the transaction that stores
    it: a folder that cannot be written stores no plan. With `key` (a form's idempotency key, --key), a repeat
    of the same request returns the plan the first stored, without solving again, with "replayed"."""
    check_options(time_limit, gap, solver)
    digest = None
    if key is not None:
        idempotency.check_key(key)
        from pathlib import Path
        digest = idempotency.request_hash("plan run", {
            "as_of": as_of.isoformat() if as_of else None, "time_limit": time_limit, "gap": gap, "solver": solver,
            "scenario": Path(scenario_path).read_text(encoding="utf-8", errors="replace") if scenario_path else None})
        done = _plan_of_key(engine, key, digest)
        if done is not None:
            if out:  # the files of the plan the key stored (a repeat with --out writes them again)
                write_plan_files(done, out, engine)
            return done
    with db.reading(engine) as conn:
        version, book, scenario, day = planning_inputs(conn, as_of, scenario_path)
        lots, pairs, candidates, zones = gather(conn, book, day, scenario)
        head = db.chain_head(conn)[0]
    infos = [i for i, _ in pairs]
    projects = [p for _, p in pairs]
    all_lots = lots + [l for c in candidates for l in c.lots]
    sol, rows = milp.solve(projects, lots, candidates, time_limit=time_limit, gap=gap,
                              mode=scenario.mode if scenario else "priority",
                              budget=scenario.budget if scenario else None, solver=solver)
    chosen = {candidates[i].candidate_id for i in sol.chosen}
    usable = [l for l in all_lots if l.candidate is None or l.candidate in chosen]
    result = _result(book, infos, projects, usable, rows, sol, candidates, chosen, scenario, zones)
    result.update({"as_of": day.isoformat(), "rulebook_version": version, "ledger_seq": int(head)})

    def store(conn: Connection) -> dict:
        if key and conn.execute(text("SELECT 1 FROM plan WHERE run_key = :k"), {"k": key}).first():
            raise _KeyTaken()  # a racing request with the same key stored its plan first
        n = conn.execute(text("SELECT count(*) FROM plan")).scalar_one() + 1
        plan_id = f"PLAN-{n:04d}"
        result["plan_id"] = plan_id
        conn.execute(text("INSERT INTO plan (plan_id, created_at, actor, as_of, status, rulebook_version, head_seq, "
                          "scenario_name, scenario, result" + (", run_key, run_request" if key else "") + ") "
                          "VALUES (:i, :c, :a, :d, :s, :v, :h, :n, :t, :r" + (", :k, :q" if key else "") + ")"),
                     {"i": plan_id, "c": posting.now_iso(), "a": actor, "d": day, "s": sol.status, "v": version,
                      "h": int(head), "n": scenario.name if scenario else "", "t": scenario.text if scenario else "",
                      "r": json.dumps(result, ensure_ascii=False), "k": key, "q": digest})
        if out:
            write_plan_files(result, out, engine)
        return result

    if key is None:
        return db.run_write(engine, store, lock=False)  # not a ledger write; a clashing id is retried
    try:
        return {**db.run_write(engine, store, lock=False), "replayed": False}
    except _KeyTaken:
        done = _plan_of_key(engine, key, digest)
        if out:
            write_plan_files(done, out, engine)
        return done


class _KeyTaken(Exception):
    pass


def _plan_of_key(engine: Engine, key: str, digest: str) -> dict | None:
    """The plan stored under an idempotency key, with "replayed" (None when there is none); the same key for
    another request is refused (IdempotencyConflict)."""
    from quota.errors import IdempotencyConflict
    with db.reading(engine) as conn:
        row = conn.execute(text("SELECT plan_id, run_request FROM plan WHERE run_key = :k"), {"k": key}).first()
    if row is None:
        return None
    if row[1] != digest:
        raise IdempotencyConflict(key=key, command="plan run")
    return {**get_plan(engine, row[0]), "replayed": True}


def planning_inputs(conn: Connection, as_of: dt.date | None, scenario_path: str | None
                    ) -> tuple[int, Rulebook, Scenario | None, dt.date]:
    """(rulebook version, rulebook with the scenario's overrides, scenario, plan date) for a plan or an outlook:
    the date is `as_of`, else the scenario's, else today."""
    version, book = versions.current(conn)
    scenario = load_scenario(scenario_path, book) if scenario_path else None
    if scenario is not None:
        book = scenario.apply_rules(book)
    day = as_of or (scenario.as_of if scenario and scenario.as_of else None) or clock.today()
    return version, book, scenario, day


SOLVERS = ("auto", "highs", "cbc")


def check_options(time_limit: float, gap: float, solver: str) -> None:
    """The solver options a user gives: a known solver, a positive finite time limit, a gap in [0, 1)."""
    import math
    if solver not in SOLVERS:
        raise Refused("bad_option", option="solver", value=solver, known=list(SOLVERS))
    if not (isinstance(time_limit, (int, float)) and math.isfinite(time_limit) and 0 < time_limit <= 86_400):
        raise Refused("bad_option", option="time_limit", value=str(time_limit))
    if not (isinstance(gap, (int, float)) and math.isfinite(gap) and 0 <= gap < 1):
        raise Refused("bad_option", option="gap", value=str(gap))


def _result(book, infos, projects, lots, rows, sol, candidates, chosen, scenario, zones) -> dict:
    unit = {p: book.pollutants[p].unit for p in book.pollutants}
    # "objective" is the contract's number; "objective_exact" the same total as exact decimal text
    out = {"plan_id": None, "status": sol.status, "objective": sol.objective,
           "objective_exact": units.decimal_text(problem.objective_exact(projects, sol.funded)), "bound": sol.bound,
           "lp_bound": sol.lp_bound, "gap": milp.relative_gap(sol.objective, sol.bound), "solver": sol.solver,
           "seconds": round(sol.seconds, 3), "scenario": scenario.name if scenario else None,
           "funded": [], "unfunded": [], "shadow_prices": [], "binding": [], "short": [],
           "units": dict(sorted(unit.items()))}
    supply: dict[tuple, int] = {}
    for lot in lots:
        supply[(lot.pollutant, lot.key)] = supply.get((lot.pollutant, lot.key), 0) + lot.available_g
    demand: dict[tuple, int] = {}
    for p in projects:
        for n in p.needs:
            demand[(n.pollutant, n.key)] = demand.get((n.pollutant, n.key), 0) + n.required_g
    out["groups"] = [{"pollutant": g[0], "key": g[1], "supply_g": supply.get(g, 0), "demand_g": demand.get(g, 0)}
                     for g in sorted(set(supply) | set(demand))]
    if sol.status == "infeasible":
        out["short"] = [{**s, "unit": unit[s["pollutant"]], "short": units.display_up(s["short_g"], unit[s["pollutant"]])}
                        for s in problem.must_fund_shortfalls(projects, rows, set(sol.chosen))]
        out["unfunded"] = [{"project_id": p.project_id, "priority": units.priority_json(p.priority), "must_fund": p.must_fund,
                            "shortfall_g": {}} for p in projects]
        return out
    drawn = problem.draws(projects, lots, sol.funded)
    for pi in sol.funded:
        out["funded"].append({"project_id": projects[pi].project_id, "name": infos[pi].name,
                              "priority": units.priority_json(projects[pi].priority), "must_fund": projects[pi].must_fund,
                              "draws": sorted(({"lot": l.serial, "pollutant": pol, "amount_g": g, "zone": zones[l.serial]}
                                               for l, pol, g in drawn.get(pi, [])),
                                              key=lambda d: (d["pollutant"], d["lot"]))})
    short = problem.shortfalls(projects, lots, sol.funded, drawn)
    for pi, s in sorted(short.items()):
        out["unfunded"].append({"project_id": projects[pi].project_id, "name": infos[pi].name,
                                "priority": units.priority_json(projects[pi].priority),
                                "must_fund": projects[pi].must_fund, "shortfall_g": dict(sorted(s.items()))})
    per_group: dict[tuple, float] = {}
    for r_i, row in enumerate(rows):
        per_group[row.group] = per_group.get(row.group, 0.0) + sol.duals.get(f"r{r_i}", 0.0)
    for (pol, key), value in sorted(per_group.items(), key=lambda kv: (-kv[1], kv[0])):
        if value > 1e-9:
            per_unit = value * (1.0 if unit[pol] == "t/a" else 1e-3)  # duals are per tonne
            out["shadow_prices"].append({"pollutant": pol, "key": key, "value": round(per_unit, 6),
                                         "per": unit[pol].split("/")[0]})
    funded = set(sol.funded)
    for row in rows:
        cap = row.supply_g + sum(g for ci, g in row.cand_terms if ci in set(sol.chosen))
        used = sum(g for pi, g in row.terms if pi in funded)
        blocked = sorted(projects[pi].project_id for pi, g in row.terms if pi not in funded and g > cap - used)
        if blocked:
            out["binding"].append({"pollutant": row.group[0], "key": row.group[1], "after": row.threshold.isoformat(),
                                   "supply_g": cap, "used_g": used, "blocks": blocked})
    if candidates:
        out["candidates"] = [{"candidate_id": c.candidate_id, "cost": c.cost, "chosen": c.candidate_id in chosen}
                             for c in candidates]
        out["cost"] = sum(c.cost for c in candidates if c.candidate_id in chosen)
    return out


def list_plans(engine: Engine) -> dict:
    """Every stored plan, in the order they were made: {"plans": [{plan_id, as_of, status, scenario, created_at,
    actor, applied_at}]} (a scenario plan, named or not, can never be applied)."""
    with db.reading(engine) as conn:
        rows = conn.execute(text("SELECT plan_id, as_of, status, scenario_name, scenario, created_at, actor, applied_at "
                                 "FROM plan ORDER BY created_at, plan_id")).all()
    return {"plans": [{"plan_id": r[0], "as_of": str(r[1]), "status": r[2],
                       "scenario": (r[3] or "(unnamed)") if (r[3] or r[4]) else None, "created_at": r[5],
                       "actor": r[6], "applied_at": r[7]} for r in rows]}


def get_plan(engine: Engine, plan_id: str) -> dict:
    plan_id = operations.edge_id(plan_id, "plan id")
    with db.reading(engine) as conn:
        row = conn.execute(text("SELECT result, applied_at FROM plan WHERE plan_id = :p"), {"p": plan_id}).first()
    if row is None:
        raise NotFound(what="plan", value=plan_id)
    return {**json.loads(row[0]), "applied_at": row[1]}


def apply_plan(engine: Engine, plan_id: str, *, actor: str, date: dt.date | None = None,
               key: str | None = None) -> dict:
    """Turn a solved plan into reservations, all or nothing. Every draw is checked again, as `reserve` checks
    its own: the lot exists, is eligible for the project today under the rulebook in force (eligibility.why_not)
    and holds the grams, and each pollutant's draws sum to the requirement in force. A stored plan, whoever
    wrote it, cannot make `apply` skip a check."""
    plan_id, actor = operations.edge_id(plan_id, "plan id"), operations.edge_text(actor, "actor")
    now = clock.today()
    today = date or now

    def work(conn: Connection) -> dict:
        operations.check_date(conn, today)
        row = conn.execute(text("SELECT result, applied_at, scenario_name, scenario FROM plan WHERE plan_id = :p"),
                           {"p": plan_id}).first()
        if row is None:
            raise NotFound(what="plan", value=plan_id)
        if row[1]:
            raise Refused("plan_state", plan_id=plan_id, reason="applied", applied_at=str(row[1]))
        try:
            plan = json.loads(row[0])
            funded = [(str(f["project_id"]), [(str(d["lot"]), str(d["pollutant"]), d["amount_g"]) for d in f["draws"]])
                      for f in plan["funded"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise Refused("plan_state", plan_id=plan_id, reason="malformed", detail=str(exc)) from None
        if plan.get("status") == "infeasible":
            raise Refused("plan_state", plan_id=plan_id, reason="infeasible")
        if row[2] or row[3] or plan.get("scenario"):
            raise Refused("plan_state", plan_id=plan_id, reason="scenario")
        version, book = versions.current(conn)
        problems: list[Reason] = []
        lots = {r[0]: (LotFacts(r[0], r[1], r[2], clock.as_date(r[3]), clock.as_date(r[4]), r[5] or "active"),
                       int(r[6]), clock.as_date(r[7])) for r in conn.execute(text(
            "SELECT l.serial, l.pollutant, l.zone, l.effective_date, l.expires, s.status, b.amount_g, b.last_date "
            "FROM lot l JOIN balance b ON " + lot_balance_join("b", "l.serial") + " "
            "LEFT JOIN lot_status s ON s.serial = l.serial"))}
        wanted: dict[str, int] = {}
        for _, draws in funded:
            for serial, _, g in draws:
                if type(g) is not int or g <= 0:
                    problems.append(Reason("plan_bad_draw", grams=repr(g), lot=serial))
                    continue
                wanted[serial] = wanted.get(serial, 0) + g
        for serial, g in sorted(wanted.items()):
            have = lots[serial][1] if serial in lots else None
            if have is None:
                problems.append(Reason("plan_no_lot", lot=serial))
            elif have < g:
                problems.append(Reason("plan_lot_holds", lot=serial, have=have, g=g))
        seen: set[str] = set()
        for project_id, _ in funded:
            if project_id in seen:
                problems.append(Reason("plan_funded_twice", project_id=project_id))
            seen.add(project_id)
        posted = []
        for project_id, draws in funded:
            infos = load_projects(conn, book, project_id=project_id) if project_id else []
            info = infos[0] if infos else None
            if info is None or info.state != "pipeline":
                problems.append(Reason("plan_project_state", project_id=project_id, state=info.state if info else "missing"))
                continue
            needs = {n.pollutant: n for n in info.needs}
            per_pol: dict[str, list] = {}
            for serial, pol, g in draws:
                if serial not in lots or type(g) is not int or g <= 0:
                    continue
                need = needs.get(pol)
                reason = (Reason("plan_no_need", project_id=project_id, pollutant=pol) if need is None else
                          why_not(book, lots[serial][0], pol, need.key, today, info.needed_by, now))
                if reason:
                    problems.append(Reason("plan_draw_refused", project_id=project_id, pollutant=pol, reason=reason))
                f, _, last = lots[serial]
                per_pol.setdefault(pol, []).append((LotAvail(serial, f.zone, f.expires, lots[serial][1], last, pol,
                                                             f.effective), g))
            for pol, need in needs.items():
                got = sum(g for _, g in per_pol.get(pol, []))
                if got != need.required_g:
                    problems.append(Reason("plan_need_changed", project_id=project_id, required_g=need.required_g,
                                           pollutant=pol, got=got))
            posted.append((info, per_pol))
        if problems:
            raise Refused("plan_stale", plan_id=plan_id, problems=problems)
        txns = []
        for info, per_pol in posted:
            r = operations.post_reservation(conn, book, version, info, per_pol, today, None, actor,
                                           memo=f"reserve for {info.name} (plan {plan_id})")
            txns.append(r["txn"])
        conn.execute(text("UPDATE plan SET applied_at = :t WHERE plan_id = :p"), {"t": posting.now_iso(), "p": plan_id})
        return {"plan_id": plan_id, "reserved": [p for p, _ in funded], "txns": txns}

    return idempotency.run(engine, key, "plan apply", {"plan": plan_id, "date": str(today)}, work, actor=actor)


PLAN_FILES = ("draws.csv", "unfunded.csv", "shadow_prices.csv", "summary.csv", "plan.xlsx")


def write_plan_files(result: dict, out_dir: str, db=None) -> list[str]:
    """Write the plan as draws.csv, unfunded.csv, shadow_prices.csv and plan.xlsx (all sheets), with a
    manifest.json: a folder that appears complete or not at all, never over a database, its text cells
    neutralised against spreadsheet formulas like the auditor exports (quota.outfiles, quota.table_export)."""
    import pandas as pd
    from pathlib import Path

    from openpyxl import Workbook

    from quota import outfiles
    from quota.audit.table_export import neutralise

    out = Path(out_dir)
    outfiles.check_folder(out, PLAN_FILES, db)
    # priorities as exact values (an int, or a Decimal written as its text), never a float column
    draws = pd.DataFrame([{"plan_id": result["plan_id"], "project_id": f["project_id"],
                           "priority": units.priority_from_json(f["priority"]),
                           **d} for f in result["funded"] for d in f["draws"]],
                         columns=["plan_id", "project_id", "priority", "pollutant", "lot", "zone", "amount_g"])
    unfunded = pd.DataFrame([{"plan_id": result["plan_id"], "project_id": u["project_id"],
                              "priority": units.priority_from_json(u["priority"]),
                              "pollutant": p, "shortfall_g": g}
                             for u in result["unfunded"] for p, g in (u["shortfall_g"].items() or [("", 0)])],
                            columns=["plan_id", "project_id", "priority", "pollutant", "shortfall_g"])
    prices = pd.DataFrame(result["shadow_prices"], columns=["pollutant", "key", "value", "per"])
    summary = pd.DataFrame([{k: result.get(k) for k in ("plan_id", "as_of", "status", "objective", "objective_exact",
                                                         "bound",
                                                         "lp_bound", "gap", "solver", "seconds", "scenario")}])
    frames = {name: frame.map(neutralise)
              for name, frame in (("draws", draws), ("unfunded", unfunded), ("shadow_prices", prices),
                                  ("summary", summary))}
    with outfiles.atomic_dir(out, PLAN_FILES, db) as tmp:
        rows = {}
        for name, frame in frames.items():
            frame.to_csv(tmp / f"{name}.csv", index=False)
            rows[f"{name}.csv"] = len(frame)
        book = Workbook()
        book.remove(book.active)
        for name in ("summary", "draws", "unfunded", "shadow_prices"):
            sheet, frame = book.create_sheet(name), frames[name]
            sheet.append(list(frame.columns))
            for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False):
                sheet.append(list(row))
        outfiles.save_xlsx(book, tmp / "plan.xlsx")
        rows["plan.xlsx"] = sum(len(f) for f in frames.values())
        outfiles.write_manifest(tmp, "quota-plan", rows, plan_id=result["plan_id"])
    return [str(out / name) for name in PLAN_FILES]
