"""The typer app: global options, and one thin command per library call."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import audit, render, users
from cli.core import (DATA_DIR, DateOpt, JsonOpt, KeyOpt, OptionRefused, QuotaGroup, State, default_actor, failures,
                      parse_date)
from cli.plan import plan_app
from quota.intake.columns import (PROJECT_NAMES, PROJECT_OPTIONAL, PROJECT_REQUIRED, TALLY_NAMES, TALLY_OPTIONAL,
                                  TALLY_REQUIRED, describe as describe_columns)
from quota.errors import Refused
from quota.store import db

app = typer.Typer(cls=QuotaGroup, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False,
                  help="quota: emissions-quota ledger and environmental-capacity planner.")
rules_app = typer.Typer(cls=QuotaGroup, no_args_is_help=True, help="Show or load the rulebook.")
tally_app = typer.Typer(cls=QuotaGroup, no_args_is_help=True, help="Import third-party tallies (credits).")
project_app = typer.Typer(cls=QuotaGroup, no_args_is_help=True, help="Import and list incoming projects.")
app.add_typer(rules_app, name="rules")
app.add_typer(tally_app, name="tally")
app.add_typer(project_app, name="project")

@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[Optional[str], typer.Option("--db", envvar="QUOTA_DB", show_envvar=True,
                                               help="Database URL (default sqlite:///quota.db; PostgreSQL: "
                                                    "postgresql+psycopg://user@host/dbname).")] = None,
    lang: Annotated[str, typer.Option("--lang", envvar="QUOTA_LANG", help="Language of headers: en or zh.")] = "en",
    actor: Annotated[Optional[str], typer.Option("--actor", envvar="QUOTA_ACTOR",
                                                 help="Who is acting (recorded on every transaction).")] = None,
    lock_timeout: Annotated[Optional[float], typer.Option(
        "--lock-timeout", envvar="QUOTA_LOCK_TIMEOUT", show_envvar=True, min=0, max=3600,
        help="PostgreSQL: seconds a statement waits for a lock (default 5; 0: no limit). A write that "
             "times out is retried, then refused as busy.")] = None,
) -> None:
    """Emissions-quota ledger: credit reductions, reserve and approve quota, plan, audit."""
    lang = lang.strip().lower()  # QUOTA_LANG=ZH as well as zh
    if lang not in ("en", "zh"):
        raise OptionRefused(Refused("bad_option", option="lang", value=lang))
    render.LANG["lang"] = lang
    url = url or db.DEFAULT_URL
    ctx.obj = State(url, actor or default_actor(url), url != db.DEFAULT_URL, lock_timeout)


# --------------------------------------------------------------------------- setup

@app.command()
def init(ctx: typer.Context,
         rules: Annotated[Path, typer.Option("--rules", help="Rulebook TOML file.")]) -> None:
    """Create the schema and load the rulebook.  Example: quota init --rules data/rules.toml"""
    from quota.rules import versions
    with failures():
        result = versions.init(ctx.obj.engine, str(rules), ctx.obj.actor)
    render.done(render.msg("initialised", url=ctx.obj.url, version=result["version"])
                + ("" if result["changed"] else render.msg("unchanged")))


@rules_app.command("show")
def rules_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the rulebook in force.  Example: quota rules show --json"""
    from quota.rules import versions
    with failures(as_json), db.reading(ctx.obj.engine) as conn:
        version, book = versions.current(conn)
    info = {"version": version, **versions.describe(book)}
    if as_json:
        return render.emit_json(info)
    render.rulebook(info, book)


@rules_app.command("load")
def rules_load(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="Rulebook TOML file.")]) -> None:
    """Load a new rulebook version.  Example: quota rules load data/rules.toml"""
    from quota.rules import versions
    with failures():
        result = versions.load(ctx.obj.engine, str(file), ctx.obj.actor)
    render.done(render.msg("rulebook_version", version=result["version"])
                + ("" if result["changed"] else render.msg("unchanged")))


# --------------------------------------------------------------------------- imports

SheetOpt = Annotated[Optional[str], typer.Option("--sheet", help="The sheet of an XLSX workbook to read "
                                                 "(default: the first sheet that has the columns).")]


