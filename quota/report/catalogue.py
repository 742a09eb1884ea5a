"""Message catalogue: user-facing strings of the CLI and the report in English and Chinese.

`t(key, lang, **params)` formats a message; `header(text, lang)` translates a table header;
`problem_text(code, facts, lang)` renders a validation finding (errors.Problem) and `refusal(code, facts, lang)` a
refusal (errors.QuotaError), both from their code and facts: no message is ever read back, and none is written
where a refusal is raised.
"""
from __future__ import annotations

from quota.report.findings import PROBLEMS, WORDS, WORDS_ZH, problem_text, reason_text  # noqa: F401  (re-exported)

LANGS = ("en", "zh")

MESSAGES: dict[str, dict[str, str]] = {
    "refused": {"en": "refused: {n} problem(s); nothing was written", "zh": "已拒绝：{n} 个问题；未写入任何数据"},
    "more_problems": {"en": "... and {n} more problem(s) (--json lists every one)",
                      "zh": "……另有 {n} 个问题（--json 列出全部）"},
    "verify_failed": {"en": "verification FAILED: {n} problem(s)", "zh": "校验失败：{n} 个问题"},
    "error": {"en": "error", "zh": "错误"},
    "web_bad_request": {"en": "the request is not valid ({fields}): {detail}", "zh": "请求无效（{fields}）：“{detail}”"},
    "error_prefix": {"en": "error: ", "zh": "错误："},
    "verified": {"en": "{what} verified: {txns} transactions, {posts} postings, {accts} balances; head {head} ({scheme})",
                 "zh": "{what}校验通过：{txns} 笔交易，{posts} 条分录，{accts} 个余额；链头 {head}（{scheme}）"},
    "ledger": {"en": "ledger", "zh": "台账"},
    "export_file": {"en": "export {path}", "zh": "导出文件 {path} "},
    "balance_title": {"en": "Quota balance as of {day}", "zh": "总量指标余额（截至 {day}）"},
    "credited": {"en": "{n} tallies credited", "zh": "已入库 {n} 条测算"},
    "would_credit": {"en": "{n} tallies would be credited", "zh": "将入库 {n} 条测算（试运行）"},
    "capped": {"en": "{tally}: baseline capped at upgrade {by}'s post-upgrade emissions ({amount} {unit} credited)",
               "zh": "{tally}：基准按提升改造 {by} 的改造后排放量封顶（入库 {amount} {unit}）"},
    "read_encoding": {"en": "read {file} as {encoding} text (not UTF-8)", "zh": "已按 {encoding} 编码读取 {file}（不是 UTF-8）"},
    "read_sheet": {"en": "read {file}: sheet '{sheet}', header on row {row}", "zh": "已读取 {file}：工作表 '{sheet}'，表头在第 {row} 行"},
    "imported_projects": {"en": "imported {n} projects ({rows} rows)", "zh": "已导入 {n} 个项目（{rows} 行）"},
    "would_import_projects": {"en": "would import {n} projects ({rows} rows)", "zh": "将导入 {n} 个项目（{rows} 行，试运行）"},
    "reserved": {"en": "reserved {project}: {n} draw(s), transaction {txn}", "zh": "已预留 {project}：{n} 笔指标，交易 {txn}"},
    "approved": {"en": "approved {project} ({doc}), transaction {txn}", "zh": "已核定 {project}（{doc}），交易 {txn}"},
    "released": {"en": "released {project}, transaction {txn}", "zh": "已释放 {project} 的预留，交易 {txn}"},
    "cancelled": {"en": "cancelled {project}", "zh": "已撤销 {project}"},
    "expired": {"en": "expired {lots} lot(s); released {res} lapsed reservation(s)",
                "zh": "已核销过期批次 {lots} 个；释放过期预留 {res} 个"},
    "revoked": {"en": "revoked {g} g of {lot}, transaction {txn}", "zh": "已注销 {lot} 的 {g} 克，交易 {txn}"},
    "replayed": {"en": " (repeated key: nothing new was written)", "zh": "（重复的幂等键：未写入新数据）"},
    "retried": {"en": "note: retried {n} time(s) after transient database errors: {what}",
                "zh": "提示：数据库暂时性错误后自动重试 {n} 次：{what}"},
    "plan_head": {"en": "Plan {id} as of {day}: {status}, objective {obj} (bound {bound}, LP bound {lp}, gap {gap}), "
                        "{solver} in {secs} s",
                  "zh": "方案 {id}（截至 {day}）：{status}，目标值 {obj}（上界 {bound}，LP 上界 {lp}，差距 {gap}），"
                        "{solver} 用时 {secs} 秒"},
    "trace_head": {"en": "zone {zone}, industry {industry}, state {state}", "zh": "区域 {zone}，行业 {industry}，状态 {state}"},
    "funded": {"en": "Funded: {n} projects", "zh": "可保障项目：{n} 个"},
    "unfunded": {"en": "Unfunded: {n} projects", "zh": "未能保障项目：{n} 个"},
    "shadow": {"en": "Shadow prices: priority one more unit of quota would add (LP relaxation)",
               "zh": "影子价格：每增加一个单位指标可增加的优先级（线性松弛）"},
    "binding": {"en": "Binding: supply that blocks unfunded projects", "zh": "约束：限制未保障项目的指标供给"},
    "infeasible": {"en": "Must-fund projects cannot all be funded: short", "zh": "必保项目无法全部保障，缺口如下"},
    "candidates": {"en": "Candidate measures (cost of the chosen set: {cost})", "zh": "候选减排措施（所选组合费用：{cost}）"},
    "applied": {"en": "applied {id}: reserved {n} projects", "zh": "已执行方案 {id}：预留 {n} 个项目"},
    "chosen": {"en": "chosen", "zh": "选中"},
    "report_written": {"en": "report written to {path}", "zh": "报告已写入 {path}"},
    "initialised": {"en": "initialised {url}: rulebook version {version}", "zh": "已初始化 {url}：规则版本 {version}"},
    "rulebook_version": {"en": "rulebook version {version}", "zh": "规则版本 {version}"},
    "unchanged": {"en": " (unchanged)", "zh": "（未变化）"},
    "schema_at": {"en": "schema at revision {to} (was {was})", "zh": "数据库结构已到版本 {to}（原为 {was}）"},
    "schema_empty": {"en": "empty", "zh": "空"},
    "roles_created": {"en": "created/granted {roles} ({n} statements)", "zh": "已创建并授权 {roles}（{n} 条语句）"},
    "exported_jsonl": {"en": "exported {txns} transactions, {posts} postings to {path}",
                       "zh": "已导出 {txns} 笔交易、{posts} 条分录到 {path}"},
    "exported_beancount": {"en": "exported {txns} transactions on {accts} accounts to {path} (balance assertions dated "
                                 "the day after {day})",
                           "zh": "已导出 {txns} 笔交易、{accts} 个账户到 {path}（余额断言日期为 {day} 的次日）"},
    "exported_files": {"en": "exported {n} file(s) to {path}", "zh": "已导出 {n} 个文件到 {path}"},
    "with_manifest": {"en": ", with manifest.json", "zh": "，附 manifest.json"},
    "statement_written": {"en": "source statement written to {path}", "zh": "来源说明已写入 {path}"},
    "plan_files_written": {"en": "plan files written to {path}", "zh": "方案文件已写入 {path}"},
    "report_title": {"en": "Emission quota report — {name}", "zh": "总量指标报告 — {name}"},
    "report_as_of": {"en": "As of {day}", "zh": "截至 {day}"},
    "report_balance": {"en": "Available, reserved and allocated quota by pollutant and matching key",
                       "zh": "按污染物与匹配区域的可用、预留、已核定指标"},
    "report_expiry": {"en": "Lots by expiry date", "zh": "指标批次到期时间"},
    "report_expiring": {"en": "Expiring in the next 12 months", "zh": "未来 12 个月内到期"},
    "report_plan": {"en": "Plan {id}: supply and demand by pollutant and key", "zh": "方案 {id}：按污染物与匹配区域的供需"},
    "report_projects": {"en": "Funded and unfunded projects", "zh": "保障与未保障项目"},
    "report_flow": {"en": "Where the quota comes from: sources → projects", "zh": "指标流向：平衡源 → 项目"},
    "report_none": {"en": "nothing", "zh": "无"},
    "report_flagged": {"en": "Quota held from revoked or superseded lots (for the auditor)",
                       "zh": "来自已注销或已被替代批次的指标（供审计核查）"},
    "report_outlook": {"en": "Outlook {first}–{last}: quota left at each year's end, and demand the plan cannot fund",
                       "zh": "{first}–{last} 年展望：各年末剩余指标，以及方案无法保障的需求"},
    "outlook_left": {"en": "left at year end", "zh": "年末剩余"},
    "outlook_short": {"en": "unfunded demand", "zh": "未保障需求"},
    "available": {"en": "available", "zh": "可用"},
    "reserved_kind": {"en": "reserved", "zh": "预留"},
    "allocated_kind": {"en": "allocated", "zh": "已核定"},
    "supply": {"en": "supply", "zh": "供给"},
    "demand": {"en": "demand", "zh": "需求"},
    "funded_word": {"en": "funded", "zh": "保障"},
    "unfunded_word": {"en": "unfunded", "zh": "未保障"},
}

