"""The catalogue of validation findings (errors.Problem): each code rendered in English and Chinese from its facts.

A template is a str.format string over the problem's facts. A fact that is a list is joined (", " / "、"); a fact
named in WORDS_FACTS holds a word code (a type, a medium, a measure...) and is shown in the language's word
(`WORDS`). Nothing here parses a message: the English message of a Problem is rendered from this table too.
"""
from __future__ import annotations

import string

# word codes in facts -> (English, Chinese)
WORDS: dict[str, tuple[str, str]] = {
    "string": ("a string", "字符串"), "table": ("a table", "表"), "tables": ("an array of tables", "表数组"),
    "array": ("an array", "数组"), "integer": ("a whole number", "整数"), "number": ("a number", "数字"),
    "boolean": ("true or false", "true 或 false"), "date": ("a date", "日期"), "strings": ("a list of strings",
                                                                                           "字符串列表"),
    "value": ("a value", "值"), "pollutant": ("pollutant", "污染物"), "zone": ("zone", "区域"),
    "lot": ("lot", "批次"), "project": ("project", "项目"), "candidate": ("candidate", "候选措施"),
    "closure": ("closure", "关停"), "upgrade": ("upgrade", "提升改造"), "water": ("water", "水"), "air": ("air", "大气"),
    "metal": ("metal", "重金属"), "plan": ("plan", "方案"),
    # states of projects, lots and plans
    "pipeline": ("pipeline", "待审"), "reserved": ("reserved", "已预留"), "approved": ("approved", "已批复"),
    "cancelled": ("cancelled", "已撤销"), "scenario": ("scenario", "情景"), "revoked": ("revoked", "已注销"),
    "superseded": ("superseded", "已被替代"), "expired": ("expired", "已过期"), "active": ("active", "有效"),
    "missing": ("missing", "不存在"), "optimal": ("optimal", "最优"), "feasible": ("feasible", "可行"),
    "infeasible": ("infeasible", "不可行"), "time_limit": ("stopped at the time limit", "达到时间限制"),
}
WORDS_ZH = {k: v[1] for k, v in WORDS.items()}
WORDS_FACTS = {"expected", "got_kind", "what", "measure", "state", "status"}