@tally_app.command("import", epilog=describe_columns(TALLY_REQUIRED, TALLY_OPTIONAL, TALLY_NAMES))
def tally_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV or XLSX tally file.")],
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
                 sheet: SheetOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a tally file and credit every tally as a lot, all or nothing. A CSV is read as UTF-8, or as
    GB18030/GBK (what Chinese Excel saves) when it is not UTF-8; stderr says which.

    Example: quota tally import data/tallies.csv
    """
    from cli.progress import reporter
    from quota.intake import tallies
    read: dict = {}
    with failures(as_json), reporter() as progress:
        try:
            result = tallies.import_tallies(ctx.obj.engine, str(file), actor=ctx.obj.actor, key=key,
                                            dry_run=dry_run, progress=progress, sheet=sheet, read=read)
        finally:
            render.read_note(file.name, read)
    if as_json:
        return render.emit_json({**result, "read": read})
    render.credited(result, dry_run)


@project_app.command("import", epilog=describe_columns(PROJECT_REQUIRED, PROJECT_OPTIONAL, PROJECT_NAMES))
def project_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV or XLSX project file.")],
                   dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
                   sheet: SheetOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a project file and add its projects to the pipeline, all or nothing. A CSV is read as UTF-8, or
    as GB18030/GBK (what Chinese Excel saves) when it is not UTF-8; stderr says which.

    Example: quota project import data/projects.csv
    """
    from quota.intake import project_files
    read: dict = {}
    with failures(as_json):
        try:
            result = project_files.import_projects(ctx.obj.engine, str(file), actor=ctx.obj.actor, key=key,
                                                   dry_run=dry_run, sheet=sheet, read=read)
        finally:
            render.read_note(file.name, read)
    if as_json:
        return render.emit_json({**result, "read": read})
    render.done(render.msg("would_import_projects" if dry_run else "imported_projects", n=result["projects"],
                           rows=result["rows"]))


@project_app.command("list")
def project_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List projects with their requirements (ratio applied).  Example: quota project list"""
    from quota.ledger.projects import project_rows
    with failures(as_json):
        rows = project_rows(ctx.obj.engine)
    if as_json:
        return render.emit_json({"projects": rows})
    render.projects(rows)


# --------------------------------------------------------------------------- queries

@app.command()
def balance(ctx: typer.Context,
            pollutant: Annotated[Optional[str], typer.Option(help="Only this pollutant.")] = None,
            zone: Annotated[Optional[str], typer.Option(help="Only this zone.")] = None,
            by: Annotated[str, typer.Option(help="Group by pollutant, zone or lot.")] = "pollutant",
            as_of: Annotated[Optional[str], typer.Option("--as-of", help="Balances as of this date.")] = None,
            as_json: JsonOpt = False) -> None:
    """Available, reserved and allocated quota.  Example: quota balance --by zone --pollutant COD"""
    from quota.ledger import balances
    if by not in ("pollutant", "zone", "lot"):
        raise OptionRefused(Refused("bad_option", option="by", value=by))
    with failures(as_json):
        if as_json:  # written row by row as the database yields them (`--by lot` lists every lot)
            with balances.balance_stream(ctx.obj.engine, by=by, pollutant=pollutant, zone=zone,
                                         as_of=parse_date(as_of)) as (head, rows):
                return render.emit_json_stream(head, "rows", rows)
        result = balances.balance(ctx.obj.engine, by=by, pollutant=pollutant, zone=zone, as_of=parse_date(as_of))
    render.balances(result)


# --------------------------------------------------------------------------- quota operations

def _done(result: dict, message: str, as_json: bool) -> None:
    if as_json:
        return render.emit_json(result)
    render.out.print(message + (render.msg("replayed") if result.get("replayed") else ""))


@app.command()
def reserve(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
            pollutant: Annotated[Optional[str], typer.Option(help="Reserve only this pollutant.")] = None,
            expires: Annotated[Optional[str], typer.Option(help="The reservation lapses on this date.")] = None,
            date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Reserve a project's requirement (ratio applied) from eligible lots, earliest expiry first.

    All pollutants or nothing. Example: quota reserve P2026-01 --expires 2027-03-31
    """
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.reserve(ctx.obj.engine, project, actor=ctx.obj.actor, pollutant=pollutant,
                                   expires=parse_date(expires), date=parse_date(date), key=key)
    _done(result, render.msg("reserved", project=project, n=len(result["draws"]), txn=result["txn"]), as_json)


