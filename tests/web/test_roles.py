"""The role matrix, enforced on the server for every route: each route x each role (and no one) is either
allowed, or refused (403; the API 401 without a token) with nothing written. The table below must list every
route of the app, so a new route without a row fails here."""
import pytest
from fastapi.routing import APIRoute

from quota.store import users
from tests.conftest import DATA, ENGINES, snapshot
from tests.databases import fresh_url
from tests.web.support import CHEAP_ARGON2, ROLES, client, csrf, login, make_app, prepare

# (method, route path, concrete path, action or None for public routes, form or JSON body)
ROUTES = [
    ("GET", "/login", "/login", None, None),
    ("POST", "/login", "/login", None, None),
    ("POST", "/logout", "/logout", None, None),
    ("GET", "/lang/{lang}", "/lang/en", None, None),
    ("GET", "/", "/", "read_balance", None),
    ("GET", "/lots", "/lots?pollutant=COD", "read_lots", None),
    ("GET", "/lots/{serial}", "/lots/{lot}", "read_lots", None),
    ("GET", "/projects", "/projects?state=pipeline", "read_projects", None),
    ("GET", "/projects/{project_id}", "/projects/P2026-01", "read_projects", None),
    ("POST", "/projects/{project_id}/reserve", "/projects/P2026-02/reserve", "reserve", {"confirm": "1"}),
    ("POST", "/projects/{project_id}/approve", "/projects/P2026-02/approve", "approve", {"doc": "金环审[2026]1号"}),
    ("POST", "/projects/{project_id}/release", "/projects/P2026-03/release", "release", {}),
    ("POST", "/projects/{project_id}/cancel", "/projects/P2026-04/cancel", "cancel", {}),
    ("GET", "/projects/{project_id}/statement.{fmt}", "/projects/P2026-01/statement.md", "read_statement", None),
    ("GET", "/plans", "/plans", "read_plans", None),
    ("POST", "/plans", "/plans", "run_plan", {"time_limit": "5"}),
    ("GET", "/plans/{plan_id}", "/plans/PLAN-0001", "read_plans", None),
    ("GET", "/plans/{plan_id}/plan.xlsx", "/plans/PLAN-0001/plan.xlsx", "read_plans", None),
    ("POST", "/plans/{plan_id}/apply", "/plans/PLAN-0001/apply", "apply_plan", {}),
    ("GET", "/outlook", "/outlook?years=2", "read_plans", None),
    ("GET", "/audit", "/audit?project=P2026-01", "read_history", None),
    ("POST", "/audit/verify", "/audit/verify", "verify", {}),
    ("GET", "/audit/export.{fmt}", "/audit/export.jsonl", "export", None),
    ("GET", "/admin", "/admin", "manage_users", None),
    ("POST", "/admin/users", "/admin/users", "manage_users", {"name": "new{n}", "role": "clerk",
                                                              "password": "another long password"}),
    ("POST", "/admin/users/{name}/disable", "/admin/users/victim1/disable", "manage_users", {}),
    ("POST", "/admin/users/{name}/token", "/admin/users/victim2/token", "manage_users", {"label": "matrix"}),
    ("POST", "/admin/users/{name}/tokens/{token_id}/revoke", "/admin/users/victim2/tokens/{token}/revoke",
     "manage_users", {}),
    ("POST", "/admin/users/{name}/password", "/admin/users/victim2/password", "manage_users",
     {"password": "reset password {n}"}),
    ("POST", "/admin/users/{name}/signout", "/admin/users/victim2/signout", "manage_users", {}),
    ("GET", "/account", "/account", "own_account", None),
    ("POST", "/account/password", "/account/password", "own_account",
     {"old": "wrong password", "new": "another long password", "repeat": "another long password"}),
    ("POST", "/account/sessions/{session_id}/end", "/account/sessions/0123456789ab/end", "own_account", {}),
    ("POST", "/account/signout-everywhere", "/account/signout-everywhere", "own_account", {}),
    ("POST", "/admin/rules", "/admin/rules", "load_rules", "rules"),
    ("POST", "/admin/lots/{serial}/revoke", "/admin/lots/{lot}/revoke", "revoke", {"memo": "report withdrawn"}),
    ("POST", "/admin/expire", "/admin/expire", "expire", {}),
    ("GET", "/import/projects", "/import/projects", "import_projects", None),
    ("POST", "/import/projects", "/import/projects", "import_projects", "upload"),
    ("POST", "/import/projects/confirm", "/import/projects/confirm", "import_projects", {"upload": "0" * 32}),
    ("GET", "/import/tallies", "/import/tallies", "import_tallies", None),
    ("POST", "/import/tallies", "/import/tallies", "import_tallies", "upload"),
    ("POST", "/import/tallies/confirm", "/import/tallies/confirm", "import_tallies", {"upload": "0" * 32}),
    ("GET", "/api/v1/balance", "/api/v1/balance?by=zone", "read_balance", None),
    ("GET", "/api/v1/projects", "/api/v1/projects", "read_projects", None),
    ("GET", "/api/v1/projects/{project_id}/trace", "/api/v1/projects/P2026-01/trace", "read_statement", None),
    ("POST", "/api/v1/projects/{project_id}/reserve", "/api/v1/projects/P2026-05/reserve", "reserve", {}),
    ("POST", "/api/v1/projects/{project_id}/approve", "/api/v1/projects/P2026-05/approve", "approve", {"doc": "D-1"}),
    ("POST", "/api/v1/projects/{project_id}/release", "/api/v1/projects/P2026-06/release", "release", None),
    ("POST", "/api/v1/projects/{project_id}/cancel", "/api/v1/projects/P2026-07/cancel", "cancel", None),
    ("GET", "/api/v1/verify", "/api/v1/verify", "verify", None),
    ("GET", "/api/v1/plans", "/api/v1/plans", "read_plans", None),
    ("POST", "/api/v1/plans", "/api/v1/plans", "run_plan", {"time_limit": 5}),
    ("GET", "/api/v1/plans/{plan_id}", "/api/v1/plans/PLAN-0001", "read_plans", None),
    ("POST", "/api/v1/plans/{plan_id}/apply", "/api/v1/plans/PLAN-0001/apply", "apply_plan", None),
]
RULES = (DATA / "rules.toml").read_bytes()
GUARDED = [r for r in ROUTES if r[3] is not None]
WHO = [*ROLES, "nobody"]
COUNTER = iter(range(10**6))


