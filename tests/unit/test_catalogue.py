"""Refusals as data: every code a user can meet renders in English and Chinese from its facts, the README lists
exactly the codes there are, and no regular expression reads a message back."""
from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from quota.errors import Problem, Reason
from quota.report import catalogue, findings

ROOT = Path(__file__).resolve().parents[2]
CJK = re.compile(r"[\u4e00-\u9fff]")

# facts of each refusal code, as the library raises them (a code may be raised with several shapes of facts)
REFUSAL_FACTS: dict[str, list[dict]] = {
    "insufficient_quota": [{"project_id": "P1", "short": [{"pollutant": "COD", "key": "CDH", "required_g": 9_000_000,
                                                          "eligible_g": 1_000_000, "short_g": 8_000_000,
                                                          "unit": "t/a", "ratio": "1.5"}]}],
    "holding_mismatch": [{"project_id": "P1", "problems": [
        {"pollutant": "COD", "problem": "short", "held_g": 1, "required_g": 2, "key": "CDH", "ratio": "2",
         "unit": "t/a"}, {"pollutant": "TP", "problem": "not_needed", "held_g": 5, "unit": "t/a"}]}],
    "lot_not_eligible": [{"project_id": "P1", "problems": [
        {"pollutant": "COD", "problem": "lot_not_eligible", "lot": "L1", "held_g": 1, "unit": "t/a",
         "reason": Reason("lot_expired", lot="L1", expires="2026-01-01")}]},
        {"project_id": "P1", "lot": "L1", "reason": Reason("lot_key", lot="L1", key="CDH", needs="TH")}],
    "nothing_to_reserve": [{"project_id": "P1", "pollutants": ["COD", "TP"]}],
    "preview_changed": [{"project_id": "P1"}],
    "import_changed": [{"file": "t.csv"}],
    "project_state": [{"project_id": "P1", "state": s, "action": a} for s, a in (
        ("reserved", "reserve"), ("pipeline", "approve"), ("approved", "release"), ("cancelled", "cancel"))],
    "unknown_pollutant": [{"project_id": "P1", "pollutant": "TP"}],
    "lot_state": [{"lot": "L1", "state": s} for s in ("revoked", "superseded")],
    "plan_state": [{"plan_id": "PLAN-0001", "reason": "applied", "applied_at": "2026-01-01"},
                   {"plan_id": "PLAN-0001", "reason": "malformed", "detail": "Expecting value: line 1"}]
    + [{"plan_id": "PLAN-0001", "reason": r} for r in ("infeasible", "scenario")],
    "plan_stale": [{"plan_id": "PLAN-0001", "problems": [
        Reason("plan_no_lot", lot="L1"), Reason("plan_project_state", project_id="P1", state="missing"),
        Reason("plan_draw_refused", project_id="P1", pollutant="COD",
               reason=Reason("lot_status", lot="L1", state="revoked"))]}],
    "bad_date": [{"reason": "future", "what": "date", "date": "2027-01-01", "today": "2026-01-01"},
                 {"reason": "backdated", "what": "date", "date": "2020-01-01", "last": "2021-01-01"},
                 {"reason": "lapse", "date": "2026-01-01", "today": "2026-02-01"},
                 {"reason": "before_posting", "date": "2026-01-01", "account": "lot:L1", "lot": "L1",
                  "last": "2026-02-01"},
                 {"reason": "not_a_date", "what": "date", "value": "tomorrow"},
                 {"reason": "clock_ahead", "what": "QUOTA_TODAY", "value": "2030-01-01", "calendar": "2026-01-01"}],
    "overdraw": [{"account": "lot:L1", "lot": "L1", "balance_g": 5, "change_g": -6}],
    "missing_doc": [{}], "missing_memo": [{}],
    "reservation_lapsed": [{"project_id": "P1", "lapsed": "2026-01-01"}],
    "bad_id": [{"what": "project id", "value": "P1\u200b", "reason": "char_invisible", "char": "U+200B"}],
    "bad_text": [{"what": "memo", "value": "a\x1bb", "reason": "char_escape", "char": "U+001B"}],
    "bad_key": [{"reason": "empty"}, {"reason": "too_long", "length": 300, "max": 200},
                {"reason": "control_character", "character": "U+0007"}],
    "key_conflict": [{"key": "k1", "command": "reserve"}, {"key": "k1", "user": "clerk", "by": "planner"}],
    "output_is_database": [{"path": "quota.db", "reason": r} for r in ("ledger", "in_folder", "sqlite")],
    "output_kind": [{"path": "out", "reason": r} for r in ("is_folder", "not_folder")],
    "output_not_regular": [{"path": "/dev/stdout"}],
    "output_not_ours": [{"path": "out", "files": ["a.txt"]}],
    "cannot_write": [{"path": "/x/y", "reason": "No space left on device", "errno": 28},
                     {"path": "", "reason": "Read-only file system", "errno": 30}],
    "unknown_code": [{"what": "pollutant", "value": "XYZ", "known": ["COD", "TP"]},
                     {"what": "zone", "value": "Q", "known": ["CDH"]}],
    "bad_option": [{"option": o, "value": "x"} for o in ("time_limit", "gap", "by", "years", "lock_timeout")]
    + [{"option": "solver", "value": "gurobi", "known": ["auto", "highs", "cbc"]},
       {"option": "format", "value": "pdf", "known": ["md", "html", "xlsx"]},
       {"option": "format", "value": "xlsx", "reason": "needs_out"}, {"option": "lang", "value": "fr"}],
    "ledger_busy": [{"attempts": 3, "lock_timeout": "5 s"}],
    "cannot_grant": [{"user": "u", "schema": "public", "not_owned": ["txn"]},
                     {"user": "u", "schema": "public", "roles": ["quota_clerk"]}],
    "not_postgresql": [{}],
    "not_found": [{"what": w, "value": "X1"} for w in ("project", "lot", "plan", "user")] + [{"schema": "s1"}],
    "not_initialised": [{"reason": r} for r in ("no_schema", "no_rulebook", "old_schema")],
    "bad_database_url": [{"url": "mysql://h/d"}],
    "in_transaction": [{}], "not_fresh": [{"url": "sqlite:///q.db"}],
    "database_error": [{"detail": "connection refused"}],
    "internal_error": [{"kind": "RuntimeError", "detail": "boom", "file": "/tmp/quota-crash-x.txt"}],
    "invalid_input": [{"problems": [{"source": "t.csv", "row": 2, "column": "zone", "message": "m"}]}],
    "bad_username": [{"name": "a b"}], "bad_role": [{"role": "boss", "known": ["clerk", "admin"]}],
    "weak_password": [{"length": 3, "min": 10}],
    "wrong_password": [{"name": "wang", "reason": "bad_credentials"}, {"name": "wang", "reason": "locked"}],
    "password_mismatch": [{"name": "wang"}],
    "user_exists": [{"name": "wang"}], "user_disabled": [{"name": "wang"}],
    "bad_upload": [{"reason": "too_large", "max_mb": 20}, {"reason": "unknown"}, {"reason": "gone"}],
    "unreadable_export": [{"path": "x.jsonl", "reason": "file_not_found"}, {"path": "x.jsonl", "reason": "not_utf8",
                                                                           "byte": 3}],
}


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("code", sorted(findings.PROBLEMS))
def test_every_finding_renders_in_both_languages_from_the_same_facts(code):
    en, zh = findings.PROBLEMS[code]
    assert _fields(en) == _fields(zh), code  # the two languages say the same facts
    facts = {name: f"<{name}>" for name in _fields(en)}
    for lang in ("en", "zh"):
        text = findings.problem_text(code, facts, lang)
        assert all(f"<{name}>" in text for name in facts), (code, lang, text)  # every fact is shown
    zh_text = findings.problem_text(code, facts, "zh")
    assert CJK.search(zh_text) or zh != en, code  # Chinese words, or a Chinese layout of facts alone
    assert not CJK.search(findings.problem_text(code, facts, "en")), code


