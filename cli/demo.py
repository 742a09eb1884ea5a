"""`quota demo`: the sample district from data/, walked through end to end."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from cli import render
from quota.audit import trace
from quota.ledger import balances
from quota.store import db
from quota.intake import project_files
from quota.ledger import operations
from quota.rules import versions
from quota.intake import tallies
from quota.errors import Problem, QuotaError, Refused, ValidationFailed


def _fresh_sqlite(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


# The demo's day: the sample lots (vintages 2021-2025, life 5 years) and projects (needed 2027) tell their story
# on it, whatever the calendar says. `quota demo --today DATE` runs it on another day.
DEMO_TODAY = dt.date(2026, 11, 30)
DEMO_FILES = ("rules.toml", "tallies.csv", "projects.csv")


def run_demo(url: str, data: Path, actor: str, today: dt.date, fresh_default: bool) -> None:
    """Walk the sample district through on `today`: the library's clock is pinned to it for the run (QUOTA_TODAY),
    so every default date, expiry and balance is as of that day."""
    import os
    pinned = os.environ.get("QUOTA_TODAY")
    os.environ["QUOTA_TODAY"] = today.isoformat()
    try:
        _run(url, data, actor, today, fresh_default)
    finally:
        os.environ.pop("QUOTA_TODAY")
        if pinned is not None:
            os.environ["QUOTA_TODAY"] = pinned


def _run(url: str, data: Path, actor: str, today: dt.date, fresh_default: bool) -> None:
    missing = [Problem.of(str(data / name), 0, "", "is_directory" if (data / name).is_dir() else "file_not_found")
               for name in DEMO_FILES if not (data / name).is_file()]
    if missing:  # refused before any database is opened or replaced
        raise ValidationFailed(missing)
    if fresh_default:
        _fresh_sqlite(url)
    engine = db.make_engine(url)
    if db.schema_exists(engine):
        raise Refused("not_fresh", url=url)
    render.out.rule(f"quota demo — {url}, today {today}")
    version = versions.init(engine, str(data / "rules.toml"), actor)["version"]
    render.out.print(f"$ quota init --rules {data / 'rules.toml'}   → rulebook v{version}")
    t = tallies.import_tallies(engine, str(data / "tallies.csv"), actor=actor)
    render.out.print(f"$ quota tally import tallies.csv   → {t['tallies']} tallies credited as {len(t['lots'])} lots")
    p = project_files.import_projects(engine, str(data / "projects.csv"), actor=actor)
    render.out.print(f"$ quota project import projects.csv   → {p['projects']} projects in the pipeline")
    render.out.print()
    render.balances(balances.balance(engine, as_of=None) | {"as_of": today.isoformat()})
    pid = "P2026-01"
    r = operations.reserve(engine, pid, actor=actor, date=today, expires=today + dt.timedelta(days=90))
    render.out.print(f"\n$ quota reserve {pid}   → {len(r['draws'])} draws reserved (transaction {r['txn']})")
    a = operations.approve(engine, pid, doc="金环审〔2026〕12号", actor=actor, date=today)
    render.out.print(f"$ quota approve {pid} --doc 金环审〔2026〕12号   → approved (transaction {a['txn']})")
    try:
        operations.reserve(engine, "P2026-04", actor=actor, date=today)
    except QuotaError as exc:
        render.out.print(f"$ quota reserve P2026-04   → refused: {exc}")
    render.out.print()
    render.trace(trace.trace(engine, pid))
    render.out.print()
    render.balances(balances.balance(engine, by="zone", pollutant="COD"))
    plan_id = _plan(engine, today, actor)
    from quota import outfiles
    from quota.report import html as report
    page = Path("quota-demo-report.html")
    html = report.build(engine, plan_id=plan_id, as_of=today, lang=render.LANG["lang"])
    with outfiles.atomic_file(page, engine) as fh:
        fh.write(html)
    render.out.print(f"\n$ quota report --html {page} --plan {plan_id}   → open it in a browser")
    summary, problems = trace.verify_and_record(engine, actor)  # recorded, as `quota verify` records it
    status = "verified" if not problems else f"{len(problems)} PROBLEMS"
    render.out.print(f"\n$ quota verify   → {status}: {summary['transactions']} transactions, "
                     f"{summary['postings']} postings, head {summary['head'][:16]}…")
    render.out.print(f"\nThe demo ledger is in {url}; try: quota --db {url} balance --by lot")


def _plan(engine, today: dt.date, actor: str) -> str:
    """Run the planner on the pipeline (as `quota plan run`) and print the plan; returns its id."""
    from quota.planning import plans
    result = plans.run_plan(engine, as_of=today, actor=actor)
    render.out.print(f"\n$ quota plan run --as-of {today}")
    render.plan(result)
    return result["plan_id"]