@pytest.fixture(scope="module", params=ENGINES)
def workspace(request, tmp_path_factory):
    url, drop = fresh_url(request.param, tmp_path_factory.mktemp("web"))
    saved, users.ARGON2 = users.ARGON2, CHEAP_ARGON2
    engine = prepare(url)
    from quota.planning import plans
    plans.run_plan(engine, time_limit=5)  # PLAN-0001
    for i in (1, 2):
        users.add_user(engine, f"victim{i}", "clerk", "victim password 1")
    app = make_app(engine)
    clients = {role: login(app, role) for role in ROLES}
    clients["nobody"] = client(app)
    tokens = {role: users.new_token(engine, role)["token"] for role in ROLES}
    lot = engine.connect().exec_driver_sql("SELECT serial FROM lot ORDER BY serial LIMIT 1").scalar_one()
    yield {"app": app, "engine": engine, "clients": clients, "tokens": tokens, "lot": lot}
    users.ARGON2 = saved
    engine.dispose()
    drop()


def test_every_route_of_the_app_is_in_the_matrix():
    from web import api, pages
    served = {(m, r.path) for router in (pages.router, api.router) for r in router.routes
              if isinstance(r, APIRoute) for m in r.methods}
    assert served == {(m, p) for m, p, *_ in ROUTES}
    assert len(ROUTES) == len(served)


def test_every_action_of_the_matrix_is_used_by_a_route_or_reserved_for_a_later_page():
    used = {r[3] for r in GUARDED}
    assert used <= set(users.ACTIONS)
    assert set(users.ACTIONS) == used


