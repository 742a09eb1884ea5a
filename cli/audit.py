"""Auditor commands: trace (source statement), verify (database or export file), export."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import render
from cli.core import JsonOpt, OptionRefused, failures, parse_date
from quota.errors import Refused

FORMATS = ("jsonl", "csv", "xlsx", "parquet", "beancount")


def trace(ctx: typer.Context, project: Annotated[str, typer.Argument(help="Project id.")],
          fmt: Annotated[Optional[str], typer.Option("--format", help="Source statement as md, html or xlsx.")] = None,
          out: Annotated[Optional[Path], typer.Option(help="Write the statement to this file.")] = None,
          as_json: JsonOpt = False) -> None:
    """Source statement: lots, tallies, sources and report numbers behind a project.

    Example: quota trace P2026-01 --format html --out P2026-01.html
    """
    from quota.audit import trace as audit
    from quota.audit import statement
    if fmt is not None and fmt not in ("md", "html", "xlsx"):
        raise OptionRefused(Refused("bad_option", option="format", value=fmt, known=["md", "html", "xlsx"]))
    if fmt == "xlsx" and out is None:
        raise OptionRefused(Refused("bad_option", option="format", value=fmt, reason="needs_out"))
    with failures(as_json):
        if fmt:
            statement.write_statement(ctx.obj.engine, project, fmt, sys.stdout, str(out) if out else None,
                                      lang=render.LANG["lang"])
            if out:
                render.note(render.msg("statement_written", path=out))
            return
        result = audit.trace(ctx.obj.engine, project)
    if as_json:
        return render.emit_json(result)
    render.trace(result)


def verify(ctx: typer.Context,
           export: Annotated[Optional[Path], typer.Option("--export", help="Verify an export offline (no database): "
                                                          "a JSONL file, a .beancount file, or a CSV/Parquet "
                                                          "folder (checked against its manifest.json).")] = None,
           expect_head: Annotated[Optional[str], typer.Option(
               "--expect-head", help="Fail unless the chain ends at this hash (kept elsewhere, e.g. an earlier "
                                     "export's final hash): catches transactions removed from the end.")] = None,
           as_json: JsonOpt = False) -> None:
    """Recompute the hash chain and every balance, and check the tables against what the chain committed;
    exit 1 on any mismatch.

    Example: quota verify --export ledger.jsonl --expect-head 4212ccff…
    """
    from cli.progress import reporter
    from quota.audit import trace as audit
    from quota.audit import jsonl as exp
    with failures(as_json), reporter() as progress:
        if export is not None and export.is_dir():
            from quota.audit import table_export
            summary, problems = table_export.verify_tables(str(export), expect_head)
        elif export is not None and export.suffix in (".beancount", ".bean"):
            from quota.audit import beancount_export
            summary, problems = beancount_export.verify_beancount(str(export), expect_head)
        elif export is not None:
            summary, problems = exp.verify_export(str(export), progress, expect_head)
        else:
            summary, problems = audit.verify(ctx.obj.engine, progress, expect_head)
    if as_json:
        render.emit_json({**summary, "problems": [p.to_dict() for p in problems]})
    if problems:
        render.problems(problems, "verify_failed")
        raise typer.Exit(1)
    if not as_json:
        if summary.get("unchecked_stubs"):
            render.note(f"warning: {summary['unchecked_stubs']} stub(s) of this quota-chain-v1 export carry no date: "
                        "that they lie after its as-of date cannot be checked")
        what = render.msg("export_file", path=export) if export else render.msg("ledger")
        render.out.print(render.msg("verified", what=what, txns=summary["transactions"], posts=summary["postings"],
                                    accts=summary["accounts"], head=summary.get("head") or summary.get("final_hash"),
                                    scheme=summary["hash_scheme"]))


def export(ctx: typer.Context,
           fmt: Annotated[str, typer.Option("--format", help="jsonl, csv, xlsx, parquet or beancount.")],
           out: Annotated[Path, typer.Option(help="Output file (jsonl, xlsx, beancount) or folder (csv, parquet, "
                                                  "with manifest.json); written whole or not at all, never over "
                                                  "a database.")],
           as_of: Annotated[Optional[str], typer.Option("--as-of", help="The ledger as it stood on this date.")] = None
           ) -> None:
    """Export the ledger for auditors.  Example: quota export --format jsonl --out ledger.jsonl"""
    if fmt not in FORMATS:
        raise OptionRefused(Refused("bad_option", option="format", value=fmt, known=list(FORMATS)))
    from quota.audit import beancount_export
    from quota.audit import jsonl as exp
    from quota.audit import table_export
    from cli.progress import reporter
    day = parse_date(as_of)
    from quota import outfiles
    engine = ctx.obj.engine
    with failures(), reporter() as progress:
        # every file is written beside its target and renamed into place when complete (quota.outfiles):
        # a failure leaves an earlier export untouched; the database file is never a target
        if fmt == "jsonl":
            with outfiles.atomic_file(out, engine) as fh:
                end = exp.write_jsonl(engine, fh, day, progress)
            render.done(render.msg("exported_jsonl", txns=end["transactions"], posts=end["postings"], path=out))
        elif fmt == "beancount":
            with outfiles.atomic_file(out, engine) as fh:
                info = beancount_export.write_beancount(engine, fh, day)
            render.done(render.msg("exported_beancount", txns=info["transactions"], accts=info["accounts"], path=out,
                                   day=info["date"]))
        else:
            files = table_export.write_tables(engine, fmt, str(out), day, lang=render.LANG["lang"])
            render.done(render.msg("exported_files", n=len(files), path=out)
                        + (render.msg("with_manifest") if fmt != "xlsx" else ""))


COMMANDS = [trace, verify, export]
