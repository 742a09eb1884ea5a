"""The typer app: global options, and one thin command per library call."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from sqlalchemy.exc import DBAPIError

from cli import render
from quota import db
from quota.errors import QuotaError, ValidationFailed

app = typer.Typer(no_args_is_help=True, add_completion=False, rich_markup_mode=None,
                  pretty_exceptions_show_locals=False,
                  help="quota: emissions-quota ledger and environmental-capacity planner.")
rules_app = typer.Typer(no_args_is_help=True, help="Show or load the rulebook.")
tally_app = typer.Typer(no_args_is_help=True, help="Import third-party tallies (credits).")
project_app = typer.Typer(no_args_is_help=True, help="Import and list incoming projects.")
app.add_typer(rules_app, name="rules")
app.add_typer(tally_app, name="tally")
app.add_typer(project_app, name="project")

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass
class State:
    url: str
    actor: str
    url_given: bool
    lock_timeout: Optional[float] = None

    @functools.cached_property
    def engine(self):
        return db.make_engine(self.url, self.lock_timeout)


def _date(value: Optional[str]) -> Optional[dt.date]:
    if value is None:
        return None
    from quota.clock import ClockError, parse_day
    try:
        return parse_day(value)
    except ClockError:
        raise typer.BadParameter(f"{value!r} is not a date (use YYYY-MM-DD)") from None


DateOpt = Annotated[Optional[str], typer.Option(help="Effective date YYYY-MM-DD (default: today).")]
KeyOpt = Annotated[Optional[str], typer.Option("--key", help="Idempotency key: repeating the command with "
                                               "the same key and content is a no-op that reports the first result.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


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
    if lang not in ("en", "zh"):
        raise typer.BadParameter("--lang must be en or zh")
    render.LANG["lang"] = lang
    url = url or db.DEFAULT_URL
    ctx.obj = State(url, actor or _default_actor(url), url != db.DEFAULT_URL, lock_timeout)


def _default_actor(url: str) -> str:
    """--actor, else the database user of a PostgreSQL URL, else the operating-system user."""
    if url.startswith("postgresql"):
        from sqlalchemy.engine import make_url
        user = make_url(url).username
        if user:
            return user
    try:
        return getpass.getuser()
    except Exception:  # pragma: no cover - no user database
        return "unknown"


@contextlib.contextmanager
def failures(as_json: bool = False):
    """Turn library errors into one message on stderr and exit code 1 (and, under --json, the error object
    {"error": {"code", "message", ...}} on stdout); report automatic retries. An unexpected exception prints
    one line and where its traceback was written (QUOTA_DEBUG=1 shows the traceback instead)."""
    try:
        yield
    except (typer.Exit, typer.Abort, typer.BadParameter):  # usage errors are typer's (exit code 2)
        raise
    except ValidationFailed as exc:
        if as_json:
            render.emit_json(exc.to_dict())
        render.problems(exc.problems)
        raise typer.Exit(1) from None
    except QuotaError as exc:
        if as_json:
            render.emit_json(exc.to_dict())
        render.refusal(exc)
        raise typer.Exit(1) from None
    except DBAPIError as exc:  # cannot connect, permission denied, disk full, locked for too long...
        message = f"database error: {str(exc.orig).strip() if exc.orig else exc}"
        if as_json:
            render.emit_json({"error": {"code": "database_error", "message": message}})
        render.error(message)
        raise typer.Exit(1) from None
    except OSError as exc:  # an output cannot be written (no space, no permission): nothing was replaced
        message = f"cannot write {exc.filename or 'the output'}: {exc.strerror or exc}"
        if as_json:
            render.emit_json({"error": {"code": "cannot_write", "message": message}})
        render.error(message)
        raise typer.Exit(1) from None
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:
        import os
        if os.environ.get("QUOTA_DEBUG") == "1":
            raise
        import tempfile
        import traceback
        with tempfile.NamedTemporaryFile("w", prefix="quota-crash-", suffix=".txt", delete=False) as fh:
            traceback.print_exc(file=fh)
        message = f"internal error ({type(exc).__name__}: {exc}); the traceback is in {fh.name} (QUOTA_DEBUG=1 shows it)"
        if as_json:
            render.emit_json({"error": {"code": "internal_error", "message": message}})
        render.error(message)
        raise typer.Exit(1) from None
    finally:
        if db.RETRIES:
            render.note(render.msg("retried", n=len(db.RETRIES), what="; ".join(db.RETRIES[:3])))


# --------------------------------------------------------------------------- setup

@app.command()
def init(ctx: typer.Context,
         rules: Annotated[Path, typer.Option("--rules", help="Rulebook TOML file.")]) -> None:
    """Create the schema and load the rulebook.  Example: quota init --rules data/rules.toml"""
    from quota import rulebooks
    with failures():
        result = rulebooks.init(ctx.obj.engine, str(rules), ctx.obj.actor)
    render.done(f"initialised {ctx.obj.url}: rulebook version {result['version']}"
                + ("" if result["changed"] else " (unchanged)"))


@rules_app.command("show")
def rules_show(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the rulebook in force.  Example: quota rules show --json"""
    from quota import rulebooks
    with failures(as_json), db.reading(ctx.obj.engine) as conn:
        version, book = rulebooks.current(conn)
    info = {"version": version, **rulebooks.describe(book)}
    if as_json:
        return render.emit_json(info)
    render.out.print(f"Rulebook v{version}: {book.jurisdiction_name} {book.jurisdiction_name_zh} "
                     f"({book.jurisdiction_code})")
    render.out.print(render.table("Pollutants", ["Pollutant", "Name", "Unit", "Key"],
                                  [[p["code"], f"{p['name']} {p['name_zh']}", p["unit"],
                                    f"{p['medium']} -> {info['matching'][p['medium']]}"] for p in info["pollutants"]]))
    render.out.print(render.table("Zones", ["Zone", "Name", "Key", "State"],
                                  [[z["code"], f"{z['name']} {z['name_zh']}", f"{z['watershed']} / {z['airshed']}",
                                    "non-attainment: " + ", ".join(z["non_attainment"]) if z["non_attainment"] else ""]
                                   for z in info["zones"]]))
    r = info["ratios"]
    render.out.print(f"Ratios: default {r['default']}, non-attainment {r['non_attainment']}; rules: "
                     + ("; ".join(", ".join(f"{k}={v}" for k, v in x.items() if v) for x in r["rules"]) or "none"))
    c = info["crediting"]
    render.out.print(f"Crediting: baseline {c['baseline']}, discount {c['discount']}, life {c['life_years']} years")