HEADERS: dict[str, str] = {
    "Pollutant": "污染物", "Zone": "区域", "Lot": "批次", "Available": "可用", "Reserved": "预留",
    "Allocated": "已分配", "Lapsed": "已过期未核销", "Unit": "单位", "Expires": "到期", "Tally": "测算编号",
    "Source": "平衡源", "State": "状态", "Issued": "入库量", "Amount": "数量", "Report": "报告编号",
    "Project": "项目", "Priority": "优先级", "Needed by": "需求日期", "Increment": "新增量", "Ratio": "替代比例",
    "Required": "所需指标", "Key": "匹配键", "File": "文件", "Row": "行", "Column": "列", "Problem": "问题",
    "Name": "名称", "Measure": "措施", "Assessor": "测算单位", "Held": "已持有", "Why": "依据",
    "Cost": "费用", "Candidate": "候选措施", "Short": "缺口", "Supply": "供给", "Used": "已用", "Blocks": "受限项目",
    "Expires after": "到期晚于", "Value": "影子价格", "Requirement": "总量需求", "Sources of the quota": "指标来源",
    "Pollutants": "污染物", "Zones": "区域", "Projects": "项目",
}

def t(key: str, lang: str = "en", **params) -> str:
    entry = MESSAGES[key]
    return entry.get(lang, entry["en"]).format(**params)


def header(text: str, lang: str = "en") -> str:
    return HEADERS.get(text, text) if lang == "zh" else text


# Refusals rendered from their code and facts (errors.QuotaError.code/.facts), never read back from a message.
def _w(word: str) -> str:
    """A word code (a state, a kind...) in Chinese."""
    return WORDS_ZH.get(word, word)


WHAT_ZH = {"pollutant": "污染物", "zone": "区域", "solver": "求解器（--solver）", "time_limit": "时间限制（--time-limit）",
           "gap": "差距（--gap）", "by": "分组方式（--by）", "years": "年数（--years）",
           "lock_timeout": "锁等待时间（--lock-timeout）", "project id": "项目编号", "lot serial": "批次编号",
           "plan id": "方案编号", "lang": "语言（--lang）", "format": "格式（--format）", "project": "项目", "lot": "指标批次", "plan": "方案", "doc": "批复文号", "memo": "说明",
           "actor": "操作人", "date": "日期", "QUOTA_TODAY": "QUOTA_TODAY", "user": "用户",
           "session": "会话", "API token": "API 令牌", "label": "令牌用途"}


def _what(word: str) -> str:
    return WHAT_ZH.get(word, word)


# English renderings of the refusals, from the same facts as the Chinese (REFUSALS_ZH below): no message is
# written where a refusal is raised (tests/unit/test_catalogue.py walks every raise site).
def _short_en(f: dict) -> str:
    from quota.units import display, display_up
    parts = [f"{s['pollutant']} short by {display_up(s['short_g'], s['unit'])} {s['unit']} ({s['short_g']} g) in "
             f"{s['key']} (needs {display_up(s['required_g'], s['unit'])} at ratio {s.get('ratio', '?')}, eligible "
             f"{display(s['eligible_g'], s['unit'])})" for s in f.get("short", [])]
    return f"cannot reserve {f['project_id']}: " + "; ".join(parts)


