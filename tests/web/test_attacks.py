"""What a hostile user tried against the web workspace and its API that once got through, on both engines: each
test is one attack that the workspace must now refuse (or answer without a 500), with nothing written."""
from __future__ import annotations

import datetime as dt
import re
import threading
import time

import pytest
from sqlalchemy import text

from quota.audit import trace as audit
from quota.store import users
from tests.conftest import snapshot as every_row


def snapshot(engine) -> dict:
    """Every row of every table but the sign-in records (web_session, web_throttle): signing in to make the next
    attempt is not what a refused request may not write."""
    return {k: v for k, v in every_row(engine).items() if k not in ("web_session", "web_throttle")}
from tests.web.support import client, csrf, csrf_of, key_of, login, make_app, prepare, text_of

PASSWORD = "correct horse battery"


class _SlowHasher:
    """Argon2 as used, but each verify waits until released: every concurrent attempt is in flight at once."""

    def __init__(self, real, release: threading.Event):
        self.real, self.release, self.verified = real, release, 0

    def hash(self, password):
        return self.real.hash(password)

    def verify(self, digest, password):
        self.verified += 1
        self.release.wait(10)
        return self.real.verify(digest, password)


def test_concurrent_guesses_cannot_outrun_the_lock_out(engine, monkeypatch):
    """Thirty wrong passwords sent at once: only LOCK_AFTER of them are checked at all, and the account is locked
    afterwards (once, the 11th concurrent failure wrote `locked_until = NULL` and so unlocked it; and every guess
    in flight was checked, the right one let in)."""
    users.add_user(engine, "wang", "clerk", PASSWORD)
    release = threading.Event()
    slow = _SlowHasher(users._hasher(), release)
    monkeypatch.setattr(users, "_hasher", lambda: slow)
    now = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.timezone.utc)
    answers = []
    threads = [threading.Thread(target=lambda i=i: answers.append(users.authenticate(engine, "wang", f"guess {i}", now)))
               for i in range(30)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(answers) + slow.verified < 30:
        time.sleep(0.05)
    release.set()
    for t in threads:
        t.join(20)
    assert len(answers) == 30 and all(a.user is None for a in answers)
    assert slow.verified <= users.LOCK_AFTER
    assert users.authenticate(engine, "wang", PASSWORD, now + dt.timedelta(minutes=1)).reason == "locked"


@pytest.fixture
def ws(db_url):
    engine = prepare(db_url)
    yield engine, make_app(engine)
    engine.dispose()


def _reserve(c, project):
    page = c.get(f"/projects/{project}").text
    r = c.post(f"/projects/{project}/reserve", data={"csrf_token": csrf_of(page), "key": key_of(page), "confirm": "1"})
    assert r.status_code == 303, r.text


@pytest.mark.parametrize("doc", ["\u200b", " \u2060\u200b ", "\ufeff"])
def test_an_invisible_approval_document_number_is_no_document_number(ws, doc):
    """An approval cites its document; one made only of zero-width characters shows as nothing on every page,
    statement and export, so it is refused like an empty one (it was accepted and approved the project)."""
    engine, app = ws
    c = login(app, "clerk")
    _reserve(c, "P2026-01")
    token = users.new_token(engine, "clerk")["token"]
    before = snapshot(engine)
    page = c.get("/projects/P2026-01").text
    r = c.post("/projects/P2026-01/approve", data={"csrf_token": csrf_of(page), "key": "approve-1", "doc": doc})
    assert r.status_code == 422 and "需要批复文号" in text_of(r.text)
    api = client(app).post("/api/v1/projects/P2026-01/approve", json={"doc": doc},
                           headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 422 and api.json()["error"]["code"] == "missing_doc"
    admin = login(app, "admin")
    lot = next(iter(_lots(engine)))
    page = admin.get(f"/lots/{lot}").text
    r = admin.post(f"/admin/lots/{lot}/revoke", data={"csrf_token": csrf_of(page), "key": "revoke-1", "memo": doc})
    assert r.status_code == 422
    assert snapshot(engine) == before


def _lots(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT serial FROM lot ORDER BY serial")).scalars().all()


def test_an_as_of_date_at_the_end_of_the_calendar_is_answered_not_a_500(ws):
    """The overview looks 12 months past its as-of date: 9999-12-31 ran off the calendar (OverflowError, 500)."""
    engine, app = ws
    c = login(app, "auditor")
    for day in ("9999-12-31", "9999-06-01", "0001-01-01"):
        r = c.get("/", params={"as_of": day})
        assert r.status_code == 200, (day, r.status_code)
        assert day in r.text


@pytest.mark.parametrize("before", [2**63, 2**70, 10**30])
def test_a_history_page_before_a_huge_sequence_number_is_the_newest_page_not_a_500(ws, before):
    """`/audit?before=` beyond the database's integers was an OverflowError (SQLite) or a DataError (PostgreSQL):
    every transaction is before it, so it is the first page."""
    engine, app = ws
    c = login(app, "auditor")
    newest = c.get("/audit").text
    r = c.get("/audit", params={"before": before})
    assert r.status_code == 200 and r.text.count("<tr") == newest.count("<tr") > 1


@pytest.mark.parametrize("before", [0, 1, -1, -(2**70)])
def test_a_history_page_before_the_first_sequence_number_lists_nothing(ws, before):
    """Every transaction's sequence number is 1 or more, so none is before 1 or below: `before=0` listed every
    transaction (0 was taken as not given) and one below the database's integers was a 500 on PostgreSQL."""
    engine, app = ws
    c = login(app, "auditor")
    r = c.get("/audit", params={"before": before})
    assert r.status_code == 200 and r.text.count("<tr") == 1  # the header row only
    assert audit.history(engine, before_seq=before)["transactions"] == []


@pytest.mark.parametrize("name", ["..", "...", "../..", "/"])
def test_an_upload_named_dot_dot_is_read_under_a_name_of_its_own_not_a_500(ws, name):
    """The upload is saved under its own file name in a folder of its own: `..` named the folder's parent (an
    IsADirectoryError, a 500, for an import and for a rulebook)."""
    engine, app = ws
    before = snapshot(engine)
    c = login(app, "clerk")
    page = c.get("/import/projects").text
    r = c.post("/import/projects", data={"csrf_token": csrf_of(page)}, files={"file": (name, b"x,y\n1,2\n", "text/csv")})
    assert r.status_code == 422 and "问题" in r.text
    admin = login(app, "admin")
    page = admin.get("/admin").text
    r = admin.post("/admin/rules", data={"csrf_token": csrf_of(page)}, files={"file": (name, b"x = 1\n", "text/plain")})
    assert r.status_code == 422
    assert snapshot(engine) == before


def test_an_idempotency_key_of_one_user_is_not_replayed_to_another(ws):
    """Two clerks' scripts that happen to use the same Idempotency-Key: the second is refused (key_conflict),
    never told "done" with the first one's result. On PostgreSQL the database user already scopes a key; every
    web user shares the server's database user, so the key is scoped by the actor as well."""
    engine, app = ws
    users.add_user(engine, "li", "clerk", "another long password")
    wang, li = (users.new_token(engine, n)["token"] for n in ("clerk", "li"))
    c = client(app)
    first = c.post("/api/v1/projects/P2026-01/reserve", headers={"Authorization": f"Bearer {wang}",
                                                                  "Idempotency-Key": "reserve-P2026-01"})
    assert first.status_code == 200 and first.json()["replayed"] is False
    again = c.post("/api/v1/projects/P2026-01/reserve", headers={"Authorization": f"Bearer {wang}",
                                                                  "Idempotency-Key": "reserve-P2026-01"})
    assert again.status_code == 200 and again.json()["replayed"] is True  # the same user's retry: one effect
    before = snapshot(engine)
    other = c.post("/api/v1/projects/P2026-01/reserve", headers={"Authorization": f"Bearer {li}",
                                                                  "Idempotency-Key": "reserve-P2026-01"})
    assert other.status_code == 409 and other.json()["error"]["code"] == "key_conflict"
    assert snapshot(engine) == before


def test_a_session_cookie_copied_before_sign_out_is_dead_after_it(ws):
    """Sign-out ends the session on the server, not only in the browser: the cookie as it was before (kept by an
    attacker, a proxy log, a shared machine's backup) no longer reads nor writes. Another session of the same
    user (another desk) goes on."""
    engine, app = ws
    c = login(app, "clerk")
    desk2 = login(app, "clerk")
    stolen = c.cookies.get("quota_session")
    page = c.get("/projects/P2026-01").text
    token, key = csrf_of(page), key_of(page)
    assert c.post("/logout", data={"csrf_token": token}).status_code == 303
    thief = client(app)
    thief.cookies.set("quota_session", stolen)
    assert thief.get("/projects").status_code == 303  # to the sign-in form
    before = snapshot(engine)
    r = thief.post("/projects/P2026-01/reserve", data={"csrf_token": token, "key": key, "confirm": "1"})
    assert r.status_code in (401, 403)
    assert snapshot(engine) == before
    assert desk2.get("/projects").status_code == 200


def _workbook_bomb(unpacked_mb: int) -> bytes:
    """A project workbook whose sheet unpacks to `unpacked_mb` MB of identical rows (it packs about 300 to 1)."""
    import io
    import zipfile

    import openpyxl
    book = openpyxl.Workbook()
    book.active.append(["project_id", "name", "zone", "industry", "pollutant", "increment", "unit"])
    plain = io.BytesIO()
    book.save(plain)
    src = zipfile.ZipFile(io.BytesIO(plain.getvalue()))
    row = b"<row>" + b'<c t="inlineStr"><is><t>x</t></is></c>' * 11 + b"</row>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for item in src.infolist():
            if item.filename != "xl/worksheets/sheet1.xml":
                bomb.writestr(item, src.read(item.filename))
                continue
            with bomb.open(item.filename, "w", force_zip64=True) as sheet:
                sheet.write(b'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
                            b'spreadsheetml/2006/main"><sheetData>')
                chunk = row * 2000
                for _ in range(unpacked_mb * 2**20 // len(chunk)):
                    sheet.write(chunk)
                sheet.write(b"</sheetData></worksheet>")
    return out.getvalue()


def test_a_workbook_that_unpacks_far_beyond_its_upload_is_refused_before_it_is_parsed(ws):
    """A 150 kB upload that unpacks to 48 MB of cells kept a server thread (and a core) parsing for about a
    minute, and 50 MB of it for hours: a workbook is refused, with nothing written, when it unpacks to more than
    tables.MAX_UNPACKED_MB."""
    from quota.intake import tables
    engine, app = ws
    data = _workbook_bomb(tables.MAX_UNPACKED_MB + 16)
    assert len(data) < 1_000_000
    before = snapshot(engine)
    c = login(app, "clerk")
    page = c.get("/import/projects").text
    started = time.monotonic()
    r = c.post("/import/projects", data={"csrf_token": csrf_of(page)}, files={"file": ("bomb.xlsx", data, "application/zip")})
    assert r.status_code == 422 and "解压后" in text_of(r.text)
    assert time.monotonic() - started < 10
    assert snapshot(engine) == before


def test_a_reservation_confirmed_after_its_preview_went_stale_is_refused_not_made_with_other_draws(ws):
    """The clerk is shown the lots a reservation would take, then confirms. An admin revoking one of those lots in
    between made the confirmation silently draw other lots than the ones confirmed: it is refused
    (preview_changed, nothing written), and shown again it confirms the new draws."""
    engine, app = ws
    c = login(app, "clerk")
    page = c.get("/projects/P2026-08").text
    token, key = csrf_of(page), key_of(page)
    preview = c.post("/projects/P2026-08/reserve", data={"csrf_token": token, "key": key})
    shown = re.findall(r'<a href="/lots/([^"]+)">', preview.text.split('id="preview"')[1].split("</table>")[0])
    assert shown[:2] == ["NOX-2023-00013", "NOX-2024-00020"]  # the first has 3.9 t, the second the rest of 45 t
    admin = login(app, "admin")
    page = admin.get(f"/lots/{shown[0]}").text
    r = admin.post(f"/admin/lots/{shown[0]}/revoke", data={"csrf_token": csrf_of(page), "key": "revoke-1",
                                                           "memo": "report withdrawn"})
    assert r.status_code == 303
    before = snapshot(engine)
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                           preview.text.split('id="confirm-form"')[1].split("</form>")[0]))
    r = c.post("/projects/P2026-08/reserve", data=form)
    assert r.status_code == 409 and "预留方案已变化" in text_of(r.text)
    assert snapshot(engine) == before
    again = c.post("/projects/P2026-08/reserve", data={"csrf_token": token, "key": key})  # shown anew
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                           again.text.split('id="confirm-form"')[1].split("</form>")[0]))
    assert c.post("/projects/P2026-08/reserve", data=form).status_code == 303


