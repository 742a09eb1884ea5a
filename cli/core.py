"""The CLI's core: global state, shared option types, dates from options, and the error edge that turns every
failure into one line (and, under --json, an error object on stdout) with an exit code."""
from __future__ import annotations

import contextlib
import errno
import sys
import datetime as dt
import functools
import getpass
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

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
    except ClockError as exc:
        raise OptionRefused(exc) from None


class OptionRefused(typer.BadParameter):
    """A usage error (exit 2) found by quota in an option's value, carrying the library refusal that names it, so
    it is rendered from its code and facts in the user's language like every refusal."""

    def __init__(self, refusal: QuotaError):
        self.refusal = refusal
        super().__init__(str(refusal))


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


def pipe_closed(exc: BaseException | None) -> bool:
    """True when `exc` (or what it was raised from or while handling) is a write to a closed pipe: the reader of
    stdout went away (`quota balance --json | head`), which is not an error of quota's."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BrokenPipeError) or (isinstance(exc, OSError) and exc.errno == errno.EPIPE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def failures(as_json: bool = False):
    """Turn library errors into one message on stderr and exit code 1 (and, under --json, the error object
    {"error": {"code", "message", ...}} on stdout); report automatic retries. An unexpected exception prints
    one line and where its traceback was written (QUOTA_DEBUG=1 shows the traceback instead)."""
    try:
        try:
            yield
        except Exception as exc:  # the reader of stdout went away: stop quietly, exit 0 (as `head` expects)
            if pipe_closed(exc):
                render.stdout_gone()
                raise typer.Exit(0) from None
            raise
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
            lang = render.LANG["lang"]
            render.note(render.msg("retried", n=len(retried), what=("；" if lang == "zh" else "; ").join(
                r.text(lang) if hasattr(r, "text") else str(r) for r in retried[:3])))


def _refuse(exc: QuotaError, as_json: bool):
    """One line on stderr in the user's language (and the error object on stdout under --json); exit code 1."""
    if as_json:
        render.emit_json(exc.to_dict())
    render.refusal(exc)
    raise typer.Exit(1) from None


def click_exceptions():
    """The module of the click exceptions typer raises (typer vendors its own click)."""
    return sys.modules[typer.BadParameter.__module__]


def _lang_of(argv: list[str]) -> str:
    """The language asked for by --lang or QUOTA_LANG (a usage error can come before the options are read)."""
    import os
    lang = os.environ.get("QUOTA_LANG", "en")
    for i, arg in enumerate(argv):  # a --lang that is neither en nor zh is the error itself: it does not count
        given = argv[i + 1] if arg == "--lang" and i + 1 < len(argv) else arg[7:] if arg.startswith("--lang=") else ""
        if given.strip().lower() in ("en", "zh"):
            lang = given
    return "zh" if lang.strip().lower() == "zh" else "en"


class QuotaGroup(TyperGroup):
    """The app's command group, run in one place for every caller (the console script and tests alike): a usage
    error is shown in the user's language (rendered from click's exception type and attributes, never from its
    text) and, under --json, as an error object on stdout too; a closed stdout pipe ends quietly with exit 0."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except Exception as exc:  # typer would exit 1 on a closed pipe; `| head` is no error of quota's
            if pipe_closed(exc):
                render.stdout_gone()
                raise typer.Exit(0) from None
            raise

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        click = click_exceptions()
        argv = list(sys.argv[1:] if args is None else args)
        try:
            code = super().main(args=argv, prog_name=prog_name, complete_var=complete_var, standalone_mode=False,
                                **extra)
            code = code if isinstance(code, int) else 0
            sys.stdout.flush()
        except click.NoArgsIsHelpError as exc:  # `quota` alone: its help
            exc.show()
            code = exc.exit_code
        except click.UsageError as exc:
            lang = _lang_of(argv)
            if "--json" in argv:
                refusal = getattr(exc, "refusal", None)
                render.emit_json({"error": {"code": "usage", "message": exc.format_message(),
                                            **({"refusal": refusal.code, **refusal.facts} if refusal else {})}})
            render.usage_error(exc, lang)
            code = exc.exit_code
        except click.ClickException as exc:
            exc.show()
            code = exc.exit_code
        except typer.Abort:
            code = 1
        except OSError as exc:
            if not pipe_closed(exc):
                raise
            render.stdout_gone()
            code = 0
        if standalone_mode:
            sys.exit(code)
        return code