def _holding_en(f: dict) -> str:
    from quota.units import display, display_up
    parts = []
    for p in f.get("problems", []):
        unit = p.get("unit") or "t/a"
        if p["problem"] == "lot_not_eligible":
            parts.append(f"{p['pollutant']}: {reason_text(p['reason'], 'en')}")
        elif p["problem"] == "not_needed":
            parts.append(f"{p['pollutant']}: holds {display(p['held_g'], unit)} {unit} it does not need")
        else:
            parts.append(f"{p['pollutant']}: holds {display(p['held_g'], unit)} of the "
                         f"{display_up(p['required_g'], unit)} {unit} required in {p['key']} at ratio {p['ratio']}")
    pid = f["project_id"]
    return (f"project {pid} cannot be approved: " + ("; ".join(parts) or "its holding does not match the rules in "
                                                                      "force")
            + f"; run `quota reserve {pid}` to bring it to the requirement")


def _project_state_en(f: dict) -> str:
    pid, state = f["project_id"], f["state"]
    return {"reserve": f"project {pid} is {state}; only pipeline projects can be reserved",
            "approve": f"project {pid} is {state}; reserve it before approving",
            "release": f"project {pid} is {state} and holds no reservation to release",
            "cancel": f"project {pid} is already {state}"}.get(
        f.get("action", ""), f"project {pid} is {state}; this operation is not allowed in that state")


def _plan_state_en(f: dict) -> str:
    pid = f["plan_id"]
    return {"applied": f"plan {pid} was already applied at {f.get('applied_at', '')}",
            "malformed": f"plan {pid} is malformed ({f.get('detail', '')}); run the plan again",
            "infeasible": f"plan {pid} is infeasible; there is nothing to apply",
            "scenario": f"plan {pid} is a scenario (hypothetical lots, projects or rules); it cannot be applied"}.get(
        f.get("reason", ""), f"plan {pid} cannot be applied in its state")


def _plan_stale_en(f: dict) -> str:
    problems = f.get("problems", [])
    return (f"plan {f['plan_id']} no longer fits the ledger: " + "; ".join(reason_text(p, "en") for p in problems[:5])
            + (f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""))


def _bad_date_en(f: dict) -> str:
    what, reason = f.get("what", "date"), f.get("reason", "")
    if reason == "clock_ahead" or "calendar" in f:
        return (f"QUOTA_TODAY {f['value']} is after the calendar's date ({f['calendar']}): the clock may be pinned "
                "back, never ahead")
    if reason == "not_a_date" or "value" in f:
        return f"{what} {f['value']!r} is not a date (use YYYY-MM-DD)"
    if reason == "before_posting":
        return (f"effective date {f['date']} is before the last posting on {f['account']} ({f['lot']}) dated "
                f"{f['last']}; ledger history cannot be rewritten")
    if reason == "future" or "today" in f and "last" not in f and reason != "lapse":
        return f"{what} {f['date']} is after today ({f['today']}); the ledger records what has happened"
    if reason == "backdated" or "last" in f:
        return (f"{what} {f['date']} is before the ledger's last transaction ({f['last']}); mutations cannot be "
                "back-dated")
    return f"the reservation's lapse date {f['date']} must be after its date {f.get('today', '?')}"


def _output_is_database_en(f: dict) -> str:
    from pathlib import PurePath
    if f.get("reason") == "ledger":
        return (f"{f['path']} is the ledger's database file; an output never overwrites the database "
                "(choose another file name)")
    if f.get("reason") == "in_folder":
        path = PurePath(f["path"])
        return f"{path.parent} holds a SQLite database ({path.name}); an output never replaces a database"
    return f"{f['path']} is a SQLite database; an output never overwrites a database (choose another file name)"


def _bad_option_en(f: dict) -> str:
    value, known = f["value"], ", ".join(f.get("known", []))
    return {"years": f"years must be between 1 and 50, got {value}",
            "solver": f"unknown solver {value!r} (use {known})",
            "time_limit": f"the time limit must be a number of seconds above 0 (at most a day), got {value}",
            "gap": f"the gap must be a fraction from 0 to below 1, got {value}",
            "by": f"cannot group by {value!r}: use pollutant, zone or lot",
            "lock_timeout": f"lock timeout {value!r} must be a number of seconds from 0 to 3600",
            "lang": f"--lang must be en or zh, got {value!r}",
            "format": (f"--format {value} needs --out FILE" if f.get("reason") == "needs_out" else
                       f"--format must be one of {known}, got {value!r}")}.get(
        f["option"], f"invalid value for {f['option']}: {value}")


def _not_found_en(f: dict) -> str:
    if "schema" in f:
        return f"schema {f['schema']!r} has no quota ledger: run `quota init --rules FILE` first"
    return f"no {f.get('what') or 'such thing'} {f.get('value', '')!r}"


def _not_initialised_en(f: dict) -> str:
    return {"no_rulebook": "no rulebook loaded: run `quota init --rules FILE` first",
            "old_schema": "the database schema is older than this version of quota: run `quota db upgrade`"}.get(
        f.get("reason", ""), "the database has no quota schema: run `quota init --rules FILE` first")


def _invalid_input_en(f: dict) -> str:
    problems = f.get("problems", [])

    def located(p: dict) -> str:
        where = p.get("source", "") + (f":{p['row']}" if p.get("row") else "")
        return where + (f" [{p['column']}]" if p.get("column") else "") + f": {p.get('message', '')}"
    more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
    return f"{len(problems)} problem(s): " + "; ".join(located(p) for p in problems[:3]) + more