def test_word_facts_are_shown_in_the_language_and_lists_are_joined():
    p = Problem.of("s.toml", 3, "projects[1].must_fund", "wrong_type", expected="boolean", got_kind="string",
                   got='"false"')
    assert p.message == 'must be true or false, got a string "false"'
    assert p.text("zh") == '应为true 或 false，实际为字符串 "false"'
    assert p.located("zh") == 's.toml:3 [projects[1].must_fund]: 应为true 或 false，实际为字符串 "false"'
    p = Problem.of("t.csv", 2, "zone", "unknown_zone", value="Q", known=["A", "B"])
    assert p.message.endswith("(rulebook has A, B)") and p.text("zh").endswith("（规则库中有：A、B）")
    assert p.to_dict()["code"] == "unknown_zone" and p.to_dict()["facts"]["known"] == ["A", "B"]


@pytest.mark.parametrize("code", sorted(REFUSAL_FACTS))
def test_every_refusal_renders_in_english_and_chinese_from_its_facts(code):
    for facts in REFUSAL_FACTS[code]:
        en, zh = catalogue.refusal(code, facts, "en"), catalogue.refusal(code, facts, "zh")
        assert en and not CJK.search(en), (code, en)
        assert CJK.search(zh), (code, zh)
        for text in (en, zh):  # a fact the template needs and the sample lacks would show as {name}, ? or None
            assert not re.search(r"\{\w*\}|\?|\bNone\b", text), (code, text)


def test_states_and_plan_statuses_have_chinese_words():
    for word in ("pipeline", "reserved", "approved", "cancelled", "revoked", "superseded", "expired", "active",
                 "optimal", "feasible", "infeasible", "scenario"):
        assert CJK.search(findings.WORDS_ZH[word]), word
    assert "已批复" in catalogue.refusal("project_state", {"project_id": "P1", "state": "approved"}, "zh")


