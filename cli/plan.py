"""`quota plan run|apply|show`: thin wrappers around quota.plans, and the plan's rendering."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import render
from cli.core import failures, parse_date

plan_app = typer.Typer(no_args_is_help=True, help="Allocation plans: solve, show, apply.")


def render_plan(result: dict) -> None:
    from quota import units
    unit = result["units"]

    def amount(pol: str, grams: int, up: bool = False) -> str:
        return f"{(units.display_up if up else units.display)(grams, unit[pol])} {unit[pol]}"

    status = result["status"]
    render.out.print(render.msg("plan_head", id=result["plan_id"], day=result["as_of"], status=status,
                                obj=f"{result['objective']:g}", bound=f"{result['bound']:g}",
                                lp=f"{result['lp_bound']:.4g}", gap=f"{100 * result['gap']:.2f}%",
                                solver=result["solver"], secs=f"{result['seconds']:.2f}")
                     + (f", scenario {result['scenario']!r}" if result.get("scenario") else ""), markup=False)
    if status == "infeasible":
        render.out.print(render.table(render.msg("infeasible"), ["Pollutant", "Key", "Amount",
                                                                                          "Unit"],
                                      [[s["pollutant"], s["key"], s["short"], s["unit"]] for s in result["short"]],
                                      right={"Amount"}))
        return
    rows = []
    for f in result["funded"]:
        for d in f["draws"]:
            rows.append([f["project_id"], f["priority"], d["pollutant"], d["lot"], d["zone"],
                         amount(d["pollutant"], d["amount_g"])])
    render.out.print(render.table(render.msg("funded", n=len(result["funded"])), ["Project", "Priority", "Pollutant",
                                                                               "Lot", "Zone", "Amount"], rows,
                                  right={"Priority", "Amount"}))
    if result["unfunded"]:
        render.out.print(render.table(render.msg("unfunded", n=len(result["unfunded"])), ["Project", "Priority", "Short"],
                                      [[u["project_id"], u["priority"],
                                        ", ".join(f"{p} {amount(p, g, up=True)}" for p, g in u["shortfall_g"].items()) or "-"]
                                       for u in result["unfunded"]], right={"Priority"}))
    if result["shadow_prices"]:
        render.out.print(render.table(render.msg("shadow"),
                                      ["Pollutant", "Key", "Value"],
                                      [[s["pollutant"], s["key"], f"{s['value']:.4g} per {s['per']}"]
                                       for s in result["shadow_prices"]]))
    if result["binding"]:
        render.out.print(render.table(render.msg("binding"),
                                      ["Pollutant", "Key", "Expires after", "Supply", "Used", "Blocks"],
                                      [[b["pollutant"], b["key"], b["after"], amount(b["pollutant"], b["supply_g"]),
                                        amount(b["pollutant"], b["used_g"]), ", ".join(b["blocks"])]
                                       for b in result["binding"]], right={"Supply", "Used"}))
    if result.get("candidates") is not None:
        render.out.print(render.table(render.msg("candidates", cost=result.get("cost", 0)),
                                      ["Candidate", "Cost", "State"],
                                      [[c["candidate_id"], c["cost"], render.msg("chosen") if c["chosen"] else ""]
                                       for c in result["candidates"]], right={"Cost"}))


@plan_app.command("run")
def plan_run(ctx: typer.Context,
             as_of: Annotated[Optional[str], typer.Option("--as-of", help="Plan date (default today).")] = None,
             scenario: Annotated[Optional[Path], typer.Option(help="Scenario TOML file.")] = None,
             time_limit: Annotated[float, typer.Option("--time-limit", help="Solver time limit in seconds.")] = 10.0,
             gap: Annotated[float, typer.Option(help="Relative MIP gap at which to stop (0 = prove optimal).")] = 0.0,
             solver: Annotated[str, typer.Option(help="auto (HiGHS if installed), highs or cbc.")] = "auto",
             out: Annotated[Optional[Path], typer.Option(help="Write the plan as CSV and XLSX files here.")] = None,
             as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """Solve the allocation of pooled credits to all pipeline projects, and store the plan.

    Example: quota plan run --as-of 2026-12-01 --scenario data/scenario.toml
    """
    from cli.progress import reporter
    from quota import outfiles
    from quota.planning import plans
    with failures(as_json), reporter() as progress:
        if out:  # refused before the plan is solved and stored
            outfiles.check_folder(out, plans.PLAN_FILES, ctx.obj.engine)
        if progress:
            progress(f"solving (up to {time_limit:g} s)", 0, None)
        result = plans.run_plan(ctx.obj.engine, as_of=parse_date(as_of), scenario_path=str(scenario) if scenario else None,
                                time_limit=time_limit, gap=gap, actor=ctx.obj.actor, solver=solver)
        if out:
            plans.write_plan_files(result, str(out), ctx.obj.engine)
    if as_json:
        return render.emit_json(result)
    render_plan(result)
    if out:
        render.note(f"plan files written to {out}")


@plan_app.command("show")
def plan_show(ctx: typer.Context, plan_id: Annotated[str, typer.Argument(help="Plan id, e.g. PLAN-0001.")],
              as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """Show a stored plan.  Example: quota plan show PLAN-0001"""
    from quota.planning import plans
    with failures(as_json):
        result = plans.get_plan(ctx.obj.engine, plan_id)
    if as_json:
        return render.emit_json(result)
    render_plan(result)


@plan_app.command("list")
def plan_list(ctx: typer.Context,
              as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """List the stored plans, newest last.  Example: quota plan list"""
    from quota.planning import plans
    with failures(as_json):
        result = plans.list_plans(ctx.obj.engine)
    if as_json:
        return render.emit_json(result)
    render.out.print(render.table(None, ["Plan", "As of", "Status", "Scenario", "Created", "Actor", "Applied"],
                                  [[p["plan_id"], p["as_of"], p["status"], p["scenario"] or "-", p["created_at"],
                                    p["actor"], p["applied_at"] or "-"] for p in result["plans"]]))


@plan_app.command("apply")
def plan_apply(ctx: typer.Context, plan_id: Annotated[str, typer.Argument(help="Plan id, e.g. PLAN-0001.")],
               date: Annotated[Optional[str], typer.Option(help="Effective date (default today).")] = None,
               key: Annotated[Optional[str], typer.Option("--key", help="Idempotency key.")] = None,
               as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """Turn a solved plan into reservations, all or nothing.  Example: quota plan apply PLAN-0001"""
    from quota.planning import plans
    with failures(as_json):
        result = plans.apply_plan(ctx.obj.engine, plan_id, actor=ctx.obj.actor, date=parse_date(date), key=key)
    if as_json:
        return render.emit_json(result)
    render.out.print(render.msg("applied", id=plan_id, n=len(result["reserved"])))


@plan_app.command("outlook")
def plan_outlook(ctx: typer.Context,
                 years: Annotated[int, typer.Option(help="Number of calendar years, from the as-of year.")] = 5,
                 as_of: Annotated[Optional[str], typer.Option("--as-of", help="Start date (default today).")] = None,
                 scenario: Annotated[Optional[Path], typer.Option(help="Scenario TOML file.")] = None,
                 time_limit: Annotated[float, typer.Option("--time-limit", help="Solver time limit in seconds.")] = 10.0,
                 as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """Year by year, per pollutant and key: supply left, pipeline demand, the plan's allocations, and
    the first year each key runs short.  Example: quota plan outlook --years 5 --scenario s.toml"""
    from quota.planning import outlook
    from quota import units
    with failures(as_json):
        result = outlook.outlook(ctx.obj.engine, years=years, as_of=parse_date(as_of),
                                 scenario_path=str(scenario) if scenario else None, time_limit=time_limit)
    if as_json:
        return render.emit_json(result)
    span = result["years"]
    rows = []
    for g in result["groups"]:
        cells = []
        for r in g["years"]:
            cell = units.display(r["closing_g"], g["unit"])
            cells.append(cell + (f" (short {units.display_up(r['unmet_g'], g['unit'])})" if r["unmet_g"] > 0 else ""))
        rows.append([g["pollutant"], g["key"], g["unit"], str(g["first_short_year"] or "-"), *cells])
    render.out.print(render.table(f"Outlook from {result['as_of']}: quota left at each year's end (plan "
                                  f"{result['plan']['status']})", ["Pollutant", "Key", "Unit", "First short",
                                                                    *map(str, span)], rows,
                                  right=set(map(str, span))))
    if result["candidates"]:
        render.out.print(render.table("Candidate measures", ["Candidate", "Chosen", "Tally by"],
                                      [[c["candidate_id"], "yes" if c["chosen"] else "", c["tally_by"] or "-"]
                                       for c in result["candidates"]]))