REFUSALS_EN = {
    "insufficient_quota": _short_en,
    "holding_mismatch": _holding_en,
    "lot_not_eligible": lambda f: (_holding_en(f) if "problems" in f else
                                   f"cannot reserve {f['project_id']}: {reason_text(f.get('reason', ''), 'en')}"),
    "preview_changed": lambda f: (f"the reservation of {f['project_id']} would now take other draws than the ones "
                                  "shown (the ledger or the rulebook changed meanwhile); nothing was written: review "
                                  "them again"),
    "import_changed": lambda f: (f"{f['file']} would now credit other amounts than its dry run showed (the rulebook "
                                 "or the ledger changed meanwhile); nothing was written: check the file again"),
    "nothing_to_reserve": lambda f: f"project {f['project_id']} is already reserved in full for "
                                    + ", ".join(f.get("pollutants") or ["its pollutants"]),
    "project_state": _project_state_en,
    "unknown_pollutant": lambda f: f"project {f['project_id']} has no {f['pollutant']} increment",
    "lot_state": lambda f: f"lot {f['lot']} is already {f['state']}",
    "plan_state": _plan_state_en,
    "plan_stale": _plan_stale_en,
    "bad_date": _bad_date_en,
    "overdraw": lambda f: f"{f['account']} ({f['lot']}) would go negative: {f['balance_g']} + {f['change_g']} g",
    "missing_doc": lambda f: "an approval needs the approval document number (--doc)",
    "reservation_lapsed": lambda f: f"the reservation of {f['project_id']} lapsed on {f['lapsed']}; reserve it again "
                                    "(`quota expire` releases lapsed reservations)",
    "missing_memo": lambda f: "a revocation needs its reason (--memo)",
    "bad_id": lambda f: f"{f['what']} {f.get('value', '')!r} {problem_text(f['reason'], f, 'en')}",
    "bad_text": lambda f: f"{f['what']} {f.get('value', '')!r} {problem_text(f['reason'], f, 'en')}",
    "bad_key": lambda f: {"empty": "the idempotency key is empty; give a non-empty --key or leave it out",
                          "too_long": f"the idempotency key has {f.get('length')} characters; at most {f.get('max')} "
                                      "are allowed",
                          "control_character": f"the idempotency key holds a control character ({f.get('character')});"
                                               " use letters, digits and punctuation"}[f["reason"]],
    "key_conflict": lambda f: (f"key {f['key']!r} was recorded by database user {f['user']}, not {f.get('by', '?')}; "
                               "use a new key" if f.get("user") else
                               f"key {f['key']!r} was already used for a different request ({f.get('command', '?')}); "
                               "use a new key"),
    "output_is_database": _output_is_database_en,
    "output_kind": lambda f: (f"{f['path']} exists and is not a folder; this export writes a folder"
                              if f.get("reason") == "not_folder" else f"{f['path']} is a folder; give a file name"),
    "output_not_regular": lambda f: f"{f['path']} is not a regular file (a pipe or a device); an output is written to "
                                    "a file, give a file name",
    "output_not_ours": lambda f: f"{f['path']} exists and holds files this export does not write "
                                 f"({', '.join(f['files'][:5])}{' …' if len(f['files']) > 5 else ''}); choose a new "
                                 "folder or remove it first",
    "cannot_write": lambda f: f"cannot write {f.get('path') or 'the output'}: {f.get('reason', '')}",
    "unknown_code": lambda f: f"unknown {f['what']} {f['value']!r}"
                              + (f" (the rulebook has {', '.join(f['known'])})" if f.get("known") else ""),
    "bad_option": _bad_option_en,
    "ledger_busy": lambda f: f"the ledger is busy: another writer held its lock through {f['attempts']} attempt(s) of "
                             f"{f['lock_timeout']} each; nothing was written, try again later (QUOTA_LOCK_TIMEOUT "
                             "sets the wait)",
    "cannot_grant": lambda f: (f"{f['user']} cannot grant on schema {f['schema']!r}: it does not own "
                               f"{', '.join(f['not_owned'])}. Run `quota db roles` as the ledger's owner (the user "
                               f"that ran `quota init`), or give them the SQL of `quota db roles --print --schema "
                               f"{f['schema']}`" if f.get("not_owned") else
                               f"{f['user']} cannot create roles (it lacks CREATEROLE): run `quota db roles` as a "
                               f"user who can, or have the roles {', '.join(f.get('roles', []))} created first"),
    "not_postgresql": lambda f: "roles are a PostgreSQL feature; SQLite has no users",
    "not_found": _not_found_en,
    "not_initialised": _not_initialised_en,
    "bad_database_url": lambda f: f"cannot use the database URL {f.get('url', '')!r}: use sqlite:///FILE (the "
                                  "default is sqlite:///quota.db) or postgresql+psycopg://user@host/dbname",
    "in_transaction": lambda f: "this connection is already in a transaction; a ledger operation is a transaction "
                                "of its own (commit or roll back first, or pass the engine)",
    "not_fresh": lambda f: f"{f['url']} already holds a quota ledger; the demo needs a fresh database",
    "database_error": lambda f: f"database error: {f['detail']}",
    "internal_error": lambda f: f"internal error ({f['kind']}: {f['detail']}); the traceback is in {f['file']} "
                                "(QUOTA_DEBUG=1 shows it)",
    "unreadable_export": lambda f: f"cannot verify {f['path']}: {problem_text(f['reason'], f, 'en')}",
    "invalid_input": _invalid_input_en,
}


def _short_zh(facts: dict) -> str:
    from quota.units import display, display_up
    parts = [f"{s['pollutant']} 在 {s['key']} 缺口 {display_up(s['short_g'], s['unit'])} {s['unit']}（{s['short_g']} 克；"
             f"需 {display_up(s['required_g'], s['unit'])}，可用 {display(s['eligible_g'], s['unit'])}）"
             for s in facts.get("short", [])]
    return f"无法为 {facts['project_id']} 预留指标：" + "；".join(parts)


def _holding_zh(facts: dict) -> str:
    from quota.units import display, display_up
    parts = []
    for p in facts.get("problems", []):
        if p["problem"] == "lot_not_eligible":
            parts.append(f"{p['pollutant']}：{reason_text(p['reason'], 'zh')}")
        elif p["problem"] == "not_needed":
            held = f"{display(p['held_g'], p['unit'])} {p['unit']}" if p.get("unit") else f"{p['held_g']} 克"
            parts.append(f"{p['pollutant']}：持有不需要的指标 {held}")
        else:
            unit = p.get("unit", "")
            held = display(p["held_g"], unit) + f" {unit}" if unit else f"{p['held_g']} 克"
            need = display_up(p["required_g"], unit) + f" {unit}" if unit else f"{p['required_g']} 克"
            parts.append(f"{p['pollutant']}：持有 {held}，{p['key']} 按比例 {p['ratio']} 需 {need}")
    pid = facts["project_id"]
    return (f"项目 {pid} 不能核定：" + ("；".join(parts) or "持有指标与现行规则下的需求不一致")
            + f"；请先运行 `quota reserve {pid}` 补足或重新落实")