def test_an_unknown_api_route_or_method_answers_with_the_error_object(ws):
    """Scripts read `{"error": {"code", "message"}}` from every API failure: an unknown route or a wrong method
    answered FastAPI's own `{"detail": "Not Found"}`, and a page's 404 was JSON instead of a page."""
    engine, app = ws
    token = users.new_token(engine, "auditor")["token"]
    c = client(app)
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, status, code in [("GET", "/api/v1/nothing", 404, "not_found"),
                                       ("GET", "/api/v1/projects/P2026-01/statement", 404, "not_found"),
                                       ("DELETE", "/api/v1/balance", 405, "method_not_allowed"),
                                       ("PUT", "/api/v1/projects/P2026-01/reserve", 405, "method_not_allowed")]:
        r = c.request(method, path, headers=auth)
        assert r.status_code == status and r.json()["error"]["code"] == code, (method, path, r.text)
        assert r.json()["error"]["message"]
    page = login(app, "auditor").get("/no-such-page")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


def test_a_trailing_slash_never_redirects_to_the_host_the_request_named(ws):
    """`/projects/` was answered with a redirect to `http://<Host header>/projects`: a forged Host (passed on by
    a proxy, or cached) sent the user to another site. A path with a trailing slash is now simply not found."""
    engine, app = ws
    c = login(app, "clerk")
    for path in ("/projects/", "/api/v1/balance/", "/lots/"):
        r = c.get(path, headers={"Host": "evil.example"})
        assert r.status_code == 404 and "evil.example" not in r.headers.get("location", ""), (path, r.headers)