@rules_app.command("load")
def rules_load(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="Rulebook TOML file.")]) -> None:
    """Load a new rulebook version.  Example: quota rules load data/rules.toml"""
    from quota import rulebooks
    with failures():
        result = rulebooks.load(ctx.obj.engine, str(file), ctx.obj.actor)
    render.done(f"rulebook version {result['version']}" + ("" if result["changed"] else " (unchanged)"))


# --------------------------------------------------------------------------- imports

@tally_app.command("import")
def tally_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV or XLSX tally file.")],
                 dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
                 key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a tally file and credit every tally as a lot, all or nothing.

    Example: quota tally import data/tallies.csv
    """
    from cli.progress import reporter
    from quota import tallies
    with failures(as_json), reporter() as progress:
        result = tallies.import_tallies(ctx.obj.engine, str(file), actor=ctx.obj.actor, key=key, dry_run=dry_run,
                                        progress=progress)
    if as_json:
        return render.emit_json(result)
    title = render.msg("would_credit" if dry_run else "credited", n=result["tallies"])
    render.out.print(render.table(title, ["Pollutant", "Amount", "Unit"],
                                  [[c["pollutant"], c["amount"], c["unit"]] for c in result["credited"]],
                                  right={"Amount"}))
    for c in result.get("capped", []):  # a source credited from an earlier upgrade's emissions
        render.out.print(render.msg("capped", tally=c["tally_id"], by=c["by"], amount=c["amount"], unit=c["unit"]),
                         markup=False, highlight=False)


@project_app.command("import")
def project_import(ctx: typer.Context, file: Annotated[Path, typer.Argument(help="CSV or XLSX project file.")],
                   dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate only; write nothing.")] = False,
                   key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Validate a project file and add its projects to the pipeline, all or nothing.

    Example: quota project import data/projects.csv
    """
    from quota import projects
    with failures(as_json):
        result = projects.import_projects(ctx.obj.engine, str(file), actor=ctx.obj.actor, key=key, dry_run=dry_run)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("would_import_projects" if dry_run else "imported_projects", n=result["projects"],
                           rows=result["rows"]))


