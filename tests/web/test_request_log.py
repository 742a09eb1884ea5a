"""The server logs one line per request with the user (issue: operations): address, method, path, status, the
signed-in user or the API token's (or "-"), and the time taken, for pages, the API, refusals and HEAD."""
import logging
import re

from tests.web.support import bearer, client, login, make_app, prepare

LINE = re.compile(r"^(\S+) (GET|POST|HEAD) (\S+) (\d{3}) (\S+) \d+\.\dms$")


def _lines(caplog) -> list[tuple]:
    found = []
    for record in caplog.records:
        if record.name == "quota.web":
            m = LINE.match(record.getMessage())
            assert m, record.getMessage()
            found.append(m.groups()[1:])
    return found


def test_each_request_is_one_line_naming_its_user(db_url, caplog):
    engine = prepare(db_url)
    app = make_app(engine)
    clerk = login(app, "clerk")
    api = client(app)
    api.headers.update(bearer(engine, "auditor"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="quota.web"):
        clerk.get("/")
        clerk.get("/admin")  # forbidden: still the clerk's line
        clerk.head("/projects")
        client(app).get("/")  # no session: to the sign-in page
        api.get("/api/v1/balance")
        client(app).get("/api/v1/balance")  # no token
        clerk.get("/no-such-page")
    assert _lines(caplog) == [
        ("GET", "/", "200", "clerk"),
        ("GET", "/admin", "403", "clerk"),
        ("HEAD", "/projects", "200", "clerk"),
        ("GET", "/", "303", "-"),
        ("GET", "/api/v1/balance", "200", "auditor"),
        ("GET", "/api/v1/balance", "401", "-"),
        ("GET", "/no-such-page", "404", "-"),
    ]
    engine.dispose()
