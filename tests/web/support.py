"""A workspace for tests: a database with the sample data, one user per role (with an API token), and clients
signed in through the login form."""
from __future__ import annotations

import re

from fastapi.testclient import TestClient

from quota.intake import project_files as projects, tallies
from quota.rules import versions as rulebooks
from quota.store import db, users
from tests.conftest import DATA
from web.app import create_app

PASSWORD = "correct horse battery"
ROLES = users.ROLES
CHEAP_ARGON2 = {"time_cost": 1, "memory_cost": 1024, "parallelism": 1}  # tests only (see conftest.py)


def prepare(url: str):
    """An engine on `url` with the sample rulebook, tallies and projects and a user per role (named as the role)."""
    engine = db.make_engine(url)
    rulebooks.init(engine, str(DATA / "rules.toml"), "tester")
    tallies.import_tallies(engine, str(DATA / "tallies.csv"), actor="tester")
    projects.import_projects(engine, str(DATA / "projects.csv"), actor="tester")
    for role in ROLES:
        users.add_user(engine, role, role, PASSWORD)
    return engine


def client(app) -> TestClient:
    return TestClient(app, base_url="http://testserver", follow_redirects=False)


def bearer(engine, name: str) -> dict[str, str]:
    """The Authorization header of a new API token of user `name`."""
    return {"Authorization": f"Bearer {users.new_token(engine, name)['token']}"}


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def key_of(html: str) -> str:
    return re.search(r'name="key" value="([^"]+)"', html).group(1)


def login(app, name: str, password: str = PASSWORD) -> TestClient:
    c = client(app)
    token = csrf_of(c.get("/login").text)
    r = c.post("/login", data={"username": name, "password": password, "csrf_token": token})
    assert r.status_code == 303 and r.headers["location"] == "/", r.text
    return c


def csrf(c: TestClient) -> str:
    """The signed-in client's CSRF token (every page's sign-out form carries it)."""
    return csrf_of(c.get("/projects").text)


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def make_app(engine, **options):
    return create_app(engine, throttle=False, **options)