def _plan_state_zh(f: dict) -> str:
    why = {"applied": f"已于 {f.get('applied_at', '')} 执行", "malformed": f"记录已损坏（“{f.get('detail', '')}”），请重新求解",
           "infeasible": "不可行，没有可执行的内容", "scenario": "是情景方案（假设的批次、项目或规则），不能执行"}
    return f"方案 {f['plan_id']} 不能执行：" + why.get(f.get("reason", ""), "状态不允许")


def _bad_date_zh(f: dict) -> str:
    if "calendar" in f:
        return f"QUOTA_TODAY {f['value']} 晚于日历日期（{f['calendar']}）：时钟只能回拨，不能提前"
    if "value" in f:
        return f"{_what(f.get('what', 'date'))} {f['value']!r} 不是日期（格式 YYYY-MM-DD）"
    reason = f.get("reason", "")
    if reason == "before_posting":
        return f"生效日期 {f['date']} 早于 {f['account']}（{f['lot']}）的最后一笔记账（{f['last']}）：台账历史不能改写"
    if reason == "future" or "today" in f and "last" not in f and reason != "lapse":
        return f"{_what(f.get('what', 'date'))} {f['date']} 晚于今天 {f['today']}：台账只记录已发生的事项"
    if reason == "backdated" or "last" in f:
        return f"{_what(f.get('what', 'date'))} {f['date']} 早于台账最后一笔交易（{f['last']}）：不能倒签"
    return f"预留到期日 {f['date']} 无效：须晚于预留日期 {f.get('today', '?')}"


REFUSALS_ZH = {
    "insufficient_quota": _short_zh,
    "holding_mismatch": _holding_zh,
    "lot_not_eligible": lambda f: (_holding_zh(f) if "problems" in f else
                                   f"无法为 {f['project_id']} 预留指标：{reason_text(f.get('reason', ''), 'zh')}"),
    "nothing_to_reserve": lambda f: f"项目 {f['project_id']} 已足额预留",
    "preview_changed": lambda f: f"{f['project_id']} 的预留方案已变化（台账或规则已更新），未写入任何数据；请重新查看后再确认",
    "import_changed": lambda f: f"{f['file']} 的入账数量已与试算结果不同（规则或台账已更新），未写入任何数据；请重新试算后再确认",
    "project_state": lambda f: f"项目 {f['project_id']} 当前状态为{_w(f['state'])}，" + {
        "reserve": "只有待审项目可以预留", "approve": "请先预留再核定", "release": "没有可释放的预留",
        "cancel": "不能再次撤销"}.get(f.get("action", ""), "不能执行此操作"),
    "unknown_pollutant": lambda f: f"项目 {f['project_id']} 没有 {f['pollutant']} 的新增排放量",
    "lot_state": lambda f: f"指标批次 {f['lot']} 已{_w(f['state']).lstrip('已')}",
    "plan_state": _plan_state_zh,
    "plan_stale": lambda f: f"方案 {f['plan_id']} 已与台账不符：" + "；".join(
        reason_text(p, "zh") for p in f.get("problems", [])[:5])
        + (f"（另有 {len(f['problems']) - 5} 项）" if len(f.get("problems", [])) > 5 else ""),
    "bad_date": _bad_date_zh,
    "overdraw": lambda f: f"{f['account']}（{f['lot']}）余额将为负：{f['balance_g']} + {f['change_g']} 克",
    "missing_doc": lambda f: "核定需要批复文号（--doc）",
    "reservation_lapsed": lambda f: f"项目 {f['project_id']} 的预留已于 {f['lapsed']} 到期，请重新预留"
                                    "（`quota expire` 会释放到期预留）",
    "missing_memo": lambda f: "注销需要说明原因（--memo）",
    "bad_id": lambda f: f"{_what(f['what'])} {f.get('value', '')!r} {problem_text(f['reason'], f, 'zh')}"
    if "reason" in f else f"{_what(f['what'])}无效",
    "bad_text": lambda f: f"{_what(f['what'])} {problem_text(f['reason'], f, 'zh')}" if "reason" in f
    else f"{_what(f['what'])}含有不允许的字符",
    "bad_key": lambda f: {"empty": "幂等键为空：请给出非空的 --key，或不使用该选项",
                          "too_long": f"幂等键过长（{f.get('length')} 个字符，最多 {f.get('max')} 个）",
                          "control_character": f"幂等键含控制字符（{f.get('character')}）"}[f["reason"]],
    "key_conflict": lambda f: (f"幂等键 {f['key']!r} 由数据库用户 {f['user']} 记录，请使用新的键" if f.get("user")
                               else f"幂等键 {f['key']!r} 已用于另一个请求，请使用新的键"),
    "output_is_database": lambda f: f"{f['path']} 是数据库文件：输出从不覆盖数据库，请换一个文件名",
    "output_kind": lambda f: (f"{f['path']} 已存在且不是文件夹：此导出写入一个文件夹" if f.get("reason") == "not_folder"
                             else f"{f['path']} 是文件夹：请给出文件名"),
    "output_not_regular": lambda f: f"{f['path']} 不是普通文件（是管道或设备）：输出只写入文件，请给出文件名",
    "output_not_ours": lambda f: f"{f['path']} 已存在，且含有本次导出不会写入的文件（{'、'.join(f['files'][:5])}）："
                                 "请换一个文件夹或先移除它",
    "cannot_write": lambda f: f"无法写入 {f.get('path') or '输出文件'}：{_errno_zh(f)}；未替换任何已有文件",
    "unknown_code": lambda f: f"未知{_what(f['what'])} '{f['value']}'",
    "bad_option": lambda f: (f"--format {f['value']} 需要 --out 文件" if f.get("reason") == "needs_out" else
                             f"{_what(f['option'])}的值无效：{f['value']!r}"
                             + (f"（可选：{'、'.join(f['known'])}）" if f.get("known") else
                                {"lang": "（可选：en、zh）", "by": "（可选：pollutant、zone、lot）",
                                 "years": "（须为 1 至 50）", "time_limit": "（须为大于 0 且不超过一天的秒数）",
                                 "gap": "（须为 0 至 1 之间的小数，不含 1）",
                                 "lock_timeout": "（须为 0 至 3600 秒）"}.get(f["option"], ""))),
    "ledger_busy": lambda f: f"台账繁忙：另一写入者一直持有写锁（已尝试 {f['attempts']} 次，每次等待 {f['lock_timeout']}），"
                             "未写入任何内容，请稍后重试",
    "cannot_grant": lambda f: (f"{f['user']} 无权在 schema {f['schema']} 上授权（不拥有 {'、'.join(f['not_owned'])}）："
                               "请由台账所有者运行 `quota db roles`" if f.get("not_owned") else
                               f"{f['user']} 不能创建角色（缺少 CREATEROLE 权限）：请由有权限的用户运行 `quota db roles`"),
    "not_postgresql": lambda f: "角色是 PostgreSQL 的功能；SQLite 没有用户",
    "not_found": lambda f: (f"schema {f['schema']} 中没有台账：请先运行 `quota init --rules 文件`" if "schema" in f
                            else f"没有{_what(f.get('what') or '对象')} {f.get('value', '')!r}"),
    "not_initialised": lambda f: {"no_rulebook": "尚未加载规则库：请先运行 `quota init --rules 文件`",
                                  "old_schema": "数据库结构早于此版本的 quota：请运行 `quota db upgrade`"}.get(
        f.get("reason", ""), "数据库尚未初始化（没有台账）：请先运行 `quota init --rules 文件`"),
    "bad_database_url": lambda f: f"不能使用数据库地址 {f.get('url', '')!r}：请使用 sqlite:///文件 "
                                  "或 postgresql+psycopg://用户@主机/数据库",
    "in_transaction": lambda f: "该连接已在事务中；台账操作自成一个事务（请先提交或回滚，或传入 engine）",
    "not_fresh": lambda f: f"{f['url']} 已有台账；演示需要一个新的数据库",
    "database_error": lambda f: f"数据库错误：“{f['detail']}”",
    "internal_error": lambda f: f"内部错误（{f['kind']}：“{f['detail']}”）；完整的回溯信息写在 {f['file']}"
                                "（QUOTA_DEBUG=1 可直接显示）",
    "unreadable_export": lambda f: f"无法校验 {f['path']}：{problem_text(f['reason'], f, 'zh')}",
    "invalid_input": lambda f: f"已拒绝：{len(f['problems'])} 个问题；未写入任何数据",
}


