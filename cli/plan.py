"""`quota plan run|show|list|apply|outlook`: thin wrappers around quota.planning (rendering in cli.render)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import render
from cli.core import KeyOpt, failures, parse_date

plan_app = typer.Typer(no_args_is_help=True, help="Allocation plans: solve, show, apply.")




@plan_app.command("run")
def plan_run(ctx: typer.Context,
             as_of: Annotated[Optional[str], typer.Option("--as-of", help="Plan date (default today).")] = None,
             scenario: Annotated[Optional[Path], typer.Option(help="Scenario TOML file.")] = None,
             time_limit: Annotated[float, typer.Option("--time-limit", help="Solver time limit in seconds.")] = 10.0,
             gap: Annotated[float, typer.Option(help="Relative MIP gap at which to stop (0 = prove optimal).")] = 0.0,
             solver: Annotated[str, typer.Option(help="auto (HiGHS if installed), highs or cbc.")] = "auto",
             out: Annotated[Optional[Path], typer.Option(help="Write the plan as CSV and XLSX files here.")] = None,
             key: KeyOpt = None,
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
                                time_limit=time_limit, gap=gap, actor=ctx.obj.actor, solver=solver,
                                out=str(out) if out else None, key=key)
    if as_json:
        return render.emit_json(result)
    render.plan(result)
    if out:
        render.note(render.msg("plan_files_written", path=out))


@plan_app.command("show")
def plan_show(ctx: typer.Context, plan_id: Annotated[str, typer.Argument(help="Plan id, e.g. PLAN-0001.")],
              as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """Show a stored plan.  Example: quota plan show PLAN-0001"""
    from quota.planning import plans
    with failures(as_json):
        result = plans.get_plan(ctx.obj.engine, plan_id)
    if as_json:
        return render.emit_json(result)
    render.plan(result)


@plan_app.command("list")
def plan_list(ctx: typer.Context,
              as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")] = False) -> None:
    """List the stored plans, newest last.  Example: quota plan list"""
    from quota.planning import plans
    with failures(as_json):
        result = plans.list_plans(ctx.obj.engine)
    if as_json:
        return render.emit_json(result)
    render.plans(result["plans"])


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
    with failures(as_json):
        result = outlook.outlook(ctx.obj.engine, years=years, as_of=parse_date(as_of),
                                 scenario_path=str(scenario) if scenario else None, time_limit=time_limit)
    if as_json:
        return render.emit_json(result)
    render.outlook(result)
