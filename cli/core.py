"""The CLI's core: global state, shared option types, dates from options, and the error edge that turns every
failure into one line (and, under --json, an error object on stdout) with an exit code."""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer

from cli import render
from quota.errors import QuotaError, Refused, ValidationFailed
from quota.store import db

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


def parse_date(value: Optional[str]) -> Optional[dt.date]:
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


def default_actor(url: str) -> str:
    """--actor, else the database user of a PostgreSQL URL, else the operating-system user."""
    if url.startswith("postgresql"):
        user = db.url_user(url)
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
        _refuse(exc, as_json)
    except db.DatabaseError as exc:  # cannot connect, permission denied, disk full, locked for too long...
        detail = " ".join(db.describe(exc).split())
        _refuse(Refused("database_error", detail=detail), as_json)
    except OSError as exc:  # an output cannot be written (no space, no permission): nothing was replaced
        path, reason = str(exc.filename or ""), exc.strerror or str(exc) or type(exc).__name__
        _refuse(Refused("cannot_write", path=path, reason=reason, errno=exc.errno), as_json)
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
        kind, detail = type(exc).__name__, " ".join(str(exc).split())
        _refuse(Refused("internal_error", kind=kind, detail=detail, file=fh.name), as_json)
    finally:
        retried = db.retries()
        if retried:
            render.note(render.msg("retried", n=len(retried), what="; ".join(retried[:3])))


def _refuse(exc: QuotaError, as_json: bool):
    """One line on stderr in the user's language (and the error object on stdout under --json); exit code 1."""
    if as_json:
        render.emit_json(exc.to_dict())
    render.refusal(exc)
    raise typer.Exit(1) from None