def _errno_zh(f: dict) -> str:
    import errno
    return {errno.ENOSPC: "磁盘空间不足", errno.EACCES: "没有权限", errno.EPERM: "没有权限", errno.ENOENT: "文件夹不存在",
            errno.EROFS: "只读文件系统", errno.EISDIR: "是文件夹", errno.ENOTDIR: "路径中有不是文件夹的部分",
            errno.EDQUOT: "超出磁盘配额", errno.EFBIG: "文件过大", errno.EIO: "输入输出错误"}.get(
        f.get("errno"), f"“{f.get('reason', '')}”")


def refusal(code: str, facts: dict, lang: str = "en") -> str:
    """A refusal (errors.QuotaError) in `lang`, rendered from its code and facts; every code has an English and a
    Chinese rendering (tests/unit/test_catalogue.py walks every raise site)."""
    return (REFUSALS_ZH if lang == "zh" else REFUSALS_EN)[code](facts)


# The web workspace (`quota serve`) and `quota user`: same catalogue, keys prefixed web_ (and user_).
MESSAGES.update({
    "user_added": {"en": "added user {name} ({role})", "zh": "已添加用户 {name}（{role}）"},
    "user_disabled": {"en": "disabled user {name}", "zh": "已停用用户 {name}"},
    "web_title": {"en": "quota — emission quota workspace", "zh": "总量指标管理平台"},
    "web_overview": {"en": "Overview", "zh": "总览"},
    "web_lots": {"en": "Lots", "zh": "指标批次"},
    "web_projects": {"en": "Projects", "zh": "项目"},
    "web_plans": {"en": "Plans", "zh": "方案"},
    "web_audit": {"en": "Audit", "zh": "审计"},
    "web_admin": {"en": "Administration", "zh": "系统管理"},
    "web_login": {"en": "Sign in", "zh": "登录"},
    "web_logout": {"en": "Sign out", "zh": "退出"},
    "web_username": {"en": "User name", "zh": "用户名"},
    "web_password": {"en": "Password", "zh": "密码"},
    "web_signed_in_as": {"en": "{name} ({role})", "zh": "{name}（{role}）"},
    "web_login_bad_credentials": {"en": "Wrong user name or password.", "zh": "用户名或密码错误。"},
    "web_login_locked": {"en": "Too many failed sign-ins: this account is locked until {until} (UTC).",
                         "zh": "登录失败次数过多：该账户已锁定至 {until}（UTC）。"},
    "web_login_disabled": {"en": "This account is disabled.", "zh": "该账户已停用。"},
    "web_login_required": {"en": "Please sign in.", "zh": "请先登录。"},
    "web_not_found": {"en": "There is no such page.", "zh": "没有这个页面。"},
    "web_forbidden": {"en": "Your role ({role}) may not do this ({action}).",
                      "zh": "您的角色（{role}）无权执行此操作（{action}）。"},
    "web_csrf": {"en": "The form has expired or did not come from this site (CSRF token missing or wrong). "
                       "Reload the page and try again.",
                 "zh": "表单已过期或不是来自本站（CSRF 令牌缺失或错误），请刷新页面后重试。"},
    "web_database_error": {"en": "Database error: nothing was written. Try again later.",
                           "zh": "数据库错误：未写入任何数据，请稍后重试。"},
    "web_internal_error": {"en": "Internal error: nothing was written.", "zh": "内部错误：未写入任何数据。"},
    "web_refused": {"en": "Refused", "zh": "已拒绝"},
    "web_back": {"en": "Back", "zh": "返回"},
    "web_as_of": {"en": "As of", "zh": "截至日期"},
    "web_show": {"en": "Show", "zh": "查看"},
    "web_filter": {"en": "Filter", "zh": "筛选"},
    "web_all": {"en": "all", "zh": "全部"},
    "web_chain_head": {"en": "Chain head: transaction {seq}, hash {hash}", "zh": "链头：第 {seq} 笔交易，哈希 {hash}"},
    "web_last_verified": {"en": "Last verified {at} (UTC) by {actor}, up to transaction {seq}: {result}",
                          "zh": "最近一次校验：{at}（UTC），{actor}，至第 {seq} 笔交易，{result}"},
    "web_never_verified": {"en": "Not verified yet (quota verify, or Audit → Verify).",
                           "zh": "尚未校验（quota verify，或 审计 → 校验台账）。"},
    "web_ok": {"en": "passed", "zh": "通过"},
    "web_failed": {"en": "FAILED", "zh": "未通过"},
    "web_page": {"en": "Page {n} of {of} ({total} lots)", "zh": "第 {n} / {of} 页（共 {total} 个批次）"},
    "web_previous": {"en": "Previous", "zh": "上一页"},
    "web_next": {"en": "Next", "zh": "下一页"},
    "web_expires_before": {"en": "Expires before", "zh": "到期早于"},
    "web_movements": {"en": "Movements", "zh": "变动记录"},
    "web_history": {"en": "History", "zh": "历史记录"},
    "web_actions": {"en": "Actions", "zh": "操作"},
    "web_reserve": {"en": "Reserve…", "zh": "预留…"},
    "web_reserve_confirm": {"en": "Confirm the reservation", "zh": "确认预留"},
    "web_reserve_preview": {"en": "The reservation of {project} would take these draws:",
                            "zh": "为 {project} 预留将使用以下指标："},
    "web_reserve_returns": {"en": "and give back:", "zh": "并退回："},
    "web_lapse_date": {"en": "Lapses on (optional)", "zh": "预留到期日（可选）"},
    "web_only_pollutant": {"en": "Only this pollutant (optional)", "zh": "仅此污染物（可选）"},
    "web_approve": {"en": "Approve", "zh": "核定"},
    "web_doc": {"en": "Approval document number", "zh": "批复文号"},
    "web_release": {"en": "Release the reservation", "zh": "释放预留"},
    "web_cancel": {"en": "Cancel the project", "zh": "撤销项目"},
    "web_statement": {"en": "Source statement", "zh": "总量来源说明"},
    "web_download": {"en": "Download", "zh": "下载"},
    "web_no_actions": {"en": "Your role can take no action here.", "zh": "您的角色在此无可执行的操作。"},
    "web_run_plan": {"en": "Run a plan", "zh": "运行方案"},
    "web_time_limit": {"en": "Time limit (s)", "zh": "时间限制（秒）"},
    "web_apply_plan": {"en": "Apply this plan", "zh": "执行此方案"},
    "web_verify": {"en": "Verify the ledger", "zh": "校验台账"},
    "web_exports": {"en": "Exports", "zh": "导出"},
    "web_transactions": {"en": "Transactions", "zh": "交易记录"},
    "web_from": {"en": "From", "zh": "起始日期"},
    "web_to": {"en": "To", "zh": "截止日期"},
    "web_older": {"en": "Older", "zh": "更早"},
    "web_users": {"en": "Users", "zh": "用户"},
    "web_add_user": {"en": "Add a user", "zh": "添加用户"},
    "web_disable": {"en": "Disable", "zh": "停用"},
    "web_new_token": {"en": "New API token", "zh": "新建 API 令牌"},
    "web_token_once": {"en": "API token of {name} (shown once, copy it now):", "zh": "{name} 的 API 令牌（仅显示一次，请立即复制）："},
    "web_revoke": {"en": "Revoke this lot", "zh": "注销此批次"},
    "web_memo": {"en": "Reason", "zh": "原因"},
    "web_expire": {"en": "Expire lots and lapsed reservations", "zh": "核销过期批次与过期预留"},
    "web_shortfall": {"en": "Shortfall per pollutant and matching key", "zh": "按污染物与匹配区域的缺口"},
    "web_nothing": {"en": "nothing", "zh": "无"},
    "web_verified_ok": {"en": "The ledger verifies: {txns} transactions, {posts} postings; head {head}.",
                        "zh": "台账校验通过：{txns} 笔交易，{posts} 条分录；链头 {head}。"},
    "web_public": {"en": "Public registry of emission quota", "zh": "总量指标环境信息公开"},
    "web_approved": {"en": "Approved allocations", "zh": "已核定的指标分配"},
    "web_rulebook": {"en": "Rulebook version {version}", "zh": "总量管理规则（第 {version} 版）"},
    "web_load_rules": {"en": "Load a new rulebook version", "zh": "加载新版本规则"},
    "web_rules_loaded": {"en": "rulebook version {version}", "zh": "规则版本 {version}"},
    "web_unchanged": {"en": " (unchanged)", "zh": "（未变化）"},
    "web_scenario": {"en": "Scenario (TOML, optional)", "zh": "情景文件（TOML，可选）"},
    "web_import": {"en": "Import", "zh": "导入"},
    "web_import_projects": {"en": "Import projects", "zh": "导入项目"},
    "web_import_tallies": {"en": "Import tallies", "zh": "导入测算"},
    "web_dry_run": {"en": "Check (nothing is written)", "zh": "检查（不写入）"},
    "web_confirm_import": {"en": "Import it", "zh": "确认导入"},
    "web_verify_failed": {"en": "Verification FAILED: {n} problem(s).", "zh": "校验失败：{n} 个问题。"},
    "web_login_address_locked": {"en": "Too many failed sign-ins from your address: try again after {until} (UTC).",
                                 "zh": "您所在地址的登录失败次数过多：请于 {until}（UTC）之后再试。"},
    "web_account": {"en": "My account", "zh": "我的账户"},
    "web_outlook": {"en": "Outlook: quota left and demand unfunded, year by year",
                    "zh": "展望：逐年剩余指标与未保障需求"},
    "web_years": {"en": "Years", "zh": "年数"},
    "web_sheet": {"en": "Sheet (XLSX, optional)", "zh": "工作表（XLSX，可选）"},
    "web_preview": {"en": "The file as it was read: each cell with a problem is marked (its message shows on hover)",
                    "zh": "读取到的文件内容：有问题的单元格已标出（鼠标悬停显示说明）"},
    "web_preview_left_out": {"en": "{n} of the {total} rows are not shown (shown: the first {first}, and below them "
                                   "the first {most} rows with a problem; every problem is listed above).",
                             "zh": "共 {total} 行，其中 {n} 行未显示（已显示前 {first} 行，及其后前 {most} 个有问题的行；"
                                   "所有问题均已在上表列出）。"},
    "web_import_hint": {"en": "A CSV in UTF-8, or in GBK/GB18030 as Chinese Excel saves it; or an XLSX workbook "
                                "(the first sheet with the columns, or the sheet named above). Nothing is written "
                                "until you confirm, and nothing at all when the file has any problem.",
                        "zh": "CSV 文件可为 UTF-8 编码，或中文 Excel 保存的 GBK/GB18030 编码；也可上传 XLSX 工作簿"
                              "（默认读取第一个含所需列的工作表，或上方指定的工作表）。确认之前不写入任何数据；"
                              "文件有任何问题时一律不写入。"},
    "web_change_password": {"en": "Change my password", "zh": "修改密码"},
    "web_old_password": {"en": "Current password", "zh": "当前密码"},
    "web_new_password": {"en": "New password", "zh": "新密码"},
    "web_repeat_password": {"en": "New password again", "zh": "再次输入新密码"},
    "web_sessions": {"en": "Signed-in sessions", "zh": "登录会话"},
    "web_this_session": {"en": "this session", "zh": "当前会话"},
    "web_end_session": {"en": "Sign out", "zh": "退出"},
    "web_signout_all": {"en": "Sign out everywhere", "zh": "退出所有会话"},
    "web_reset_password": {"en": "Set password", "zh": "重置密码"},
    "web_signout_user": {"en": "End sessions", "zh": "结束会话"},
    "web_api_tokens": {"en": "API tokens", "zh": "API 令牌"},
    "web_revoke_token": {"en": "Revoke", "zh": "吊销"},
    "web_label": {"en": "Label (optional)", "zh": "用途（可选）"},
    "user_password_changed": {"en": "password of {name} changed; {n} other session(s) ended",
                              "zh": "已修改 {name} 的密码；已结束其他 {n} 个会话"},
    "user_password_set": {"en": "password of {name} set; {n} session(s) ended",
                          "zh": "已重置 {name} 的密码；已结束 {n} 个会话"},
    "user_signed_out": {"en": "{n} session(s) of {name} ended", "zh": "已结束 {name} 的 {n} 个会话"},
    "user_token_revoked": {"en": "API token {id} of {name} revoked", "zh": "已吊销 {name} 的 API 令牌 {id}"},
})
HEADERS.update({
    "User": "用户", "Role": "角色", "Created": "创建时间", "Disabled": "停用时间", "Tokens": "令牌数",
    "Date": "日期", "Booked": "记账时间", "Actor": "经办人", "Kind": "类型", "Account": "账户", "Memo": "摘要",
    "Ref": "文号", "Seq": "序号", "Hash": "哈希", "Effective": "生效日期", "Status": "状态", "Plan": "方案",
    "Scenario": "情景", "Applied": "执行时间", "Industry": "行业", "Method": "测算方法", "Eligible": "可用",
    "Draws": "使用指标", "Funded": "保障", "Unfunded": "未保障", "Objective": "目标值", "Baseline": "基准排放量",
    "Permitted": "许可排放量", "Post": "改造后排放量", "Year": "基准年",
    "Client": "地址", "Browser": "浏览器", "Label": "用途", "Id": "编号", "Sessions": "会话数",
})
REFUSALS_ZH.update({
    "bad_username": lambda f: f"用户名 {f['name']!r} 无效：须为 1 至 64 个字符（a-z、0-9、. _ -），以字母或数字开头",
    "bad_role": lambda f: f"未知角色 {f['role']!r}：可选 clerk、planner、auditor、admin",
    "weak_password": lambda f: f"密码过短：至少 {f['min']} 个字符",
    "user_exists": lambda f: f"用户 {f['name']} 已存在",
    "user_disabled": lambda f: f"用户 {f['name']} 已停用",
    "bad_upload": lambda f: {"too_large": f"文件大于 {f.get('max_mb')} MB",
                             "unknown": "未知的上传，请重新上传文件"}.get(
        f.get("reason", ""), "上传的文件已不存在（上传文件保留一天），请重新上传"),
    "wrong_password": lambda f: ("当前密码错误" if f.get("reason") == "bad_credentials" else
                                 "现在不能修改密码（登录失败次数过多，账户或地址已暂时锁定）"),
    "password_mismatch": lambda f: "两次输入的新密码不一致",
})
REFUSALS_EN.update({
    "bad_username": lambda f: f"user name {f['name']!r} must be 1 to 64 characters a-z, 0-9, '.', '_' or '-', "
                              "starting with a letter or digit",
    "bad_role": lambda f: f"unknown role {f['role']!r}: use {', '.join(f.get('known', []))}",
    "weak_password": lambda f: f"the password has {f['length']} characters; at least {f['min']} are required",
    "user_exists": lambda f: f"user {f['name']!r} already exists",
    "user_disabled": lambda f: f"user {f['name']!r} is disabled",
    "bad_upload": lambda f: {"too_large": f"the file is larger than {f.get('max_mb')} MB",
                             "unknown": "unknown upload; upload the file again"}.get(
        f.get("reason", ""), "the uploaded file is gone (uploads are kept for a day); upload it again"),
    "wrong_password": lambda f: ("the current password is wrong" if f.get("reason") == "bad_credentials" else
                                 f"the password cannot be changed now ({f.get('reason')}: too many failed "
                                 "sign-ins; try again later)"),
    "password_mismatch": lambda f: "the new password and its repetition differ",
})
ROLES_ZH = {"clerk": "审批科", "planner": "总量科", "auditor": "审计", "admin": "管理员"}
