"""HTML pages: each route names its action (quota.users.ACTIONS), calls one library function and renders it.

Writes are POST forms with the session's CSRF token and an idempotency key made when the form was shown
(the CLI's --key), answered with a redirect (post/redirect/get): a double click or a reload posts once.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import re
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response
from markupsafe import Markup

from quota.audit import trace as audit
from quota.ledger import balances, operations as quota_ops, projects
from quota.planning import plans
from quota.report import catalogue as i18n, html as report
from quota.store import db, users
from quota.clock import parse_day
from quota.errors import Refused, ValidationFailed
from web.app import cached, cached_read, check_csrf, current_user, csrf_token, engine_of, need, page, read_row, redirect, refusal_view

router = APIRouter(include_in_schema=False)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
LOTS_PER_PAGE = 50
OUTLOOK_SECONDS = 5.0  # the solver's time limit for one view of /outlook (the whole horizon is one solve)


def _day(value: Optional[str], what: str = "date") -> Optional[dt.date]:
    return parse_day(value, what) if value else None


def _text(value: Optional[str]) -> Optional[str]:
    value = (value or "").strip()
    return value or None


# --------------------------------------------------------------------------- sign in, language

@router.get("/login")
def login_form(request: Request):
    if current_user(request) is not None:
        return RedirectResponse("/", status_code=303)
    return page(request, "login.html", {"error": None})


@router.post("/login", dependencies=[Depends(check_csrf)])
async def login(request: Request, username: str = Form(""), password: str = Form("")):
    client = request.client.host if request.client else None
    result = await run_in_threadpool(users.authenticate, engine_of(request), username, password, None, client)
    if result.delay_s and request.app.state.throttle:
        await asyncio.sleep(result.delay_s)  # slows guessing down without holding a worker thread
    if result.user is None:
        lang = request.state.lang
        message = i18n.t(f"web_login_{result.reason}", lang, until=(result.locked_until or "")[:16].replace("T", " "))
        return page(request, "login.html", {"error": message, "username": username},
                    429 if result.reason in ("locked", "address_locked") else 401)
    sid = await run_in_threadpool(users.open_session, engine_of(request), result.user.name, client,
                                  request.headers.get("user-agent"))
    session = request.state.session
    session.clear()  # a new session (and CSRF token) at sign-in: no fixation
    session["s"], session["u"] = sid, result.user.name
    request.state.user = result.user
    csrf_token(request)
    return RedirectResponse("/", status_code=303)


@router.post("/logout", dependencies=[Depends(check_csrf)])
def logout(request: Request):
    users.end_session(engine_of(request), request.state.session.get("s") or "")
    request.state.session.clear()
    return RedirectResponse("/login", status_code=303)


# --------------------------------------------------------------------------- your account

def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


@router.get("/account")
def account(request: Request, user=Depends(need("own_account"))):
    """Your password and your signed-in sessions (each can be ended; or all, everywhere)."""
    sid = request.state.session.get("s") or ""
    return page(request, "account.html", {"sessions": users.list_sessions(engine_of(request), user.name)["sessions"],
                                          "current": users.session_handle(sid)})


@router.post("/account/password", dependencies=[Depends(check_csrf)])
def change_password(request: Request, old: str = Form(""), new: str = Form(""), repeat: str = Form(""),
                    user=Depends(need("own_account"))):
    result = users.change_password(engine_of(request), user.name, old, new, repeat=repeat,
                                   keep_session=request.state.session.get("s"), client=_client(request))
    return redirect("/account", i18n.t("user_password_changed", request.state.lang, name=result["name"],
                                       n=result["sessions_ended"]), request)


@router.post("/account/sessions/{session_id}/end", dependencies=[Depends(check_csrf)])
def end_session(request: Request, session_id: str, user=Depends(need("own_account"))):
    result = users.end_sessions(engine_of(request), user.name, session_id)
    if session_id == users.session_handle(request.state.session.get("s") or ""):
        request.state.session.clear()  # that was this session
        return RedirectResponse("/login", status_code=303)
    return redirect("/account", i18n.t("user_signed_out", request.state.lang, name=result["name"],
                                       n=result["sessions_ended"]), request)


@router.post("/account/signout-everywhere", dependencies=[Depends(check_csrf)])
def sign_out_everywhere(request: Request, user=Depends(need("own_account"))):
    users.end_sessions(engine_of(request), user.name)
    request.state.session.clear()
    return RedirectResponse("/login", status_code=303)


@router.get("/lang/{lang}")
def switch_language(request: Request, lang: str, next: str = "/"):
    target = next if next.startswith("/") and not next.startswith("//") else "/"
    response = RedirectResponse(target, status_code=303)
    if lang in i18n.LANGS:
        response.set_cookie("quota_lang", lang, max_age=365 * 86400, samesite="strict", httponly=True,
                            secure=request.url.scheme == "https")
    return response


# --------------------------------------------------------------------------- overview, lots

@router.get("/")
async def overview(request: Request, as_of: Optional[str] = None, user=Depends(need("read_balance", db.HEAD_SQL, audit.LAST_VERIFICATION_SQL))):
    ledger = await cached_read(request, _overview_ledger, as_of=_day(as_of, "as-of date"), lang=request.state.lang,
                               templates=request.app.state.templates)
    verified = audit.verification_of(await read_row(request, audit.LAST_VERIFICATION_SQL))
    return page(request, "overview.html", {"ledger": ledger, "verified": verified, "as_of": as_of or ""})


def _overview_ledger(engine, *, as_of: Optional[dt.date], lang: str, templates) -> Markup:
    """The overview's ledger part (report.overview: balances and their chart, lots expiring, the chain head) as
    HTML, made once per ledger state, as-of date and language and kept in the read cache: most of a view's work
    was rendering it (about 180 numbers and the chart), the same for every user until the next write."""
    o = report.overview(engine, as_of=as_of, lang=lang)
    return Markup(templates.get_template("overview_ledger.html").render(
        o=o, lang=lang, t=lambda key, **kw: i18n.t(key, lang, **kw), h=lambda text: i18n.header(text, lang)))


@router.get("/lots")
def lots(request: Request, pollutant: Optional[str] = None, zone: Optional[str] = None, state: Optional[str] = None,
         expires_before: Optional[str] = None, page_no: int = Query(1, alias="page", ge=1),
         user=Depends(need("read_lots"))):
    result = balances.lot_page(engine_of(request), pollutant=_text(pollutant), zone=_text(zone), state=_text(state),
                               expires_before=_day(_text(expires_before), "expires before"),
                               offset=(page_no - 1) * LOTS_PER_PAGE, limit=LOTS_PER_PAGE)
    total = result["total"]
    return page(request, "lots.html", {
        "rows": result["rows"], "total": total, "page_no": page_no,
        "pages": max(1, -(-total // LOTS_PER_PAGE)), "as_of": result["as_of"],
        "f": {"pollutant": pollutant or "", "zone": zone or "", "state": state or "",
              "expires_before": expires_before or ""},
        "query": "&".join(f"{k}={quote(v)}" for k, v in (("pollutant", pollutant), ("zone", zone), ("state", state),
                                                         ("expires_before", expires_before)) if v)})


@router.get("/lots/{serial}")
def lot(request: Request, serial: str, user=Depends(need("read_lots"))):
    return page(request, "lot.html", {"lot": audit.lot_detail(engine_of(request), serial)})


# --------------------------------------------------------------------------- projects

STATES = ("pipeline", "reserved", "approved", "cancelled")


@router.get("/projects")
def project_list(request: Request, state: Optional[str] = None, user=Depends(need("read_projects"))):
    rows = projects.project_rows(engine_of(request), state=state if state in STATES else None)
    return page(request, "projects.html", {"rows": rows, "state": state or "", "states": STATES})


@router.get("/projects/{project_id}")
def project(request: Request, project_id: str, user=Depends(need("read_projects"))):
    return page(request, "project.html", {"s": audit.trace(engine_of(request), project_id)})


@router.post("/projects/{project_id}/reserve", dependencies=[Depends(check_csrf)])
def reserve(request: Request, project_id: str, key: str = Form(...), pollutant: str = Form(""),
            expires: str = Form(""), confirm: str = Form(""), shown: str = Form(""), user=Depends(need("reserve"))):
    """Without `confirm`: the draws the reservation would take (dry run), and a form to confirm them (same key,
    and the draws' digest: if the ledger changed meanwhile so that other draws would be taken, the confirmation
    is refused). With `confirm`: the reservation, once per key."""
    engine = engine_of(request)
    args = dict(actor=user.name, pollutant=_text(pollutant), expires=_day(_text(expires), "lapse date"))
    if not confirm:
        preview = quota_ops.reserve(engine, project_id, dry_run=True, **args)
        return page(request, "reserve_preview.html", {
            "p": audit.trace(engine, project_id), "preview": preview, "key": key, "pollutant": pollutant,
            "expires": expires, "shown": quota_ops.movements_digest(preview)})
    result = quota_ops.reserve(engine, project_id, key=key, shown=_text(shown), **args)
    message = i18n.t("reserved", request.state.lang, project=result["project_id"], n=len(result["draws"]),
                     txn=result["txn"]) + (i18n.t("replayed", request.state.lang) if result["replayed"] else "")
    return redirect(f"/projects/{quote(result['project_id'])}", message, request)


@router.post("/projects/{project_id}/approve", dependencies=[Depends(check_csrf)])
def approve(request: Request, project_id: str, key: str = Form(...), doc: str = Form(""),
            user=Depends(need("approve"))):
    result = quota_ops.approve(engine_of(request), project_id, doc=doc, actor=user.name, key=key)
    message = i18n.t("approved", request.state.lang, project=result["project_id"], doc=doc, txn=result["txn"])
    return redirect(f"/projects/{quote(result['project_id'])}", _replayed(message, result, request), request)


@router.post("/projects/{project_id}/release", dependencies=[Depends(check_csrf)])
def release(request: Request, project_id: str, key: str = Form(...), user=Depends(need("release"))):
    result = quota_ops.release(engine_of(request), project_id, actor=user.name, key=key)
    message = i18n.t("released", request.state.lang, project=result["project_id"], txn=result["txn"])
    return redirect(f"/projects/{quote(result['project_id'])}", _replayed(message, result, request), request)


@router.post("/projects/{project_id}/cancel", dependencies=[Depends(check_csrf)])
def cancel(request: Request, project_id: str, key: str = Form(...), user=Depends(need("cancel"))):
    result = quota_ops.cancel(engine_of(request), project_id, actor=user.name, key=key)
    message = i18n.t("cancelled", request.state.lang, project=result["project_id"])
    return redirect(f"/projects/{quote(result['project_id'])}", _replayed(message, result, request), request)


def _replayed(message: str, result: dict, request: Request) -> str:
    return message + (i18n.t("replayed", request.state.lang) if result.get("replayed") else "")


@router.get("/projects/{project_id}/statement.{fmt}")
def statement(request: Request, project_id: str, fmt: str, user=Depends(need("read_statement"))):
    """The source statement (总量来源说明) as Markdown or HTML, for the approval file."""
    from quota.audit import statement as st
    if fmt not in ("md", "html", "xlsx"):
        return Response(status_code=404)
    s = st.statement(engine_of(request), project_id, request.state.lang)
    if fmt == "xlsx":
        with tempfile.TemporaryDirectory() as tmp:
            st.to_xlsx(s, str(Path(tmp) / "statement.xlsx"))
            body, media = (Path(tmp) / "statement.xlsx").read_bytes(), XLSX
    else:
        body, media = (st.to_markdown(s), "text/markdown") if fmt == "md" else (st.to_html(s), "text/html")
    return Response(body, media_type=media if fmt == "xlsx" else f"{media}; charset=utf-8", headers={
        "Content-Disposition": f"attachment; filename=\"statement-{quote(s.get('project_id', project_id))}.{fmt}\""})


# --------------------------------------------------------------------------- plans

@router.get("/plans")
def plan_list(request: Request, user=Depends(need("read_plans"))):
    return page(request, "plans.html", {"plans": plans.list_plans(engine_of(request))["plans"]})


@router.post("/plans", dependencies=[Depends(check_csrf)])
async def plan_run(request: Request, as_of: str = Form(""), time_limit: float = Form(10.0), key: str = Form(...),
                   scenario: Optional[UploadFile] = File(None), user=Depends(need("run_plan"))):
    """Solve a plan (time limit at most 60 s), with an optional scenario (TOML) uploaded with the form; the
    form's idempotency key makes a double submit store one plan (the second is shown the first's)."""
    day = _day(_text(as_of), "as-of date")
    data = await scenario.read(MAX_UPLOAD + 1) if scenario is not None and scenario.filename else b""
    if len(data) > MAX_UPLOAD:
        raise Refused("bad_upload", reason="too_large", max_mb=MAX_UPLOAD // 2**20)
    with tempfile.TemporaryDirectory() as tmp:
        path = None
        if data:
            path = Path(tmp) / "scenario.toml"
            path.write_bytes(data)
        result = await run_in_threadpool(lambda: plans.run_plan(engine_of(request), as_of=day, actor=user.name,
                                                                scenario_path=str(path) if path else None,
                                                                time_limit=min(time_limit, 60.0), key=key))
    return redirect(f"/plans/{quote(result['plan_id'])}", None, request)


@router.get("/plans/{plan_id}")
def plan(request: Request, plan_id: str, user=Depends(need("read_plans"))):
    view = report.plan_view(engine_of(request), plan_id, request.state.lang)
    return page(request, "plan.html", {"p": view["plan"], "chart": view["chart"], "flow": view["flow"]})


@router.get("/outlook")
async def outlook(request: Request, years: int = Query(5, ge=1, le=10), as_of: Optional[str] = None,
                  user=Depends(need("read_plans"))):
    """The CLI's `quota plan outlook`: year by year, the quota left at each year's end and the demand a plan
    cannot fund, per pollutant and key (at most 10 years; one solve for the whole horizon, limited to
    OUTLOOK_SECONDS). Kept in the app's read cache by the ledger's state: the same view again before the next
    write is not solved again; one whose solve the time limit stopped (outlook.settled) is solved again."""
    from quota.planning import outlook as ahead
    day = _day(_text(as_of), "as-of date")
    result = await run_in_threadpool(cached, request, ahead.outlook, keep=ahead.settled, years=years, as_of=day,
                                     time_limit=OUTLOOK_SECONDS)
    return page(request, "outlook.html", {"o": result, "chart": report.outlook_view(result, request.state.lang),
                                          "years": years, "as_of": as_of or ""})


@router.get("/plans/{plan_id}/plan.xlsx")
def plan_xlsx(request: Request, plan_id: str, user=Depends(need("read_plans"))):
    """The plan as the CLI's `plan run --out` writes it: summary, draws, unfunded and shadow prices sheets."""
    result = plans.get_plan(engine_of(request), plan_id)
    with tempfile.TemporaryDirectory() as tmp:
        plans.write_plan_files(result, str(Path(tmp) / "plan"))
        body = (Path(tmp) / "plan" / "plan.xlsx").read_bytes()
    return Response(body, media_type=XLSX,
                    headers={"Content-Disposition": f"attachment; filename=\"{quote(result['plan_id'])}.xlsx\""})