def test_a_huge_body_is_refused_before_it_is_read_even_without_signing_in(ws):
    """Anyone who could reach the server sent a 300 MB JSON body to an API route: it was read into memory in
    full (the server grew by 540 MB) before the 401; a multipart body was spooled to disk in full before the CSRF
    check. A body over the limit (1 MB for the API, the upload limit and a little for forms) is answered 413 as it
    arrives, whether its length is declared or it is streamed."""
    from web.app import API_BODY_MAX, FORM_BODY_MAX
    engine, app = ws
    c = client(app)
    sent = []

    def stream(total):
        chunk = b"A" * 2**16
        for _ in range(total // len(chunk) + 1):
            sent.append(len(chunk))
            yield chunk

    r = c.post("/api/v1/projects/P2026-01/reserve", content=stream(API_BODY_MAX * 4),
               headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "bad_upload"
    r = c.post("/api/v1/projects/P2026-01/reserve", content=b"{}",
               headers={"content-type": "application/json", "content-length": str(API_BODY_MAX + 1)})
    assert r.status_code == 413
    r = c.post("/import/projects", headers={"content-type": "multipart/form-data; boundary=x",
                                            "content-length": str(FORM_BODY_MAX + 1)}, content=b"--x--")
    assert r.status_code == 413
    token = users.new_token(engine, "clerk")["token"]
    small = c.post("/api/v1/projects/P2026-01/reserve", json={}, headers={"Authorization": f"Bearer {token}"})
    assert small.status_code == 200  # an ordinary body is read as before


def test_a_document_number_or_memo_as_long_as_a_book_is_refused(ws):
    """The approval document number and the revocation memo go into the append-only chain for good; a form
    accepted 10 MB of either (imports cap a report number at 100 characters and a name at 200)."""
    engine, app = ws
    c = login(app, "clerk")
    _reserve(c, "P2026-01")
    before = snapshot(engine)
    page = c.get("/projects/P2026-01").text
    r = c.post("/projects/P2026-01/approve", data={"csrf_token": csrf_of(page), "key": "approve-1", "doc": "金" * 201})
    assert r.status_code == 422 and "200" in text_of(r.text)
    admin = login(app, "admin")
    lot = _lots(engine)[0]
    page = admin.get(f"/lots/{lot}").text
    r = admin.post(f"/admin/lots/{lot}/revoke", data={"csrf_token": csrf_of(page), "key": "revoke-1",
                                                      "memo": "x" * 1001})
    assert r.status_code == 422
    r = admin.post(f"/admin/lots/{lot}/revoke", data={"csrf_token": csrf_of(page), "key": "revoke-2",
                                                      "memo": "withdrawn " * 200_000})
    assert r.status_code in (400, 422)  # a form field over 1 MB is refused by the form parser itself
    assert snapshot(engine) == before
    r = c.post("/projects/P2026-01/approve", data={"csrf_token": csrf(c), "key": "approve-2", "doc": "金" * 200})
    assert r.status_code == 303  # 200 characters are enough for any document number


def test_a_session_lasts_twelve_hours_from_sign_in_however_busy(ws, monkeypatch):
    """The cookie is signed anew whenever the session changes (each action's message), and its age was counted
    from the last signing: a session in use never ended. It now ends 12 hours after its sign-in."""
    import web.app
    engine, app = ws
    real, offset = time.time, [0.0]
    monkeypatch.setattr(time, "time", lambda: real() + offset[0])
    c = login(app, "clerk")
    offset[0] = 11 * 3600
    _reserve(c, "P2026-01")  # an action: its message re-signs the cookie at +11 h
    assert c.get("/projects").status_code == 200
    with engine.begin() as conn:  # the server's clock 12 hours and a minute after the sign-in
        signed_in = conn.execute(text("SELECT created_at FROM web_session WHERE name = 'clerk'")).scalar()
        earlier = (dt.datetime.fromisoformat(signed_in.replace("Z", "+00:00"))
                   - dt.timedelta(seconds=web.app.SESSION_MAX_AGE + 60)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        conn.execute(text("UPDATE web_session SET created_at = :t WHERE name = 'clerk'"), {"t": earlier})
    assert c.get("/projects").status_code == 303  # to the sign-in form


def test_a_tally_import_confirmed_after_the_rulebook_changed_is_refused_not_credited_otherwise(ws, tmp_path):
    """The planner's dry run says what a tally file would credit, then the planner confirms. An administrator loading
    a rulebook with a discount in between made the confirmation credit half of what was shown (measured: shown
    COD 2.0000 t/a, credited 1.0000 t/a, silently): it is refused (import_changed, nothing written), and checked
    again the file imports with the amounts then shown."""
    engine, app = ws
    from tests.conftest import DATA
    planner = login(app, "planner")
    header = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,baseline_year,"
              "effective_date,method,assessor,report_no")
    tallies = (header + "\nT-R1,S-R1,新关闭企业,closure,JT-YT,COD,2.0,,,t/a,2024,2026-01-15,monitoring,Lab,R-9\n").encode()
    r = planner.post("/import/tallies", data={"csrf_token": csrf(planner)}, files={"file": ("t.csv", tallies, "text/csv")})
    assert r.status_code == 200 and "2.0000" in text_of(r.text)
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                           r.text.split('id="confirm-form"')[1].split("</form>")[0]))
    discounted = tmp_path / "rules.toml"
    discounted.write_text((DATA / "rules.toml").read_text(encoding="utf-8").replace("discount = 0.0", "discount = 0.5"),
                          encoding="utf-8")
    admin = login(app, "admin")
    r = admin.post("/admin/rules", data={"csrf_token": csrf(admin)},
                   files={"file": ("rules.toml", discounted.read_bytes(), "application/toml")})
    assert r.status_code == 303
    before = snapshot(engine)
    r = planner.post("/import/tallies/confirm", data=form)
    assert r.status_code == 409 and "试算" in text_of(r.text), text_of(r.text)[-400:]
    assert snapshot(engine) == before
    r = planner.post("/import/tallies", data={"csrf_token": csrf(planner)}, files={"file": ("t.csv", tallies, "text/csv")})
    assert r.status_code == 200 and "1.0000" in text_of(r.text)  # shown anew, under the rulebook in force
    form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                           r.text.split('id="confirm-form"')[1].split("</form>")[0]))
    assert planner.post("/import/tallies/confirm", data=form).status_code == 303
    with engine.connect() as conn:
        assert conn.execute(text("SELECT creditable_g FROM tally WHERE tally_id = 'T-R1'")).scalar_one() == 1_000_000


def test_every_export_as_of_the_last_day_of_the_calendar_is_made_not_a_500(ws, tmp_path):
    """An auditor asking for the ledger as of 9999-12-31 (the date picker's far end): the Beancount export dated its
    balance assertions the day after, which does not exist, and the request died with an OverflowError (the
    connection reset; `quota export --format beancount --as-of 9999-12-31` crashed the same way). Every format is
    answered, and the Beancount file still verifies."""
    engine, app = ws
    from quota.audit import beancount_export
    c = login(app, "auditor")
    for fmt in ("jsonl", "beancount", "xlsx", "csv.zip", "parquet.zip"):
        r = c.get(f"/audit/export.{fmt}?as_of=9999-12-31")
        assert r.status_code == 200, (fmt, r.status_code)
    path = tmp_path / "ledger.beancount"
    path.write_bytes(c.get("/audit/export.beancount?as_of=9999-12-31").content)
    summary, problems = beancount_export.verify_beancount(str(path))
    assert problems == [], problems
