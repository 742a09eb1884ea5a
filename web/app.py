"""The ASGI app of `quota serve`: sessions, CSRF, language, security headers, request log, refusals.

A second front end over the same library calls as the CLI: every route names the action it needs
(quota.users.ACTIONS, checked on the server by `need`), calls one library function, and renders the
result (Jinja2 templates, autoescaped) or returns it as JSON (/api/v1, the CLI's --json shapes).
"""
from __future__ import annotations

from typing import Any

import asyncio
import contextlib
import functools
import hmac
import json
import logging
import os
import secrets
import time
from pathlib import Path

from fastapi import FastAPI, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from http.cookies import SimpleCookie

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.datastructures import MutableHeaders
from jinja2 import Environment, FileSystemLoader, select_autoescape
from quota import units
from quota.report import catalogue as i18n
from quota.store import db, users
from quota.store.readcache import ReadCache
from quota.store.db import DatabaseError
from quota.errors import NotFound, QuotaError, ValidationFailed
from quota.store import pgreads

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "quota_session"
LANG_COOKIE = "quota_lang"
SESSION_MAX_AGE = 12 * 3600  # seconds; a session lasts a working day
# refusal codes that mean the request itself was bad (HTTP 422); any other refusal is 409
BAD_INPUT = {"invalid_input", "bad_upload", "bad_id", "bad_text", "bad_date", "bad_key", "bad_option", "unknown_code",
             "missing_doc", "missing_memo", "bad_username", "bad_role", "weak_password", "bad_number"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
log = logging.getLogger("quota.web")
API_BODY_MAX = 2**20  # bytes: an API request body (a few small JSON fields)
FORM_BODY_MAX = 50 * 2**20 + 2**20  # bytes: a form, the largest upload (pages.MAX_UPLOAD) and its envelope


class BodyTooLarge(Exception):
    pass

# database connections a worker keeps open: one per request it serves at once, up to the 40 threads of its pool
# (with SQLAlchemy's 5, connections beyond them were opened and closed on every busy request)
POOL_SIZE = 32


class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    def __init__(self, action: str):
        super().__init__(action)
        self.action = action


class CsrfFailed(Exception):
    pass


class Unauthorized(Exception):  # API: no or bad bearer token
    pass


class Session(dict):
    """The signed cookie's content: the session's random id ("s", kept hashed in web_session), the user name
    ("u", for the log), CSRF token ("csrf"), one flash message ("flash")."""

    modified = False

    def __setitem__(self, key, value):
        self.modified = True
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        if key in self:
            self.modified = True
        return super().pop(key, default)

    def clear(self):
        self.modified = True
        super().clear()


class Edge:
    """Pure ASGI middleware (cheaper than BaseHTTPMiddleware) at the edge of every request: the signed session
    cookie in and out, the language, security headers, and one log line with the user."""

    def __init__(self, app, signer):
        self.app, self.signer = app, signer

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        limit = API_BODY_MAX if scope["path"].startswith("/api/") else FORM_BODY_MAX
        declared = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > limit:  # refused before a byte of it is read
            return await _too_large(scope, send, limit)
        received, overflow = [0], [False]

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                received[0] += len(message.get("body", b""))
                if received[0] > limit:  # a streamed body: cut off as soon as it passes the limit
                    overflow[0] = True
                    raise BodyTooLarge()
            return message

        request = Request(scope)
        session = Session()
        raw = request.cookies.get(SESSION_COOKIE)
        if raw:
            try:
                session.update(self.signer.loads(raw, max_age=SESSION_MAX_AGE))
            except (BadSignature, ValueError, TypeError):
                session.modified = True  # a forged or stale cookie is replaced
        state = scope.setdefault("state", {})
        state.update(session=session, lang=pick_lang(request), user=None, ahead={})
        status = [0]

        async def send_with_headers(message):
            if overflow[0]:  # the app's answer to a body cut short is replaced by the 413 below
                return
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                headers = MutableHeaders(scope=message)
                if session.modified:
                    cookie = SimpleCookie()
                    cookie[SESSION_COOKIE] = self.signer.dumps(dict(session))
                    morsel = cookie[SESSION_COOKIE]
                    morsel.update({"max-age": SESSION_MAX_AGE, "path": "/", "httponly": True, "samesite": "strict"})
                    if scope.get("scheme") == "https":
                        morsel["secure"] = True
                    headers.append("set-cookie", morsel.OutputString())
                headers["content-security-policy"] = CSP
                headers["x-content-type-options"] = "nosniff"
                headers["referrer-policy"] = "same-origin"
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        try:
            try:
                await self.app(scope, limited_receive, send_with_headers)
            except Exception:
                if not overflow[0]:
                    raise
            if overflow[0]:
                status[0] = 413
                await _too_large(scope, send, limit)
        finally:
            user = state.get("user")
            client = scope.get("client")
            log.info("%s %s %s %s %s %.1fms", client[0] if client else "-", scope["method"], scope["path"],
                     status[0], user.name if user else "-", (time.perf_counter() - started) * 1000)


class HeadAsGet:
    """HEAD answered as GET, for every page and GET route at once: the request goes through the app as a GET
    (the same dependencies, role checks, redirects and status) and the response keeps its status and headers
    (content-length included) but loses its body. FastAPI's routes answer only the methods they name."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "HEAD":
            return await self.app(scope, receive, send)

        async def without_body(message):
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)


async def _too_large(scope, send, limit: int) -> None:
    """413 for a request body over `limit` bytes: the API's error object, or a line of text."""
    message = f"the request body is larger than {limit // 2**20} MB; nothing was read or written"
    api = scope["path"].startswith("/api/")
    body = (json.dumps({"error": {"code": "bad_upload", "message": message}}) if api else message).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json" if api else b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()), (b"connection", b"close"),
        (b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff")]})
    await send({"type": "http.response.body", "body": body})


def check_database(engine: Any) -> None:
    """Refuse to serve a database without the quota schema or below the current migration."""
    from quota.store import migrate
    migrate.check_current(engine)


def pick_lang(request: Request) -> str:
    """The language cookie (the switch), else the browser's first of zh/en in Accept-Language, else Chinese."""
    chosen = request.cookies.get(LANG_COOKIE)
    if chosen in i18n.LANGS:
        return chosen
    for part in request.headers.get("accept-language", "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh"
        if tag.startswith("en"):
            return "en"
    return "zh"


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    yield
    if app.state.pg is not None:  # the worker is stopping: its loop's connections close with it
        await app.state.pg.aclose()


def create_app(engine: Any, *, public: bool = False, throttle: bool = True) -> FastAPI:
    """The workspace on `engine` (schema at head). `throttle=False` skips the delay after failed logins (tests
    of everything else); the failures are still counted and the lock-out still applies."""
    app = FastAPI(title="quota", version="1", docs_url=None, redoc_url=None, openapi_url="/api/v1/openapi.json",
                  lifespan=_lifespan,
                  description="HTTP API of quota: the CLI's --json shapes; writes take an Idempotency-Key header.")
    app.router.redirect_slashes = False  # its redirect names the request's Host header: a forged one led elsewhere
    app.state.engine = engine
    app.state.public = public
    app.state.throttle = throttle
    app.state.reads = ReadCache()  # balances kept by the ledger's state (quota/store/readcache.py)
    app.state.flights = {}  # cached_read: the reads being made, by loop, state and call
    app.state.inline_reads = engine.dialect.name == "sqlite"  # see on_db
    app.state.pg = pgreads.create(engine)  # PostgreSQL: the hot one-statement reads from the loop (read_row)
    app.state.signer = URLSafeTimedSerializer(users.session_secret(engine), salt="quota-session")
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals.update(display=units.display, header=i18n.header)
    app.state.templates = env
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.add_middleware(HeadAsGet)  # inside Edge: the log line says HEAD
    app.add_middleware(Edge, signer=app.state.signer)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired):
        if request.method == "GET":
            return RedirectResponse("/login", status_code=303)
        return page(request, "error.html", {"message": i18n.t("web_login_required", request.state.lang)}, 401)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden):
        user = request.state.user
        message = i18n.t("web_forbidden", request.state.lang, role=user.role if user else "-", action=exc.action)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": {"code": "forbidden", "message": message, "action": exc.action}}, 403)
        return page(request, "error.html", {"message": message}, 403)

    @app.exception_handler(Unauthorized)
    async def unauthorized(request: Request, exc: Unauthorized):
        return JSONResponse({"error": {"code": "unauthorized", "message": "an API token is required: "
                                       "Authorization: Bearer <token> (quota user token NAME)"}}, 401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(CsrfFailed)
    async def csrf_failed(request: Request, exc: CsrfFailed):
        return page(request, "error.html", {"message": i18n.t("web_csrf", request.state.lang)}, 403)

    @app.exception_handler(QuotaError)
    async def refused(request: Request, exc: QuotaError):
        status = (404 if isinstance(exc, NotFound) else
                  422 if isinstance(exc, ValidationFailed) or exc.code in BAD_INPUT else 409)
        if request.url.path.startswith("/api/"):
            return JSONResponse(exc.to_dict(), status)
        return page(request, "error.html", refusal_view(exc, request.state.lang), status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        """No such route (404) or method (405): the API's error object, or an error page; never FastAPI's own
        `{"detail": ...}`."""
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = {404: "no such page or API route", 405: f"method {request.method} is not allowed here"}.get(
            exc.status_code, str(exc.detail))
        headers = getattr(exc, "headers", None)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": {"code": code, "message": message}}, exc.status_code, headers=headers)
        if exc.status_code == 404:
            message = i18n.t("web_not_found", request.state.lang)
        response = page(request, "error.html", {"message": message, "code": code}, exc.status_code)
        response.headers.update(headers or {})  # a 405's Allow, as the API's has it
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError):
        problems = [{"where": ".".join(str(x) for x in e.get("loc", ())), "message": e.get("msg", "")}
                    for e in exc.errors()]
        message = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": {"code": "bad_request", "message": message, "problems": problems}}, 422)
        fields = "、".join(sorted({p["where"].split(".")[-1] for p in problems if p["where"]}))
        shown = i18n.t("web_bad_request", request.state.lang, fields=fields, detail=message)
        return page(request, "error.html", {"message": shown, "code": "bad_request"}, 422)

    @app.exception_handler(DatabaseError)
    async def database_error(request: Request, exc: DatabaseError):
        log.exception("database error on %s", request.url.path)
        body = {"error": {"code": "database_error", "message": "database error; nothing was written"}}
        if request.url.path.startswith("/api/"):
            return JSONResponse(body, 503)
        return page(request, "error.html", {"message": i18n.t("web_database_error", request.state.lang)}, 503)

    from web import api, pages
    app.include_router(api.router)
    app.include_router(pages.router)
    if public:
        app.add_api_route("/public", pages.public_registry, methods=["GET"], include_in_schema=False)
    return app


def app_from_env() -> FastAPI:
    """The app uvicorn's workers build (`quota serve` passes the database URL in QUOTA_DB)."""
    from quota.store import db
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    engine = db.make_engine(os.environ.get("QUOTA_DB") or db.DEFAULT_URL, pool_size=POOL_SIZE)
    return create_app(engine, public=os.environ.get("QUOTA_PUBLIC") == "1")


# --------------------------------------------------------------------------- helpers for the routes

def engine_of(request: Request) -> Any:
    return request.app.state.engine


async def on_db(request: Request, fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, a short database read of a coroutine route or dependency: on SQLite in the event
    loop's own thread (a local file read in microseconds; handing it to the thread pool and back costs more
    than the read), on PostgreSQL in the thread pool (the loop must not sit idle through network round
    trips). Measured in docs/performance.md, Web workspace."""
    if request.app.state.inline_reads:
        return fn(*args, **kwargs)
    return await run_in_threadpool(fn, *args, **kwargs)


async def read_row(request: Request, sql: str, params: tuple = ()) -> tuple | None:
    """The first row of one query of the library (db.read_one's contract), for a coroutine route or dependency:
    on SQLite in the loop's own thread (see on_db), on PostgreSQL sent from the loop on its own connections
    (quota/store/pgreads.py: no thread hand-off, which costs more than the statement). A statement the request's
    dependency sent ahead with its own (`need(action, *reads)`) is answered from that, once."""
    ahead = request.state.ahead
    if not params and sql in ahead:
        return ahead.pop(sql)
    return (await read_rows(request, [(sql, params)]))[0]


async def read_rows(request: Request, statements: list[tuple[str, tuple]]) -> list[tuple | None]:
    """read_row for each (sql, params); on PostgreSQL in one round trip (pgreads.AsyncReads.many)."""
    if request.app.state.pg is None:
        return [db.read_one(engine_of(request), sql, params) for sql, params in statements]
    return await request.app.state.pg.many(statements)


async def _with_reads_ahead(request: Request, query: tuple[str, tuple], reads: tuple[str, ...]) -> tuple | None:
    """The row of the dependency's own `query` (the user of a session or token), and the route's `reads` (statements
    without parameters) sent with it in one round trip and kept for its read_row: they are read only for a request
    that presents a session or token, and their rows are seen only once the user is let through."""
    first, *rest = await read_rows(request, [query, *((sql, ()) for sql in reads)])
    request.state.ahead = dict(zip(reads, rest))
    return first


async def write(request: Request, fn, *args, **kwargs):
    """`fn(*args, **kwargs)`, a short library write (reserve, approve, release, cancel) of a coroutine route: on
    SQLite made in the loop's own thread once the writers' lock file is had, waiting for it without blocking the
    loop (db.write_in_turn); on PostgreSQL, or without the lock file, in the thread pool (round trips must not
    hold the loop). Measured in docs/performance.md, Web workspace."""
    if request.app.state.inline_reads:
        made, value = await db.write_in_turn(engine_of(request), functools.partial(fn, *args, **kwargs))
        if made:
            return value
    return await run_in_threadpool(fn, *args, **kwargs)


def cached(request: Request, fn, keep=None, **kwargs):
    """`fn(engine, **kwargs)`, a library read, answered from the app's cache when the ledger has not changed
    since the same read was made (a write is seen by the next read: see quota/store/readcache.py); one that
    `keep` refuses is not kept."""
    return request.app.state.reads.get(engine_of(request), fn, keep=keep, **kwargs)


async def cached_read(request: Request, fn, **kwargs):
    """`cached` for a coroutine route: the ledger's state read with read_row, then the cache's answer in the loop,
    or on a miss the read made (on_db) and kept under that state, read before it; requests of the loop that miss
    the same read at the same state while it is being made wait for it (after a write, every view in flight
    missed at once and each made the same read)."""
    state = await read_row(request, db.HEAD_SQL)
    key = request.app.state.reads.key(state, fn, kwargs)
    found, value = request.app.state.reads.find(key)
    if found:
        return value
    make = functools.partial(on_db, request, cached, request, fn, at=state, **kwargs)
    flights = request.app.state.flights
    in_flight = (asyncio.get_running_loop(), key)  # the cache's key (state, today, call), in this loop
    flight = flights.get(in_flight)
    if flight is not None:
        made, value = await asyncio.shield(flight)
        return value if made else await make()  # not made: it failed or its request went away
    flight = flights[in_flight] = asyncio.get_running_loop().create_future()
    made = False
    try:
        value = await make()
        made = True
        return value
    finally:
        del flights[in_flight]
        flight.set_result((made, value if made else None))


def current_user(request: Request) -> users.User | None:
    """The signed-in user of the session (looked up each time: a session ended elsewhere, or of a user since
    disabled, ends at once), for a plain-function route."""
    sid = request.state.session.get("s")
    return _signed_in(request, users.session_user(engine_of(request), sid) if sid else None)


async def session_user(request: Request, reads: tuple[str, ...] = ()) -> users.User | None:
    """current_user, for a coroutine (the statement through read_row, with the route's `reads` ahead)."""
    query = users.session_query(request.state.session.get("s"))
    return _signed_in(request, users.user_of(await _with_reads_ahead(request, query, reads)) if query else None)


def _signed_in(request: Request, user: users.User | None) -> users.User | None:
    if user is None and request.state.session.get("s"):
        request.state.session.clear()  # ended, expired or of a disabled user: the cookie is replaced
    request.state.user = user
    return user


def need(action: str, *reads: str):
    """A dependency: the signed-in user, who must be allowed `action` (else 303 to /login, or 403); `reads`: the
    route's own one-statement reads (no parameters), sent with the session's (see _with_reads_ahead)."""
    async def dependency(request: Request) -> users.User:
        user = await session_user(request, reads)
        if user is None:
            raise LoginRequired()
        if not users.allowed(user.role, action):
            raise Forbidden(action)
        return user
    dependency.action = action
    return dependency


def api_need(action: str, *reads: str):
    """A dependency of the API: the user of the bearer token (401 without one), allowed `action` (403); `reads` as
    for need."""
    async def dependency(request: Request) -> users.User:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        query = users.token_query(token.strip()) if scheme.lower() == "bearer" else None
        user = users.user_of(await _with_reads_ahead(request, query, reads)) if query else None
        if user is None:
            raise Unauthorized()
        request.state.user = user
        if not users.allowed(user.role, action):
            raise Forbidden(action)
        return user
    dependency.action = action
    return dependency


def csrf_token(request: Request) -> str:
    session = request.state.session
    if not session.get("csrf"):
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


async def check_csrf(request: Request, csrf_token: str = Form("")) -> None:
    """Every form posts the session's CSRF token; a missing or wrong one is refused (403) before anything."""
    expected = request.state.session.get("csrf")
    if not expected or not hmac.compare_digest(str(expected), csrf_token):
        raise CsrfFailed()


def form_key() -> str:
    """A fresh idempotency key for one form: submitting it twice (double click, reload) posts once."""
    return "web-" + secrets.token_hex(16)


def refusal_view(exc: QuotaError, lang: str) -> dict:
    """A refusal for a page: the message in `lang` (from its code and facts), the shortfall per pollutant and
    key when quota is short, the problems (row, column) of a refused file."""
    view = {"message": exc.text(lang), "code": exc.code, "short": [],
            "problems": []}
    for s in exc.facts.get("short", []) if isinstance(exc.facts, dict) else []:
        view["short"].append({**s, "required": units.display(s["required_g"], s["unit"]),
                              "eligible": units.display(s["eligible_g"], s["unit"]),
                              "short_amount": units.display_up(s["short_g"], s["unit"])})
    if isinstance(exc, ValidationFailed):
        view["problems"] = [{"source": p.source, "row": p.row, "column": p.column,
                             "message": p.text(lang)} for p in exc.problems]
    project = exc.facts.get("project_id") if isinstance(exc.facts, dict) else None
    if project:
        view["back"] = f"/projects/{project}"
    return view


def page(request: Request, template: str, context: dict, status: int = 200) -> HTMLResponse:
    """Render a template with what every page needs: user, language, catalogue, CSRF token, flash."""
    lang = request.state.lang
    user = request.state.user
    env: Environment = request.app.state.templates
    flash = request.state.session.pop("flash", None)
    html = env.get_template(template).render(
        request=request, user=user, lang=lang, csrf=csrf_token(request), flash=flash,
        t=lambda key, **kw: i18n.t(key, lang, **kw), h=lambda text: i18n.header(text, lang),
        state_name=lambda s: i18n.WORDS_ZH.get(s, s) if lang == "zh" else s,
        role_name=lambda r: i18n.ROLES_ZH.get(r, r) if lang == "zh" else r,
        can=lambda action: user is not None and users.allowed(user.role, action),
        new_key=form_key, path=request.url.path, **context)
    return HTMLResponse(html, status)


def redirect(url: str, flash: str | None = None, request: Request | None = None) -> RedirectResponse:
    if flash and request is not None:
        request.state.session["flash"] = flash
    return RedirectResponse(url, status_code=303)