@project_app.command("list")
def project_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List projects with their requirements (ratio applied).  Example: quota project list"""
    from quota import units
    from quota.projects import project_rows
    with failures(as_json):
        rows = project_rows(ctx.obj.engine)
    if as_json:
        return render.emit_json({"projects": rows})
    render.out.print(render.table("Projects", ["Project", "Name", "Zone", "Priority", "Needed by", "State",
                                               "Pollutant", "Increment", "Ratio", "Required", "Unit"],
                                  [[p["project_id"], p["name"], p["zone"], p["priority"], p["needed_by"], p["state"],
                                    n["pollutant"], units.display(n["increment_g"], n["unit"]), n["ratio"],
                                    units.display(n["required_g"], n["unit"]), n["unit"]]
                                   for p in rows for n in p["needs"]], right={"Increment", "Required", "Ratio"}))


# --------------------------------------------------------------------------- queries

@app.command()
def balance(ctx: typer.Context,
            pollutant: Annotated[Optional[str], typer.Option(help="Only this pollutant.")] = None,
            zone: Annotated[Optional[str], typer.Option(help="Only this zone.")] = None,
            by: Annotated[str, typer.Option(help="Group by pollutant, zone or lot.")] = "pollutant",
            as_of: Annotated[Optional[str], typer.Option("--as-of", help="Balances as of this date.")] = None,
            as_json: JsonOpt = False) -> None:
    """Available, reserved and allocated quota.  Example: quota balance --by zone --pollutant COD"""
    from quota import audit
    if by not in ("pollutant", "zone", "lot"):
        raise typer.BadParameter("--by must be pollutant, zone or lot")
    with failures(as_json):
        result = audit.balance(ctx.obj.engine, by=by, pollutant=pollutant, zone=zone, as_of=_date(as_of))
    if as_json:
        return render.emit_json(result)
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
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.reserve(ctx.obj.engine, project, actor=ctx.obj.actor, pollutant=pollutant,
                                   expires=_date(expires), date=_date(date), key=key)
    _done(result, render.msg("reserved", project=project, n=len(result["draws"]), txn=result["txn"]), as_json)


@app.command()
def approve(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
            doc: Annotated[str, typer.Option("--doc", help="Approval document number.")],
            date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Confirm a project's reservations as allocations.  Example: quota approve P2026-01 --doc "金环审[2026]12号" """
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.approve(ctx.obj.engine, project, doc=doc, actor=ctx.obj.actor, date=_date(date), key=key)
    _done(result, render.msg("approved", project=project, doc=doc, txn=result["txn"]), as_json)


