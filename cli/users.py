"""`quota user ...` (the web workspace's people) and `quota serve` (the web workspace itself)."""
from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from cli import render
from cli.core import JsonOpt, failures

user_app = typer.Typer(no_args_is_help=True, help="Users of the web workspace (quota serve): add, list, disable, "
                                                  "passwords, sessions, API tokens.")


@user_app.command("add")
def user_add(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name (a-z, 0-9, . _ -).")],
             role: Annotated[str, typer.Option("--role", help="clerk, planner, auditor or admin.")],
             password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from the "
                                                          "first line of stdin instead of a prompt.")] = False,
             as_json: JsonOpt = False) -> None:
    """Add a user; the password (at least 10 characters) is asked twice, or read from stdin, and stored as an
    Argon2 hash.  Example: quota user add wang --role clerk"""
    from quota.store import users
    password = _password(password_stdin)
    with failures(as_json):
        result = users.add_user(ctx.obj.engine, name, role, password)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("user_added", name=result["name"], role=result["role"]))


@user_app.command("list")
def user_list(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """List users with their role and state (never a password).  Example: quota user list"""
    from quota.store import users
    with failures(as_json):
        result = users.list_users(ctx.obj.engine)
    if as_json:
        return render.emit_json(result)
    render.out.print(render.table(None, ["User", "Role", "Created", "Disabled", "Tokens"],
                                  [[u["name"], u["role"], u["created_at"], u["disabled_at"] or "", u["tokens"]]
                                   for u in result["users"]]))


@user_app.command("disable")
def user_disable(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
                 as_json: JsonOpt = False) -> None:
    """Shut a user out: logins, open sessions and API tokens stop working.  Example: quota user disable wang"""
    from quota.store import users
    with failures(as_json):
        result = users.disable_user(ctx.obj.engine, name)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("user_disabled", name=result["name"]))


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@user_app.command("password")
def user_password(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
                  password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from "
                                                               "the first line of stdin instead of a prompt.")] = False,
                  as_json: JsonOpt = False) -> None:
    """Set a user's password (asked twice, or read from stdin): the lock-out after failed sign-ins is lifted and
    every session of the user ends.  Example: quota user password wang"""
    from quota.store import users
    password = _password(password_stdin)
    with failures(as_json):
        result = users.reset_password(ctx.obj.engine, name, password)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("user_password_set", name=result["name"], n=result["sessions_ended"]))


@user_app.command("signout")
def user_signout(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
                 as_json: JsonOpt = False) -> None:
    """End every signed-in session of a user (sign out everywhere).  Example: quota user signout wang"""
    from quota.store import users
    with failures(as_json):
        result = users.end_sessions(ctx.obj.engine, name)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("user_signed_out", name=result["name"], n=result["sessions_ended"]))


@user_app.command("sessions")
def user_sessions(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
                  as_json: JsonOpt = False) -> None:
    """List a user's live web sessions: id, signed in, expires, address, browser (never the cookie).
    Example: quota user sessions wang"""
    from quota.store import users
    with failures(as_json):
        result = users.list_sessions(ctx.obj.engine, name)
    if as_json:
        return render.emit_json(result)
    render.out.print(render.table(None, ["Id", "Created", "Expires", "Client", "Browser"],
                                  [[s["id"], s["created_at"], s["expires_at"], s["client"], s["agent"]]
                                   for s in result["sessions"]]))


@user_app.command("token")
def user_token(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
               label: Annotated[Optional[str], typer.Option("--label", help="What the token is for (shown by "
                                                                  "`quota user tokens`).")] = None,
               as_json: JsonOpt = False) -> None:
    """Print a new API token for the user, once (only its hash is kept).  Example: quota user token wang --label nightly"""
    from quota.store import users
    with failures(as_json):
        result = users.new_token(ctx.obj.engine, name, label)
    if as_json:
        return render.emit_json(result)
    render.done(result["token"])


@user_app.command("tokens")
def user_tokens(ctx: typer.Context, name: Annotated[Optional[str], typer.Argument(help="Login name (default: "
                                                                                  "every user's).")] = None,
                as_json: JsonOpt = False) -> None:
    """List API tokens: id, user, label, created (never the token).  Example: quota user tokens wang"""
    from quota.store import users
    with failures(as_json):
        result = users.list_tokens(ctx.obj.engine, name)
    if as_json:
        return render.emit_json(result)
    render.out.print(render.table(None, ["Id", "User", "Label", "Created"],
                                  [[k["id"], k["name"], k["label"] or "", k["created_at"]] for k in result["tokens"]]))


@user_app.command("revoke-token")
def user_revoke_token(ctx: typer.Context, name: Annotated[str, typer.Argument(help="Login name.")],
                      token_id: Annotated[str, typer.Argument(help="The token's id (quota user tokens).")],
                      as_json: JsonOpt = False) -> None:
    """Revoke one API token of a user; it stops working at once.  Example: quota user revoke-token wang 3f2a9c01b7d4"""
    from quota.store import users
    with failures(as_json):
        result = users.revoke_token(ctx.obj.engine, name, token_id)
    if as_json:
        return render.emit_json(result)
    render.done(render.msg("user_token_revoked", name=result["name"], id=result["id"]))


def serve(ctx: typer.Context,
          url: Annotated[Optional[str], typer.Option("--db", help="Database URL (as the global --db, which it "
                                                                  "overrides).")] = None,
          host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only; put a "
                                                 "reverse proxy with TLS in front for a bureau).")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="Port.")] = 8000,
          workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes, each listening on a socket of "
                                                "its own (SO_REUSEPORT: the kernel spreads new connections over "
                                                "them).")] = 1,
          public: Annotated[bool, typer.Option("--public", help="Also serve the public registry page (no login, "
                                                                "read-only).")] = False) -> None:
    """Run the web workspace (quota serve).  Example: quota --db postgresql+psycopg://quota@db/quota serve --workers 2"""
    import os
    from quota.store import db
    url = url or ctx.obj.url
    with failures():
        from web.app import check_database
        check_database(db.make_engine(url) if url != ctx.obj.url else ctx.obj.engine)  # refused before listening
    os.environ["QUOTA_DB"] = url
    os.environ["QUOTA_PUBLIC"] = "1" if public else ""
    from web import serving
    serving.run("web.app:app_from_env", host=host, port=port, workers=workers,
                proxy_headers=True, forwarded_allow_ips="127.0.0.1", access_log=False, log_level="info")