@router.post("/plans/{plan_id}/apply", dependencies=[Depends(check_csrf)])
def plan_apply(request: Request, plan_id: str, key: str = Form(...), user=Depends(need("apply_plan"))):
    result = plans.apply_plan(engine_of(request), plan_id, actor=user.name, key=key)
    plan_id = result.get("plan_id", plan_id)  # as the ledger names it (the address may be a look-alike)
    message = i18n.t("applied", request.state.lang, id=plan_id, n=len(result.get("reserved", result.get("projects", []))))
    return redirect(f"/plans/{quote(plan_id)}", _replayed(message, result, request), request)


# --------------------------------------------------------------------------- audit

@router.get("/audit")
def history(request: Request, project: Optional[str] = None, lot: Optional[str] = None, since: Optional[str] = None,
            until: Optional[str] = None, before: Optional[int] = None, user=Depends(need("read_history"))):
    result = audit.history(engine_of(request), project_id=_text(project), lot=_text(lot),
                           since=_day(_text(since), "from date"), until=_day(_text(until), "to date"), before_seq=before)
    return page(request, "audit.html", {"rows": result["transactions"], "f": {
        "project": project or "", "lot": lot or "", "since": since or "", "until": until or ""}})


@router.post("/audit/verify", dependencies=[Depends(check_csrf)])
def verify(request: Request, user=Depends(need("verify"))):
    engine = engine_of(request)
    summary, problems = audit.verify_and_record(engine, user.name)
    return page(request, "verify.html", {"summary": summary, "problems": [str(p) for p in problems]},
                200 if not problems else 409)