# code -> (English, Chinese)
PROBLEMS: dict[str, tuple[str, str]] = {
    # reading a file
    "file_not_found": ("file not found", "文件不存在"),
    "is_directory": ("is a directory, not a file", "是文件夹，不是文件"),
    "no_permission": ("cannot read the file: permission denied", "无法读取文件：没有权限"),
    "cannot_read_file": ("cannot read the file: {detail}", "无法读取文件：{detail}"),
    "not_utf8": ("not UTF-8 text (byte {byte} cannot be decoded); save it as UTF-8",
                 "不是 UTF-8 文本（第 {byte} 字节无法解码）；请另存为 UTF-8"),
    "not_utf8_line": ("not UTF-8 text (line {line} cannot be decoded)", "不是 UTF-8 文本（第 {line} 行无法解码）"),
    "not_text": ("neither UTF-8 nor GB18030/GBK text (byte {byte} cannot be decoded); save it as CSV UTF-8",
                 "既不是 UTF-8 也不是 GB18030/GBK 文本（第 {byte} 字节无法解码）；请另存为 CSV UTF-8"),
    "not_an_export": ("not a quota export: its first line is not the export's JSON header",
                      "不是 quota 导出文件：第一行不是导出文件的 JSON 表头"),
    "no_manifest": ("missing or unreadable: not a complete quota export folder (interrupted, or not written by "
                    "quota export?)", "缺失或无法读取：不是完整的 quota 导出文件夹（导出被中断，或不是 quota export 写出的？）"),
    "not_a_table_export": ("not a quota table export (format {format!r})", "不是 quota 表格导出（格式 {format!r}）"),
    "unsupported_file_type": ("unsupported file type {suffix!r} (use .csv or .xlsx)",
                              "不支持的文件类型 {suffix!r}（请使用 .csv 或 .xlsx）"),
    "empty_file": ("cannot read file: empty file", "无法读取文件：文件为空"),
    "unreadable_file": ("cannot read file: not a readable CSV or XLSX file", "无法读取文件：不是可读的 CSV 或 XLSX 文件"),
    "no_sheet": ("no sheet named {sheet!r} (sheets: {sheets})", "没有名为 {sheet!r} 的工作表（现有：{sheets}）"),
    "no_header_row": ("no sheet has a header row naming the required columns in its first {scan} rows "
                      "(sheets: {sheets}; required: {required})",
                      "没有工作表在前 {scan} 行内含有列出必需列的表头行（工作表：{sheets}；必需列：{required}）"),
    "unknown_column": ("unknown column (see the README for the file format)", "未知的列（文件格式见 README）"),
    "duplicate_column": ("column {canon!r} appears twice", "列 {canon!r} 出现了两次"),
    "missing_column": ("required column is missing", "缺少必需的列"),
    "no_data_rows": ("the file has no data rows", "文件没有数据行"),
    # one cell
    "empty_value": ("required value is empty", "必填值为空"),
    "too_long": ("longer than {max} characters", "超过 {max} 个字符"),
    "empty_amount": ("required amount is empty", "必填数量为空"),
    "negative_amount": ("amount must not be negative, got {value}", "数量不能为负：{value}"),
    "amount_too_big": ("amount {value} is implausibly large: more than {max} {unit} ({max_g} g) in one row",
                       "数量 {value} 大得不合理：单行超过 {max} {unit}（{max_g} 克）"),
    "empty_date": ("required date is empty (use YYYY-MM-DD)", "必填日期为空（格式 YYYY-MM-DD）"),
    "bad_date": ("not a valid date {value!r} (use YYYY-MM-DD)", "日期无效 {value!r}（格式 YYYY-MM-DD）"),
    "date_range": ("date {value} is outside 1950-2100", "日期 {value} 不在 1950–2100 年之间"),
    "empty_integer": ("required whole number is empty", "必填整数为空"),
    "bad_integer": ("must be a whole number from {lo} to {hi}, got {value!r}", "应为 {lo} 到 {hi} 的整数：{value!r}"),
    "bad_boolean": ("must be true or false, got {value!r}", "应为 true 或 false（是/否）：{value!r}"),
    "bad_choice": ("must be one of {options}, got {value!r}", "应为以下之一：{options}；实际为 {value!r}"),
    "unknown_zone": ("unknown zone {value!r} (rulebook has {known})", "未知区域 {value!r}（规则库中有：{known}）"),
    "unknown_pollutant": ("unknown pollutant {value!r} (rulebook has {known})",
                          "未知污染物 {value!r}（规则库中有：{known}）"),
    "wrong_unit": ("unit {unit!r} is not {pollutant}'s unit {expected!r}", "单位 {unit!r} 不是 {pollutant} 的单位 {expected!r}"),
    # ids and text (identity)
    "char_control": ("contains a control character {char}", "含有控制字符 {char}"),
    "char_escape": ("contains an escape character {char}", "含有转义字符 {char}"),
    "char_line_break": ("contains a line break {char}", "含有换行符 {char}"),
    "char_bidi": ("contains a bidirectional control {char} (it can make text show in another order)",
                  "含有双向文本控制符 {char}（可使文字以另一顺序显示）"),
    "char_private": ("contains an unassigned or private character {char}", "含有未分配或私用字符 {char}"),
    "char_invisible": ("contains an invisible character {char}", "含有不可见字符 {char}"),
    "id_empty": ("is empty", "为空"),
    "id_too_long": ("is longer than {max} characters", "超过 {max} 个字符"),
    # numbers (units.parse_decimal)
    "not_a_number": ("not a number: {value}", "不是数字：{value}"),
    "number_float": ("floating-point value given; amounts must be exact text", "给出的是浮点数；数量须为精确的文本"),
    "number_not_finite": ("not a finite number: {value}", "不是有限数字：{value}"),
    "number_empty": ("empty amount", "数量为空"),
    "number_too_long": ("not a number: {length} characters is longer than any amount ({max} at most)",
                        "不是数字：{length} 个字符，超过任何数量的长度（最多 {max} 个）"),
    "number_underscore": ("not a number: {value} (no underscores; write 1000 or 1,000)",
                          "不是数字：{value}（不能含下划线；请写 1000 或 1,000）"),
    "number_exponent": ("not a number: {value} (no exponent form; write the digits out)",
                        "不是数字：{value}（不能用指数形式；请写出全部数字）"),
    "number_ambiguous_comma": ("ambiguous number {value}: use a dot for decimals; a comma only separates thousands "
                               "in groups of three", "数字 {value} 有歧义：小数请用小数点；逗号只用于每三位分隔千位"),
    "number_comma_groups": ("not a number: {value} (a comma only separates thousands, in groups of three: 1,234.5)",
                            "不是数字：{value}（逗号只用于每三位分隔千位：1,234.5）"),
    "number_bare_dot": ("not a number: {value} (put digits on both sides of the dot: 0.5, 5.0)",
                        "不是数字：{value}（小数点两边都要有数字：0.5、5.0）"),
    "number_decimal_comma": ("not a number: {value} (use a dot for decimals; a comma only separates thousands in "
                             "groups of three)", "不是数字：{value}（小数请用小数点；逗号只用于每三位分隔千位）"),
    "number_spaces": ("not a number: {value} (no spaces inside a number)", "不是数字：{value}（数字中不能有空格）"),
    "toml_number": ("not a number: {value} (write the digits out: no exponent, underscore, nan or inf)",
                    "不是数字：{value}（请写出全部数字：不能用指数、下划线、nan 或 inf）"),
    "unknown_unit": ("unknown unit {value!r} (expected one of {known})", "未知单位 {value!r}（应为以下之一：{known}）"),
    # tallies and sources
    "future_tally": ("effective date {date} is after today ({today}): a tally is registered once its reduction has "
                     "taken effect", "生效日期 {date} 晚于今天（{today}）：减排生效后才能登记测算"),
    "closure_post": ("a closure has no post-measure emissions: post must be empty or 0, got {value}",
                     "关停没有措施后排放量：post 应为空或 0，实际为 {value}"),
    "upgrade_needs_post": ("an upgrade needs its post-upgrade emissions", "提升改造须填写改造后排放量"),
    "post_not_below": ("post-upgrade emissions {post} are not below the baseline {base}: no reduction",
                       "改造后排放量 {post} 不低于基准 {base}：没有减排"),
    "repeated_id": ("tally_id {value!r} repeats row {first_row}", "测算编号 {value!r} 与第 {first_row} 行重复"),
    "source_differs": ("source {source} has another name or zone at row {first_row}",
                       "平衡源 {source} 在第 {first_row} 行的名称或区域不同"),
    "zero_credit": ("creditable amount is zero after rounding and discount", "取整和折扣后可入库量为零"),
    "zero_after_cap": ("creditable amount is zero after the cap of upgrade {tally}",
                       "按提升改造 {tally} 封顶后可入库量为零"),
    "already_imported": ("this file was already imported (batch {batch} at {at})",
                         "该文件已导入（批次 {batch}，{at}）"),
    "tally_exists": ("tally {tally!r} is already in the ledger", "测算 {tally!r} 已在台账中"),
    "not_current_tally": ("{tally!r} is not the current {measure} tally of {pollutant} for source {source} "
                          "(current: {current})", "{tally!r} 不是平衡源 {source} 的 {pollutant} 现行{measure}测算"
                                                  "（现行：{current}）"),
    "overflow": ("overflow: the ledger has issued {issued} g; {adding} g more would pass the 64-bit limit of "
                 "{limit} g", "溢出：台账已入库 {issued} 克；再加 {adding} 克将超过 64 位上限 {limit} 克"),
    "supersede_spent": ("superseding tally credits {credit_g} g but {spent_g} g of the tallies it replaces were "
                        "already allocated or expired", "替代测算入库 {credit_g} 克，但被替代测算已有 {spent_g} 克"
                                                        "核定或过期"),
    "out_of_order": ("out_of_order: source {source} ({pollutant}) has tally {tally} dated {date} in the ledger; a "
                     "measure dated before it would change what that tally credited",
                     "out_of_order：平衡源 {source}（{pollutant}）在台账中已有 {date} 的测算 {tally}；"
                     "早于它的措施会改变该测算的入库量"),
    "second_closure": ("second_closure: source {source} ({pollutant}) was closed by tally {tally} on {date}: a second "
                       "closure is double counting (give `supersedes` to replace that tally)",
                       "second_closure：平衡源 {source}（{pollutant}）已于 {date} 由测算 {tally} 关停：再次关停是重复计算"
                       "（如需替换该测算，请填写 supersedes）"),
    "closed_source": ("closed_source: source {source} ({pollutant}) was closed by tally {tally} on {date}: an upgrade "
                      "after its closure credits nothing",
                      "closed_source：平衡源 {source}（{pollutant}）已于 {date} 由测算 {tally} 关停：关停后的提升改造不能入库"),
    "no_reduction": ("no_reduction: source {source} ({pollutant}) already emits only {emits} {unit} after upgrade "
                     "{tally}; post-upgrade emissions {post} are no further reduction",
                     "no_reduction：平衡源 {source}（{pollutant}）经提升改造 {tally} 后排放量已仅为 {emits} {unit}；"
                     "改造后排放量 {post} 没有进一步减排"),
    "source_zone": ("source {source} is registered in zone {zone}, not {given}",
                    "平衡源 {source} 登记在区域 {zone}，不是 {given}"),
    "duplicate_source": ("duplicate_source: source {source} has the name and zone of source {other} ({name}, {zone}); "
                         "re-tally that source under its id, or, if they are two sources, set distinct_source to true",
                         "duplicate_source：平衡源 {source} 与平衡源 {other} 名称和区域相同（{name}，{zone}）；"
                         "请以原编号重新测算，或如确为两个平衡源，将 distinct_source 设为 true"),
    # projects
    "zero_increment": ("increment must be greater than zero", "新增量必须大于零"),
    "bad_ratio": ("ratio must be from 1 to 100, got {value}", "替代比例应在 1 到 100 之间：{value}"),
    "project_differs": ("differs from row {first_row} of project {project_id} ({value!r})",
                        "与项目 {project_id} 第 {first_row} 行不同（{value!r}）"),
    "repeated_need": ("project {project_id} already lists {pollutant} at row {first_row}",
                      "项目 {project_id} 已在第 {first_row} 行列出 {pollutant}"),
    "project_exists": ("project {project_id!r} is already registered", "项目 {project_id!r} 已登记"),
    # rulebook and scenario files (TOML)
    "toml_syntax": ("TOML syntax error: {detail}", "TOML 语法错误：{detail}"),
    "unknown_key": ("unknown key (did you mean {suggestion!r}?)", "未知的键（是否应为 {suggestion!r}？）"),
    "unknown_key_known": ("unknown key (known: {known})", "未知的键（可用的键：{known}）"),
    "missing_key": ("required key is missing", "缺少必需的键"),
    "wrong_type": ("must be {expected}, got {got_kind} {got}", "应为{expected}，实际为{got_kind} {got}"),
    "integer_range": ("must be a whole number from {lo} to {hi}, got {value}", "应为 {lo} 到 {hi} 的整数：{value}"),
    "need_entries": ("at least one [[{table}]] entry is required", "至少需要一个 [[{table}]] 条目"),
    "bad_code_pattern": ("{value!r} must match {pattern}", "{value!r} 应符合 {pattern}"),
    "duplicate_code": ("duplicate {what} code {value!r}", "{what}代码 {value!r} 重复"),
    "duplicate_id": ("duplicate {what} id {value!r}", "{what}编号 {value!r} 重复"),
    "unknown_medium": ("unknown medium {value!r} (expected one of {known})", "未知介质 {value!r}（应为以下之一：{known}）"),
    "unknown_match_key": ("unknown matching key {value!r} (expected one of {known})",
                          "未知匹配键 {value!r}（应为以下之一：{known}）"),
    "ratio_range": ("ratio must be a number from 1 to 100, got {value}", "替代比例应为 1 到 100 之间的数：{value}"),
    "ratio_conflict": ("contradicts {other}: same pollutant/industry/zone with ratio {other_ratio}, here {ratio}",
                       "与 {other} 矛盾：污染物/行业/区域相同，比例为 {other_ratio}，此处为 {ratio}"),
    "discount_range": ("must be a number in [0, 1), got {value}", "应为 [0, 1) 之间的数：{value}"),
    "code_in_use": ("{what} {value!r} is used in the ledger and cannot be dropped",
                    "{what} {value!r} 已在台账中使用，不能删除"),
    "matching_differs": ("matching keys differ from the rulebooks: {rows}", "匹配键与规则库不一致：{rows}"),
    "positive_amount": ("amount must be greater than zero", "数量必须大于零"),
    "not_negative": ("must not be negative, got {value}", "不能为负：{value}"),
    "bad_mode": ("must be 'priority' (most priority within budget) or 'cheapest', got {value!r}",
                 "应为 'priority'（预算内优先级最高）或 'cheapest'（费用最低），实际为 {value!r}"),
    # why a lot cannot serve a project (eligibility.why_not), and why a stored plan no longer fits (plan apply)
    "lot_status": ("lot {lot} is {state}", "指标批次 {lot} {state}"),
    "lot_pollutant": ("lot {lot} holds {held}, not {pollutant}", "指标批次 {lot} 为 {held}，不是 {pollutant}"),
    "lot_not_effective": ("lot {lot} is not effective until {date}", "指标批次 {lot} 于 {date} 才生效"),
    "lot_expires_before": ("lot {lot} expires on {expires}, before {until}", "指标批次 {lot} 于 {expires} 到期，早于 {until}"),
    "lot_expired": ("lot {lot} expired on {expires}", "指标批次 {lot} 已于 {expires} 到期"),
    "lot_zone_gone": ("lot {lot} is in zone {zone}, which the rulebook no longer has",
                      "指标批次 {lot} 所在区域 {zone} 已不在规则库中"),
    "lot_key": ("lot {lot} is in {key}, the project needs {needs}", "指标批次 {lot} 属于 {key}，项目需要 {needs}"),
    "plan_bad_draw": ("a draw of {grams} g from lot {lot} is not a positive whole number of grams",
                      "从批次 {lot} 提取的 {grams} 克不是正整数克"),
    "plan_no_lot": ("there is no lot {lot}", "没有指标批次 {lot}"),
    "plan_lot_holds": ("lot {lot} now holds {have} g, the plan draws {g} g", "指标批次 {lot} 现有 {have} 克，方案提取 {g} 克"),
    "plan_funded_twice": ("project {project_id} is funded twice", "项目 {project_id} 被重复保障"),
    "plan_project_state": ("project {project_id} is now {state}", "项目 {project_id} 现为{state}"),
    "plan_no_need": ("project {project_id} has no {pollutant} need", "项目 {project_id} 没有 {pollutant} 的需求"),
    "plan_draw_refused": ("{project_id} {pollutant}: {reason}", "{project_id} {pollutant}：{reason}"),
    "plan_need_changed": ("project {project_id} now needs {required_g} g of {pollutant}, the plan gives {got} g",
                          "项目 {project_id} 现需 {pollutant} {required_g} 克，方案给出 {got} 克"),
}


class _Facts(dict):
    """The facts as a template sees them: lists joined, word codes in the language, a missing fact shown as '?'."""

    def __init__(self, facts: dict, lang: str):
        super().__init__()
        zh = lang == "zh"
        for key, value in facts.items():
            if isinstance(value, (list, tuple)):
                value = ("、" if zh else ", ").join(_one(v, lang) for v in value)
            elif hasattr(value, "text") and hasattr(value, "code"):  # a nested errors.Reason
                value = value.text(lang)
            elif key in WORDS_FACTS and value in WORDS:
                value = WORDS[value][1 if zh else 0]
            self[key] = value

    def __missing__(self, key):
        return "?"


def _one(value, lang: str) -> str:
    return value.text(lang) if hasattr(value, "text") and hasattr(value, "code") else str(value)


def reason_text(value, lang: str = "en") -> str:
    """A reason (errors.Reason, or plain text from before reasons had codes) in `lang`."""
    return _one(value, lang)


def problem_text(code: str, facts: dict, lang: str = "en") -> str:
    """The finding `code` in `lang` (en, zh), rendered from its facts."""
    en, zh = PROBLEMS[code]
    return string.Formatter().vformat(zh if lang == "zh" else en, (), _Facts(facts, lang))