def _error_classes() -> dict[str, str]:
    """Every QuotaError class of the library: name -> its own code."""
    import quota.clock  # noqa: F401  (the modules defining QuotaError subclasses)
    import quota.store.db  # noqa: F401
    from quota.errors import QuotaError
    found, todo = {}, [QuotaError]
    while todo:
        cls = todo.pop()
        found[cls.__name__] = cls.code
        todo += cls.__subclasses__()
    return found


def _written_codes(node) -> list[str]:
    """The code(s) an expression names: "code", or "a" if ... else "b"."""
    if isinstance(node, ast.IfExp):
        return _written_codes(node.body) + _written_codes(node.orelse)
    return [node.value] if isinstance(node, ast.Constant) and isinstance(node.value, str) else []


def _raise_sites() -> list[tuple[str, int, str, frozenset, bool]]:
    """Every place a refusal is made in quota/, cli/ and web/: (file, line, code, names of the facts it passes,
    whether it spreads more facts with **). A Refused names its code first; a subclass (NotFound, LedgerBusy...)
    has its own."""
    classes = _error_classes()
    sites = []
    for folder in ("quota", "cli", "web"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                name = getattr(node.func, "id", getattr(node.func, "attr", "")) if isinstance(node, ast.Call) else ""
                if name not in classes or name == "ValidationFailed":
                    continue
                where = (str(path.relative_to(ROOT)), node.lineno)
                args = list(node.args)
                if classes[name] in ("error", "refused"):  # Refused, QuotaError: the code comes first
                    assert args, f"{where}: {name}(...) without a code"
                    codes = _written_codes(args.pop(0))
                    assert codes, f"{where}: the code of {name}(...) is not written out"
                else:
                    codes = [classes[name]]
                assert not args, f"{where}: {name}(...) gives a message or facts by position; give facts by name"
                kw = frozenset(k.arg for k in node.keywords if k.arg)
                spread = any(k.arg is None for k in node.keywords)
                sites += [(*where, code, kw, spread) for code in codes]
    return sites


def test_every_raise_site_gives_code_and_facts_that_render_in_both_languages():
    """No message is written where a refusal is raised; each raise site's facts match a sample of REFUSAL_FACTS
    (so a new fact, or a new shape of facts, needs a sample, and every sample is rendered in en and zh above)."""
    sites = _raise_sites()
    assert len(sites) > 50
    codes = {s[2] for s in sites}
    assert {"insufficient_quota", "plan_stale", "unreadable_export", "database_error", "ledger_busy",
            "not_initialised", "key_conflict", "bad_upload"} <= codes
    for file, line, code, kw, spread in sites:
        assert code in catalogue.REFUSALS_EN and code in catalogue.REFUSALS_ZH, (file, line, code)
        samples = [set(f) for f in REFUSAL_FACTS.get(code, [])]
        assert any(s >= kw if spread else s == kw for s in samples), \
            f"{file}:{line}: {code} raised with facts {sorted(kw)}: add a sample with them to REFUSAL_FACTS"
    assert set(catalogue.REFUSALS_EN) == set(catalogue.REFUSALS_ZH) == set(REFUSAL_FACTS)
    assert codes | {"invalid_input"} == set(REFUSAL_FACTS), set(REFUSAL_FACTS) - codes


def test_str_of_a_refusal_is_its_english_rendering():
    from quota.errors import NotFound, Refused
    exc = Refused("project_state", project_id="P1", state="reserved", action="reserve")
    assert str(exc) == "project P1 is reserved; only pipeline projects can be reserved"
    assert exc.text("zh") == "项目 P1 当前状态为已预留，只有待审项目可以预留"
    assert exc.to_dict() == {"error": {"code": "project_state", "message": str(exc), "project_id": "P1",
                                       "state": "reserved", "action": "reserve"}}
    assert str(NotFound(what="project", value="NOPE")) == "no project 'NOPE'"


def _readme_codes(heading: str) -> set[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(heading)
    table = text[start:].split("\n\n")[1]
    codes: set[str] = set()
    for line in table.splitlines()[2:]:
        first = line.split("|")[1]
        codes.update(re.findall(r"`(\w+)`", first))
    return codes


def test_the_readme_lists_exactly_the_codes_there_are():
    assert _readme_codes("Refusal codes") == set(catalogue.REFUSALS_ZH)
    assert _readme_codes("Finding codes") == set(findings.PROBLEMS)


def test_no_regular_expression_reads_a_message_back():
    assert not hasattr(catalogue, "ERROR_PATTERNS") and not hasattr(catalogue, "translate_error")
    for module in (catalogue, findings):
        source = Path(module.__file__).read_text(encoding="utf-8")
        assert not re.search(r"^import re$|\bre\.\w+\(", source, re.M), module.__name__


def test_library_problems_carry_codes():
    """The library builds every Problem (an input finding, a verify finding) with Problem.of (a code and facts),
    never from a bare message."""
    for folder in ("intake", "rules", "planning", "ledger", "audit", "store"):
        for path in (ROOT / "quota" / folder).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            bare = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call)
                    and getattr(n.func, "id", "") == "Problem"]
            assert not bare, f"{path.name}: Problem(...) without a code at lines {bare}"