@router.get("/audit/export.{fmt}")
def export(request: Request, fmt: str, as_of: Optional[str] = None, user=Depends(need("export"))):
    """The ledger as JSONL (verifiable offline with `quota verify --export`), Beancount, an XLSX workbook, or the
    CSV or Parquet folder (with its manifest.json) as a zip file."""
    import io
    day = _day(_text(as_of), "as-of date")
    out = io.StringIO()
    if fmt in ("xlsx", "csv.zip", "parquet.zip"):
        from quota.audit import table_export
        kind = fmt.split(".")[0]
        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / ("ledger.xlsx" if kind == "xlsx" else "ledger")
            table_export.write_tables(engine_of(request), kind, str(target), day, lang=request.state.lang)
            if kind == "xlsx":
                body, media = target.read_bytes(), XLSX
            else:
                body, media = Path(shutil.make_archive(str(target), "zip", target)).read_bytes(), "application/zip"
        return Response(body, media_type=media,
                        headers={"Content-Disposition": f"attachment; filename=\"ledger.{fmt}\""})
    if fmt == "jsonl":
        from quota.audit import jsonl as exp
        exp.write_jsonl(engine_of(request), out, day)
    elif fmt == "beancount":
        from quota.audit import beancount_export
        beancount_export.write_beancount(engine_of(request), out, day)
    else:
        return Response(status_code=404)
    return Response(out.getvalue(), media_type="text/plain; charset=utf-8",
                    headers={"Content-Disposition": f"attachment; filename=\"ledger.{fmt}\""})