@pytest.mark.parametrize("who", WHO)
@pytest.mark.parametrize("route", GUARDED, ids=[f"{m} {p}" for m, p, *_ in GUARDED])
def test_role_matrix(workspace, route, who):
    method, _, path, action, body = route
    n = next(COUNTER)
    token = users.new_token(workspace["engine"], "victim2")["id"] if "{token}" in path else ""
    path = path.format(lot=workspace["lot"], n=n, token=token)
    c = workspace["clients"][who]
    api = path.startswith("/api/")
    headers = {}
    if api and who != "nobody":
        headers["Authorization"] = f"Bearer {workspace['tokens'][who]}"
    allowed = who != "nobody" and users.allowed(who, action)
    before = None if allowed else snapshot(workspace["engine"])
    if method == "GET":
        r = c.get(path, headers=headers)
    elif api:
        r = c.post(path, json=body, headers={**headers, "Idempotency-Key": f"matrix-{n}"})
    else:
        upload = body in ("upload", "rules")
        form = {} if upload else {k: v.format(n=n) for k, v in (body or {}).items()}
        token = csrf(c) if who != "nobody" else None
        files = ({"file": ("rules.toml", RULES, "text/plain")} if body == "rules" else
                 {"file": ("empty.csv", b"project_id\n", "text/csv")} if upload else None)
        r = c.post(path, data={**form, "key": f"web-matrix-{n}", **({"csrf_token": token} if token else {})},
                   files=files)
    if allowed:
        assert r.status_code not in (401, 403), (r.status_code, r.text[:500])
        assert r.status_code < 500
        if path == "/account/signout-everywhere":  # it did: sign the shared client in again
            assert r.status_code == 303 and c.get("/").status_code == 303
            workspace["clients"][who] = login(workspace["app"], who)
        return
    if who == "nobody":
        expected = {401} if api else ({303} if method == "GET" else {401, 403})
        assert r.status_code in expected, (r.status_code, r.text[:300])
        if r.status_code == 303:
            assert r.headers["location"] == "/login"
    else:
        assert r.status_code == 403, (r.status_code, r.text[:300])
    assert snapshot(workspace["engine"]) == before


def test_an_auditor_sees_no_write_buttons(workspace):
    c = workspace["clients"]["auditor"]
    page = c.get("/projects/P2026-01").text
    for button in ('id="reserve"', 'id="approve"', 'id="release"', 'id="cancel"'):
        assert button not in page
    assert 'id="no-actions"' in page
    assert 'id="run"' not in c.get("/plans").text and 'id="apply"' not in c.get("/plans/PLAN-0001").text
    import re
    for path in ("/", "/lots", f"/lots/{workspace['lot']}", "/projects", "/projects/P2026-01", "/plans",
                 "/plans/PLAN-0001", "/audit", "/outlook?years=1"):
        html = c.get(path).text
        assert 'href="/import/' not in html and 'href="/admin"' not in html, path
        posts = set(re.findall(r'<form method="post" action="([^"]+)"', html))
        assert posts <= {"/logout", "/audit/verify"}, (path, posts)  # signing out and verifying write no ledger


GETS = [r for r in ROUTES if r[0] == "GET" and r[3] is not None]


@pytest.mark.parametrize("who", WHO)
def test_head_answers_as_get_with_the_same_role_checks_and_no_body(workspace, who):
    """HEAD on every page and GET API route: GET's status and headers, an empty body; a HEAD the role may not
    GET is refused as the GET is (403, 401, or 303 to the sign-in form)."""
    c = workspace["clients"][who]
    headers = {"Authorization": f"Bearer {workspace['tokens'][who]}"} if who != "nobody" else {}
    for _, _, path, action, _ in GETS + [("GET", "/login", "/login", None, None)]:
        path = path.format(lot=workspace["lot"])
        got, head = c.get(path, headers=headers), c.head(path, headers=headers)
        assert head.status_code == got.status_code, (path, head.status_code, got.status_code)
        assert head.content == b"", path
        for name in ("content-type", "location", "cache-control", "content-security-policy", "www-authenticate"):
            assert head.headers.get(name) == got.headers.get(name), (path, name)
        assert head.headers["content-length"] == got.headers["content-length"], path  # the GET's body length
        if who != "nobody" and action is not None:
            assert head.status_code == (200 if users.allowed(who, action) else 403), (path, head.status_code)


def test_head_of_the_overview_and_admin_as_a_clerk_and_without_a_session(workspace):
    clerk, nobody = workspace["clients"]["clerk"], workspace["clients"]["nobody"]
    r = clerk.head("/")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"].startswith("text/html")
    assert int(r.headers["content-length"]) == len(clerk.get("/").content)
    assert clerk.head("/admin").status_code == 403 and clerk.head("/admin").content == b""
    r = nobody.head("/")
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert nobody.head("/api/v1/balance").status_code == 401
    assert clerk.head("/no-such-page").status_code == 404
    assert clerk.head("/logout").status_code == clerk.get("/logout").status_code == 405  # POST only, as GET