@app.command()
def release(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
            date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Release a project's reservations back to their lots.  Example: quota release P2026-03"""
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.release(ctx.obj.engine, project, actor=ctx.obj.actor, date=_date(date), key=key)
    _done(result, render.msg("released", project=project, txn=result["txn"]), as_json)


@app.command()
def cancel(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
           date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Withdraw a project: its reserved and allocated quota returns to the lots.  Example: quota cancel P2026-03"""
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.cancel(ctx.obj.engine, project, actor=ctx.obj.actor, date=_date(date), key=key)
    _done(result, render.msg("cancelled", project=project) + (f", txn {result['txn']}" if result["txn"] else ""),
          as_json)


@app.command()
def expire(ctx: typer.Context,
           as_of: Annotated[str, typer.Option("--as-of", help="Expire lots and reservations lapsed by this date.")],
           key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Post expired lots to expired and release lapsed reservations.  Example: quota expire --as-of 2026-12-31"""
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.expire(ctx.obj.engine, _date(as_of), actor=ctx.obj.actor, key=key)
    _done(result, render.msg("expired", lots=len(result["expired"]), res=len(result["lapsed_reservations"])),
          as_json)


@app.command()
def revoke(ctx: typer.Context, lot: Annotated[str, typer.Argument(help="Lot serial.")],
           memo: Annotated[str, typer.Option("--memo", help="Why the lot is revoked.")],
           date: DateOpt = None, key: KeyOpt = None, as_json: JsonOpt = False) -> None:
    """Revoke the unallocated part of a lot whose tally was found invalid.

    Example: quota revoke COD-2022-00001 --memo "report withdrawn"
    """
    from quota import quota_ops
    with failures(as_json):
        result = quota_ops.revoke(ctx.obj.engine, lot, actor=ctx.obj.actor, memo=memo, date=_date(date), key=key)
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
        run_demo(url, data or DATA_DIR, ctx.obj.actor, _date(today) or DEMO_TODAY,
                 fresh_default=not ctx.obj.url_given)


db_app = typer.Typer(no_args_is_help=True, help="Database administration: migrations and roles.")
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply schema migrations (Alembic) to the database.  Example: quota db upgrade"""
    from quota import migrate
    with failures():
        result = migrate.upgrade(ctx.obj.engine)
    render.done(f"schema at revision {result['to']} (was {result['from'] or 'empty'})")


@db_app.command("roles")
def db_roles(ctx: typer.Context,
             print_only: Annotated[bool, typer.Option("--print", help="Print the SQL instead of running it.")] = False,
             schema: Annotated[str, typer.Option(help="Schema to grant on (with --print).")] = "public") -> None:
    """Create PostgreSQL roles quota_auditor, quota_clerk and quota_planner with least privilege.

    Example: quota --db postgresql+psycopg://admin@db/quota db roles
    """
    from quota import roles
    if print_only:
        for sql in roles.roles_sql(schema):
            render.out.print(sql + ";", markup=False)
        return
    with failures():
        try:
            stmts = roles.create_roles(ctx.obj.engine)
        except ValueError as exc:
            render.error(str(exc))
            raise typer.Exit(1) from None
    render.done(f"created/granted {', '.join(roles.ROLES)} ({len(stmts)} statements)")


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
    from quota import outfiles, report as rep
    with failures():
        outfiles.check_target(html, ctx.obj.engine)  # refused before any work: never the database
        ahead = None
        if outlook:
            from quota import outlook as ol
            ahead = ol.outlook(ctx.obj.engine, years=outlook, as_of=_date(as_of))
        page = rep.build(ctx.obj.engine, plan_id=plan, as_of=_date(as_of), lang=render.LANG["lang"], outlook=ahead)
        with outfiles.atomic_file(html, ctx.obj.engine) as fh:
            fh.write(page)
    render.done(render.msg("report_written", path=html))


from cli.plan import plan_app  # noqa: E402  (after app, to register the sub-commands)
from cli import audit as _audit  # noqa: E402,F401  (registers trace, verify, export)

app.add_typer(plan_app, name="plan")


def run() -> None:
    app(prog_name="quota")
from cli import users as _users  # noqa: E402,F401  (registers user add/list/disable/token and serve)