# --------------------------------------------------------------------------- public registry (--public)

def public_registry(request: Request, page_no: int = Query(1, alias="page", ge=1, le=10**6)):
    """Lots and approved allocations with their approval documents, a page at a time: no sign-in, read-only
    (环境信息公开). Served only when the server runs with --public."""
    return page(request, "public.html", {"r": audit.public_registry(engine_of(request), page_no)})


# --------------------------------------------------------------------------- admin

def _admin_page(request: Request, token: dict | None = None):
    from quota.rules import versions
    engine = engine_of(request)
    return page(request, "admin.html", {"users": users.list_users(engine)["users"], "roles": users.ROLES,
                                        "token": token, "tokens": users.list_tokens(engine)["tokens"],
                                        "rules": versions.show(engine)})


@router.get("/admin")
def admin(request: Request, user=Depends(need("manage_users"))):
    return _admin_page(request)


@router.post("/admin/rules", dependencies=[Depends(check_csrf)])
async def load_rules(request: Request, file: UploadFile = File(...), user=Depends(need("load_rules"))):
    """Load a new rulebook version from an uploaded TOML file (refused, with its problems, if it drops a
    pollutant or zone in use)."""
    from quota.rules import versions
    data = await file.read(MAX_UPLOAD + 1)
    if len(data) > MAX_UPLOAD:
        raise Refused("bad_upload", reason="too_large", max_mb=MAX_UPLOAD // 2**20)
    name = _upload_name(file.filename, "rules.toml")
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / name).write_bytes(data)
        result = await run_in_threadpool(versions.load, engine_of(request), str(Path(tmp) / name), user.name)
    message = i18n.t("web_rules_loaded", request.state.lang, version=result["version"]) + (
        "" if result["changed"] else i18n.t("web_unchanged", request.state.lang))
    return redirect("/admin", message, request)