@app.command()
def approve(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
            doc: Annotated[str, typer.Option("--doc", help="Approval document number.")],
            date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Confirm a project's reservations as allocations.  Example: quota approve P2026-01 --doc "金环审[2026]12号" """
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.approve(ctx.obj.engine, project, doc=doc, actor=ctx.obj.actor, date=parse_date(date), key=key)
    _done(result, render.msg("approved", project=project, doc=doc, txn=result["txn"]), as_json)


@app.command()
def release(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
            date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Release a project's reservations back to their lots.  Example: quota release P2026-03"""
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.release(ctx.obj.engine, project, actor=ctx.obj.actor, date=parse_date(date), key=key)
    _done(result, render.msg("released", project=project, txn=result["txn"]), as_json)


@app.command()
def cancel(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
           date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw a project: its reserved and allocated quota returns to the lots.  Example: quota cancel P2026-03"""
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.cancel(ctx.obj.engine, project, actor=ctx.obj.actor, date=parse_date(date), key=key)
    _done(result, render.msg("cancelled", project=project) + (f", txn {result['txn']}" if result["txn"] else ""),
          as_json)


@app.command()
def expire(ctx: typer.Context,
           as_of: Annotated[str, typer.Option("--as-of", help="Expire lots and reservations lapsed by this date.")],
           key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Post expired lots to expired and release lapsed reservations.  Example: quota expire --as-of 2026-12-31"""
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.expire(ctx.obj.engine, parse_date(as_of), actor=ctx.obj.actor, key=key)
    _done(result, render.msg("expired", lots=len(result["expired"]), res=len(result["lapsed_reservations"])),
          as_json)


@app.command()
def revoke(ctx: typer.Context, lot: Annotated[str, typer.Argument(help="Lot serial.")],
           memo: Annotated[str, typer.Option("--memo", help="Why the lot is revoked.")],
           date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke the unallocated part of a lot whose tally was found invalid.

    Example: quota revoke COD-2022-00001 --memo "report withdrawn"
    """
    from quota.ledger import operations as quota_ops
    with failures(as_json):
        result = quota_ops.revoke(ctx.obj.engine, lot, actor=ctx.obj.actor, memo=memo, date=parse_date(date), key=key)
    _done(result, render.msg("revoked", g=result["revoked_g"], lot=lot, txn=result["txn"]), as_json)


# --------------------------------------------------------------------------- demo

@app.command()
def demo(ctx: typer.Context,
         data: Annotated[Optional[Path], typer.Option(help="Folder with rules.toml, tallies.csv, projects.csv "
                                                           "(default: the installation's data/ folder).")] = None,
         today: Annotated[Optional[str], typer.Option(help="Date to run the demo on (default 2026-11-30, a day that "
                                                        "suits the sample data, whatever the calendar says).")] = None) -> None:
    """Load the sample data into a fresh database (default quota-demo.db) and walk through the ledger.

    Example: quota demo
    """
    from cli.demo import DEMO_TODAY, run_demo
    url = ctx.obj.url if ctx.obj.url_given else "sqlite:///quota-demo.db"
    with failures():
        run_demo(url, data or DATA_DIR, ctx.obj.actor, parse_date(today) or DEMO_TODAY,
                 fresh_default=not ctx.obj.url_given)


db_app = typer.Typer(cls=QuotaGroup, no_args_is_help=True, help="Database administration: migrations and roles.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply schema migrations (Alembic) to the database.  Example: quota db upgrade"""
    from quota.store import migrate
    with failures():
        result = migrate.upgrade(ctx.obj.engine)
    render.done(render.msg("schema_at", to=result["to"], was=result["from"] or render.msg("schema_empty")))


@db_app.command("roles")
def db_roles(ctx: typer.Context,
             print_only: Annotated[bool, typer.Option("--print", help="Print the SQL instead of running it.")] = False,
             schema: Annotated[str, typer.Option(help="Schema to grant on (with --print).")] = "public") -> None:
    """Create PostgreSQL roles quota_auditor, quota_clerk and quota_planner with least privilege.

    Example: quota --db postgresql+psycopg://admin@db/quota db roles
    """
    from quota.store import roles
    if print_only:
        for sql in roles.roles_sql(schema):
            render.out.print(sql + ";", markup=False)
        return
    with failures():
        stmts = roles.create_roles(ctx.obj.engine)
    render.done(render.msg("roles_created", roles=", ".join(roles.ROLES), n=len(stmts)))


@app.command()
def report(ctx: typer.Context,
           html: Annotated[Path, typer.Option("--html", help="Write the report to this HTML file.")],
           plan: Annotated[Optional[str], typer.Option(help="Include this plan (e.g. PLAN-0001).")] = None,
           as_of: Annotated[Optional[str], typer.Option("--as-of", help="Balances as of this date.")] = None,
           outlook: Annotated[int, typer.Option("--outlook", help="Add an outlook over this many years "
                                                "(solves a plan, not stored).")] = 0) -> None:
    """A self-contained HTML page with tables and charts for staff and planners.

    Example: quota --lang zh report --html report.html --plan PLAN-0001 --outlook 5
    """
    from quota import outfiles
    from quota.report import html as rep
    with failures():
        outfiles.check_target(html, ctx.obj.engine)  # refused before any work: never the database
        ahead = None
        if outlook:
            from quota.planning import outlook as ol
            ahead = ol.outlook(ctx.obj.engine, years=outlook, as_of=parse_date(as_of))
        page = rep.build(ctx.obj.engine, plan_id=plan, as_of=parse_date(as_of), lang=render.LANG["lang"], outlook=ahead)
        with outfiles.atomic_file(html, ctx.obj.engine) as fh:
            fh.write(page)
    render.done(render.msg("report_written", path=html))


app.add_typer(plan_app, name="plan")
for command in audit.COMMANDS:  # trace, verify, export: top-level commands
    app.command()(command)
app.add_typer(users.user_app, name="user")
app.command()(users.serve)


def run() -> None:
    """The console script: the app's group (core.QuotaGroup) handles usage errors, --json and closed pipes."""
    app(prog_name="quota")