@router.post("/admin/users", dependencies=[Depends(check_csrf)])
def add_user(request: Request, name: str = Form(""), role: str = Form(""), password: str = Form(""),
             user=Depends(need("manage_users"))):
    result = users.add_user(engine_of(request), name, role, password)
    return redirect("/admin", i18n.t("user_added", request.state.lang, name=result["name"], role=result["role"]),
                    request)


@router.post("/admin/users/{name}/disable", dependencies=[Depends(check_csrf)])
def disable_user(request: Request, name: str, user=Depends(need("manage_users"))):
    result = users.disable_user(engine_of(request), name)
    return redirect("/admin", i18n.t("user_disabled", request.state.lang, name=result["name"]), request)


@router.post("/admin/users/{name}/token", dependencies=[Depends(check_csrf)])
def user_token(request: Request, name: str, label: str = Form(""), user=Depends(need("manage_users"))):
    return _admin_page(request, users.new_token(engine_of(request), name, label))


@router.post("/admin/users/{name}/tokens/{token_id}/revoke", dependencies=[Depends(check_csrf)])
def revoke_token(request: Request, name: str, token_id: str, user=Depends(need("manage_users"))):
    result = users.revoke_token(engine_of(request), name, token_id)
    return redirect("/admin", i18n.t("user_token_revoked", request.state.lang, **result), request)


@router.post("/admin/users/{name}/password", dependencies=[Depends(check_csrf)])
def reset_password(request: Request, name: str, password: str = Form(""), user=Depends(need("manage_users"))):
    result = users.reset_password(engine_of(request), name, password)
    return redirect("/admin", i18n.t("user_password_set", request.state.lang, name=result["name"],
                                     n=result["sessions_ended"]), request)


@router.post("/admin/users/{name}/signout", dependencies=[Depends(check_csrf)])
def sign_out_user(request: Request, name: str, user=Depends(need("manage_users"))):
    result = users.end_sessions(engine_of(request), name)
    return redirect("/admin", i18n.t("user_signed_out", request.state.lang, name=result["name"],
                                     n=result["sessions_ended"]), request)


@router.post("/admin/lots/{serial}/revoke", dependencies=[Depends(check_csrf)])
def revoke(request: Request, serial: str, key: str = Form(...), memo: str = Form(""), user=Depends(need("revoke"))):
    result = quota_ops.revoke(engine_of(request), serial, actor=user.name, memo=memo, key=key)
    return redirect(f"/lots/{quote(result['lot'])}", _replayed(i18n.t(
        "revoked", request.state.lang, g=result["revoked_g"], lot=result["lot"], txn=result["txn"]), result, request),
        request)


@router.post("/admin/expire", dependencies=[Depends(check_csrf)])
def expire(request: Request, key: str = Form(...), as_of: str = Form(""), user=Depends(need("expire"))):
    from quota import clock
    result = quota_ops.expire(engine_of(request), _day(_text(as_of), "as-of date") or clock.today(), actor=user.name,
                              key=key)
    return redirect("/admin", _replayed(i18n.t("expired", request.state.lang, lots=len(result["expired"]),
                                               res=len(result["lapsed_reservations"])), result, request), request)


# --------------------------------------------------------------------------- imports

UPLOADS = Path(tempfile.gettempdir()) / "quota-uploads"  # shared by the workers of one server
MAX_UPLOAD = 50 * 1024 * 1024  # bytes
KINDS = {"projects": "import_projects", "tallies": "import_tallies"}


def _upload_name(filename: str | None, default: str) -> str:
    """The name an upload is saved under in its own folder: its last part, letters, digits, '.', '_' and '-'
    only, never '.' or '..' (which name a folder), at most 100 characters; else `default`."""
    name = re.sub(r"[^\w.\-]", "_", Path(filename or default).name)[-100:]
    return default if name.strip(".") == "" else name


def _intake(kind: str):
    """The library module of an import: project_files or tallies."""
    if kind == "projects":
        from quota.intake import project_files
        return project_files
    from quota.intake import tallies
    return tallies


def _importer(kind: str):
    module = _intake(kind)
    return module.import_projects if kind == "projects" else module.import_tallies


def _preview_view(preview: dict | None, problems: list[dict]) -> dict | None:
    """The rows of a refused file (the library's preview) with each problem on its cell: the cell's messages
    (a problem of a column the file has not, on the row number). None when there is no preview."""
    if preview is None:
        return None
    keys = [canon for _, canon in preview["columns"]]
    notes: dict[tuple, list[str]] = {}
    for p in problems:
        notes.setdefault((p["row"], p["column"] if p["column"] in keys else ""), []).append(p["message"])
    return {"headers": [text for text, _ in preview["columns"]], "total": preview["total"],
            "first": preview["first"], "most": preview["most"], "left_out": preview["left_out"],
            "rows": [{"row": r["row"], "bad": "; ".join(notes.get((r["row"], ""), [])),
                      "cells": [{"column": k, "text": v, "bad": "; ".join(notes.get((r["row"], k), []))}
                                for k, v in zip(keys, r["cells"])]} for r in preview["rows"]]}


def _import_page(request: Request, kind: str, **context):
    status = context.pop("status", 200)
    return page(request, "import.html", {"kind": kind, "result": None, "problems": [], "upload": "", "name": "",
                                         "read": {}, "sheet": "", "preview": None, "shown": "", **context}, status)


def _stored(upload: str) -> Path:
    """The file saved under an upload token (a random name the server chose); anything else is refused."""
    if not re.fullmatch(r"[0-9a-f]{32}", upload or ""):
        raise Refused("bad_upload", reason="unknown")
    folder = UPLOADS / upload
    files = sorted(folder.glob("*")) if folder.is_dir() else []
    if not files:
        raise Refused("bad_upload", reason="gone")
    return files[0]


def _purge_old_uploads() -> None:
    if not UPLOADS.is_dir():
        return
    for folder in UPLOADS.iterdir():
        try:
            if time.time() - folder.stat().st_mtime > 86400:
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass


def import_form(kind: str):
    def view(request: Request, user=Depends(need(KINDS[kind]))):
        return _import_page(request, kind)
    return view


def import_upload(kind: str):
    async def view(request: Request, file: UploadFile = File(...), sheet: str = Form(""),
                   user=Depends(need(KINDS[kind]))):
        """Save the upload under a token and run the import as a dry run: the rows it would add, or every problem
        with its row and column; nothing is written either way. `sheet` picks a workbook's sheet (the CLI's
        --sheet); how the file was read (a CSV's encoding when not UTF-8, the sheet and header row) is shown."""
        name = _upload_name(file.filename, "upload.csv")
        data = await file.read(MAX_UPLOAD + 1)
        if len(data) > MAX_UPLOAD:
            raise Refused("bad_upload", reason="too_large", max_mb=MAX_UPLOAD // 2**20)
        await run_in_threadpool(_purge_old_uploads)
        token = secrets.token_hex(16)
        folder = UPLOADS / token
        folder.mkdir(parents=True, mode=0o700)
        (folder / name).write_bytes(data)
        read: dict = {}
        try:
            result = await run_in_threadpool(lambda: _importer(kind)(engine_of(request), str(folder / name),
                                                                     actor=user.name, dry_run=True,
                                                                     sheet=_text(sheet), read=read))
        except ValidationFailed as exc:
            marked = {p.row for p in exc.problems if p.row > 0}  # a problem of a row, not of the whole file
            preview = await run_in_threadpool(_intake(kind).preview, str(folder / name), _text(sheet), marked) \
                if marked else None
            shutil.rmtree(folder, ignore_errors=True)
            problems = refusal_view(exc, request.state.lang)["problems"]
            return _import_page(request, kind, name=name, status=422, read=read, sheet=sheet, problems=problems,
                                preview=_preview_view(preview, problems))
        shown = _intake(kind).preview_digest(result) if kind == "tallies" else ""  # what the confirm must credit
        return _import_page(request, kind, name=name, result=result, upload=token, read=read, sheet=sheet, shown=shown)
    return view


def import_confirm(kind: str):
    def view(request: Request, upload: str = Form(""), key: str = Form(...), sheet: str = Form(""),
             shown: str = Form(""), user=Depends(need(KINDS[kind]))):
        """The import of the file its dry run showed; a tally file only if it still credits what was shown
        (`shown`, the dry run's preview_digest: else import_changed, nothing written)."""
        path = _stored(upload)
        checked = {"shown": _text(shown) or "-"} if kind == "tallies" else {}  # a confirm without it is refused too
        result = _importer(kind)(engine_of(request), str(path), actor=user.name, key=key, sheet=_text(sheet),
                                 **checked)
        shutil.rmtree(path.parent, ignore_errors=True)
        lang = request.state.lang
        if kind == "projects":
            message = i18n.t("imported_projects", lang, n=result["projects"], rows=result["rows"])
            return redirect("/projects", _replayed(message, result, request), request)
        return redirect("/lots", _replayed(i18n.t("credited", lang, n=result["tallies"]), result, request), request)
    return view


for _kind in KINDS:
    router.add_api_route(f"/import/{_kind}", import_form(_kind), methods=["GET"])
    router.add_api_route(f"/import/{_kind}", import_upload(_kind), methods=["POST"], dependencies=[Depends(check_csrf)])
    router.add_api_route(f"/import/{_kind}/confirm", import_confirm(_kind), methods=["POST"],
                         dependencies=[Depends(check_csrf)])
