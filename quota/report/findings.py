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
    "exhausted": ("exhausted", "已用尽"),
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
    "not_regular_file": ("is a pipe or a device, not a file (an import reads its file more than once): save it to a "
                         "file and import that", "是管道或设备，不是文件（导入需多次读取文件）：请先保存为文件再导入"),
    "no_permission": ("cannot read the file: permission denied", "无法读取文件：没有权限"),
    "cannot_read_file": ("cannot read the file: {detail}", "无法读取文件：“{detail}”"),
    "not_utf8": ("not UTF-8 text (byte {byte} cannot be decoded); save it as UTF-8",
                 "不是 UTF-8 文本（第 {byte} 字节无法解码）；请另存为 UTF-8"),
    "not_utf8_line": ("not UTF-8 text (line {line} cannot be decoded)", "不是 UTF-8 文本（第 {line} 行无法解码）"),
    "not_text": ("neither UTF-8 nor GB18030/GBK text (line {line} is not UTF-8; byte {byte} is not GB18030: a mix of "
                 "both?); save it as CSV UTF-8",
                 "既不是 UTF-8 也不是 GB18030/GBK 文本（第 {line} 行不是 UTF-8；第 {byte} 字节不是 GB18030：是否两种编码混用？）；"
                 "请另存为 CSV UTF-8"),
    "not_an_export": ("not a quota export: its first line is not the export's JSON header",
                      "不是 quota 导出文件：第一行不是导出文件的 JSON 表头"),
    "no_manifest": ("missing or unreadable: not a complete quota export folder (interrupted, or not written by "
                    "quota export?)", "缺失或无法读取：不是完整的 quota 导出文件夹（导出被中断，或不是 quota export 写出的？）"),
    "not_a_table_export": ("not a quota table export (format {format!r})", "不是 quota 表格导出（格式 {format!r}）"),
    "unsupported_file_type": ("unsupported file type {suffix!r} (use .csv or .xlsx)",
                              "不支持的文件类型 {suffix!r}（请使用 .csv 或 .xlsx）"),
    "empty_file": ("cannot read file: empty file", "无法读取文件：文件为空"),
    "unreadable_file": ("cannot read file: not a readable CSV or XLSX file", "无法读取文件：不是可读的 CSV 或 XLSX 文件"),
    "extra_cells": ("the first data row has {cells} cells but the header names {header} columns (a trailing comma?): "
                    "its columns would be misread; remove the extra cells or name them in the header",
                    "第一行数据有 {cells} 个单元格，但表头只列出 {header} 列（行尾多了逗号？）：各列会被错位读取；请删除多余的单元格或在表头中命名"),
    "workbook_too_big": ("the workbook unpacks to {size} MB, more than the {max} MB a workbook may hold here "
                         "(save it as CSV, or split it)", "工作簿解压后为 {size} MB，超过允许的 {max} MB（请另存为 CSV 或拆分）"),
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
    # priorities (units.parse_priority), after the number grammar
    "priority_range": ("priority must be greater than 0 and at most {max}, got {value}",
                       "优先级须大于 0 且不超过 {max}：{value}"),
    "priority_places": ("priority must have at most {places} decimal places, got {value}",
                        "优先级最多 {places} 位小数：{value}"),
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
    "file_changed": ("the file changed while it was being imported (it is read more than once); import it again",
                     "导入过程中文件被修改（文件会被读取多次）；请重新导入"),
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
    "toml_syntax": ("TOML syntax error at line {line}, column {column}: {detail}",
                    "TOML 语法错误（第 {line} 行第 {column} 列）：“{detail}”"),
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
    # what verify finds wrong with a chain, its balances or an export (quota.ledger.chain, quota.audit)
    "seq_gap": ("expected transaction {expected}, found {found} (a transaction was deleted, inserted, duplicated or"
                " moved)",
                "应为交易 {expected}，实际为 {found}（有交易被删除、插入、重复或移动）"),
    "prev_hash_mismatch": ("does not match the previous transaction's hash",
                           "与上一笔交易的哈希不符"),
    "v1_after_v2": ("a quota-chain-v1 hash after the chain moved to v2 at transaction {seq}",
                    "链已于交易 {seq} 改用 v2 后又出现 quota-chain-v1 哈希"),
    "hash_mismatch": ("content does not match its hash (edited?)",
                      "内容与其哈希不符（被修改？）"),
    "after_as_of": ("dated {date}, after the export's as-of date {as_of}",
                    "日期 {date} 晚于导出的截止日期 {as_of}"),
    "stub_in_full_export": ("a full export has no stubs: a transaction is hidden",
                            "完整导出不含存根：有交易被隐藏"),
    "stub_mismatch": ("the stub does not match its hash (its date or body hash was changed?)",
                      "存根与其哈希不符（日期或内容哈希被修改？）"),
    "hidden_in_full_export": ("a full export shows every transaction in full",
                              "完整导出应完整列出每笔交易"),
    "hidden_before_as_of": ("a transaction dated {date}, on or before the as-of date {as_of}, is hidden as a stub",
                            "日期为 {date}（不晚于截止日期 {as_of}）的交易被隐藏为存根"),
    "register_moves": ("a register transaction moves no grams",
                       "登记交易不转移指标"),
    "unknown_kind": ("unknown transaction kind {kind}",
                     "未知交易类型 {kind}"),
    "no_postings": ("a {kind} transaction without postings",
                    "{kind} 交易没有分录"),
    "bad_posting": ("{account} ({lot}): a posting of {amount} g",
                    "{account}（{lot}）：分录 {amount} 克"),
    "may_not_credit": ("a {kind} may not credit {account}",
                       "{kind} 交易不能贷记 {account}"),
    "may_not_debit": ("a {kind} may not debit {account}",
                      "{kind} 交易不能借记 {account}"),
    "returns_to_closed_lot": ("grams return to lot {lot}, {state} in transaction {seq}",
                              "指标退回到在交易 {seq} 中{state}的批次 {lot}"),
    "foreign_account": ("account {account} does not belong to lot {lot}, pollutant {pollutant} and project "
                        "{project}",
                        "账户 {account} 不属于批次 {lot}、污染物 {pollutant} 和项目 {project}"),
    "lot_never_issued": ("lot {lot} was never issued",
                         "批次 {lot} 从未入库"),
    "lot_other_pollutant": ("lot {lot} holds {held}, not {pollutant}",
                            "批次 {lot} 为 {held}，不是 {pollutant}"),
    "unbalanced": ("does not balance: {sums}",
                   "借贷不平衡：{sums}"),
    "between_lots": ("moves grams between lots: {lots}",
                     "在批次之间转移指标：{lots}"),
    "goes_negative": ("{account} ({lot}) goes negative: {grams} g",
                      "{account}（{lot}）余额为负：{grams} 克"),
    "lot_expired_by": ("lot {lot} expires on {expires}, not by {date}",
                       "批次 {lot} 于 {expires} 到期，不是在 {date} 之前"),
    "reserved_before_effective": ("lot {lot} is not effective until {effective}, reserved on {date}",
                                  "批次 {lot} 于 {effective} 才生效，却在 {date} 被预留"),
    "expires_before_needed": ("lot {lot} expires on {expires}, before {until}: it cannot serve {project}",
                              "批次 {lot} 于 {expires} 到期，早于 {until}：不能用于 {project}"),
    "lot_other_key": ("lot {lot} is in {key}, project {project} needs {needs}",
                      "批次 {lot} 属于 {key}，项目 {project} 需要 {needs}"),
    "revoke_unknown_lot": ("a revocation of {lot}, a lot that was never issued",
                           "注销 {lot}，但该批次从未入库"),
    "lot_already": ("lot {lot} was already {state} in transaction {seq}",
                    "批次 {lot} 已在交易 {seq} 中{state}"),
    "revoke_other_lot": ("a revocation of lot {lot} moves grams of another lot",
                         "注销批次 {lot} 却转移了另一批次的指标"),
    "revoke_partial": ("a revocation of lot {lot} must take all its unallocated grams ({left} g)",
                       "注销批次 {lot} 须取走其全部未核定指标（{left} 克）"),
    "issue_shape": ("an issue posts exactly lot:<serial> +amount and issued:<P> -amount",
                    "入库交易只能记 lot:<批次> +数量 与 issued:<污染物> -数量"),
    "issue_existing_lot": ("issue into lot {lot}, which already exists (an issue never tops up a lot)",
                           "入库到已存在的批次 {lot}（入库从不追加批次）"),
    "issue_no_tally": ("an issue names no tally",
                       "入库交易未指明测算"),
    "tally_issued_twice": ("tally {tally} was already issued as lot {lot}",
                           "测算 {tally} 已入库为批次 {lot}"),
    "issue_no_credit": ("issue of tally {tally} states no creditable amount",
                        "测算 {tally} 的入库未写明可入库量"),
    "supersedes_unknown": ("tally {tally} supersedes {old}, which was never issued",
                           "测算 {tally} 替代了从未入库的 {old}"),
    "superseded_twice": ("tally {tally} was already superseded by {by}",
                         "测算 {tally} 已被 {by} 替代"),
    "issue_amount": ("issue of {grams} g for tally {tally}, whose creditable amount is {credit} g less {used} g "
                     "already allocated or expired from the tallies it supersedes",
                     "测算 {tally} 入库 {grams} 克，但其可入库量为 {credit} 克减去被替代测算已核定或过期的 {used} 克"),
    "register_no_project": ("a register transaction names no project",
                            "登记交易未指明项目"),
    "registered_twice": ("project {project_id} was already registered in transaction {seq}",
                         "项目 {project_id} 已在交易 {seq} 中登记"),
    "register_unknown_tally": ("registers facts of tally {tally}, which was never issued",
                               "登记了从未入库的测算 {tally} 的信息"),
    "register_differs": ("tally {tally}: {key} {value} differs from what its issue committed ({committed})",
                         "测算 {tally}：{key} {value} 与其入库时记录的（{committed}）不同"),
    "unregistered_project": ("project {project_id} holds grams but was never registered in the chain",
                             "项目 {project_id} 持有指标，但从未在链中登记"),
    "sum_not_zero": ("accounts sum to {total} g, not zero",
                     "各账户合计为 {total} 克，不为零"),
    "head_followed": ("the chain ends at {end} (transaction {seq}), not at the expected head {expected}: the "
                      "expected head is transaction {at}; {after} transaction(s) follow it",
                      "链结束于 {end}（交易 {seq}），不是预期的链头 {expected}：预期链头是交易 {at}，其后还有 {after} 笔交易"),
    "head_nowhere": ("the chain ends at {end} (transaction {seq}), not at the expected head {expected}: the "
                     "expected head is nowhere in this chain (transactions were removed from its end, or it was "
                     "rewritten)",
                     "链结束于 {end}（交易 {seq}），不是预期的链头 {expected}：链中没有预期的链头（链尾的交易被删除，或链被改写）"),
    "balance_untouched": ("stated balance {grams} g, but no posting touches it",
                          "列明余额 {grams} 克，但没有分录涉及它"),
    "balance_row_untouched": ("a balance row that no posting touches",
                              "没有分录涉及的余额行"),
    "balance_missing": ("stated balance 0 g (no row), replay of postings gives {grams} g",
                        "列明余额 0 克（无此行），按分录重算为 {grams} 克"),
    "negative_balance": ("negative balance {grams} g",
                         "余额为负：{grams} 克"),
    "issue_amount_plain": ("issue of {grams} g for tally {tally}, whose creditable amount is {credit} g",
                           "测算 {tally} 入库 {grams} 克，但其可入库量为 {credit} 克"),
    "draws_closed_lot": ("a reservation draws from lot {lot}, {state} in transaction {seq}",
                         "预留从在交易 {seq} 中{state}的批次 {lot} 提取"),
    "balance_differs": ("stated {value} g, replay of postings gives {replay} g",
                        "列明 {value} 克，按分录重算为 {replay} 克"),
    "balance_column_differs": ("{column}: stated {value}, the chain gives {replay}",
                               "{column}：列明 {value}，链上为 {replay}"),
    "total_differs": ("stored {stored} g, the replay of the postings gives {replay} g (kind, pollutant, zone, lot expiry)",
                      "存储值为 {stored} 克，按分录重算为 {replay} 克（类型、污染物、区域、批次到期日）"),
    "row_not_in_chain": ("not in the chain: no {kind} transaction commits this row", "不在链中：没有 {kind} 交易记录此行"),
    "row_differs": ("stored {stored}, the chain committed {committed} (transaction {seq})",
                    "存储值为 {stored}，链上记录为 {committed}（交易 {seq}）"),
    "rows_missing": ("{n} row(s) the chain committed are missing, first {first}", "链上记录的 {n} 行缺失，第一行为 {first}"),
    "operation_result": ("{command}: {problem}", "{command}：{problem}"),
    "op_reported_twice": ("transaction {seq} is already reported by operation {other}", "交易 {seq} 已由操作 {other} 报告"),
    "op_no_txn": ("names transaction {seq}, which does not exist", "指向不存在的交易 {seq}"),
    "op_txn_kind": ("names transaction {seq}, a {found}, not a {kind}", "指向交易 {seq}，其类型为 {found}，不是 {kind}"),
    "op_txn_project": ("names transaction {seq} of project {found}, not {project}", "指向项目 {found} 的交易 {seq}，不是 {project}"),
    "op_nothing": ("reports neither draws nor returns", "既未报告提取也未报告退回"),
    "op_draws_differ": ("its draws differ from transaction {seq}", "其提取与交易 {seq} 不同"),
    "op_returns_differ": ("its returns differ from transaction {seq}", "其退回与交易 {seq} 不同"),
    "op_doc_differs": ("document {doc} differs from transaction {seq} ({found})", "批复文号 {doc} 与交易 {seq}（{found}）不同"),
    "op_not_cancelled": ("reports a cancellation of {project_id}, which is not cancelled", "报告撤销 {project_id}，但该项目未撤销"),
    "op_expired_no_txn": ("reports expired lots but no transaction", "报告了过期批次但没有交易"),
    "op_lots_differ": ("its lots differ from transaction {seq}", "其批次与交易 {seq} 不同"),
    "op_revoke_differs": ("its lot or grams differ from transaction {seq}", "其批次或克数与交易 {seq} 不同"),
    "op_plan_differs": ("its projects differ from the reservations it names", "其项目与所列预留不同"),
    "op_unknown_lots": ("names lots the chain never issued ({lots})", "指向链中从未入库的批次（{lots}）"),
    "op_counts_differ": ("counts differ from its lots", "计数与其批次不符"),
    "op_projects_differ": ("its projects differ from transaction {seq}", "其项目与交易 {seq} 不同"),
    "op_unknown_projects": ("names projects the chain never registered ({projects})", "指向链中从未登记的项目（{projects}）"),
    "op_unknown_command": ("unknown command {command}: its result cannot be checked", "未知命令 {command}：无法核对其结果"),
    "not_a_record": ("not a JSON record of the export (truncated or edited?)", "不是导出文件的 JSON 记录（被截断或修改？）"),
    "unknown_scheme": ("unknown hash scheme {scheme}", "未知哈希方案 {scheme}"),
    "after_end": ("a line after the end record", "结束记录之后还有内容"),
    "txn_after_balances": ("a transaction after the balances", "余额之后出现交易"),
    "final_hash_mismatch": ("the chain does not end at the stated final hash", "链未结束于所列的最终哈希"),
    "end_counts": ("the end record counts {transactions} transactions and {postings} postings; the file holds {n_txn} "
                   "and {n_post}", "结束记录计有 {transactions} 笔交易、{postings} 条分录；文件中为 {n_txn} 和 {n_post}"),
    "unknown_record": ("unknown record type {kind}", "未知记录类型 {kind}"),
    "no_end_record": ("the file ends without its end record (truncated?)", "文件没有结束记录（被截断？）"),
    "header_counts": ("the header's counts do not match the transactions in the file", "表头计数与文件中的交易不符"),
    "header_counts_to": ("the header counts {counts} up to transaction {final}; the file holds {want} up to transaction "
                         "{seq}", "表头计数为 {counts}（至交易 {final}）；文件中为 {want}（至交易 {seq}）"),
    "bean_check": ("{detail}", "bean-check 报告：“{detail}”"),
    "end_records": ("the file must end with one {type!r} record; found {n} (truncated?)",
                    "文件必须以一条 {type!r} 记录结束；实际有 {n} 条（被截断？）"),
    "end_incomplete": ("the file does not end with its complete {type!r} record (truncated or edited?)",
                       "文件未以完整的 {type!r} 记录结束（被截断或修改？）"),
    "end_states": ("the end record states {stated}, the file holds {value}", "结束记录为 {stated}，文件中为 {value}"),
    "last_hash_mismatch": ("the last transaction's hash is not the one the end record states",
                           "最后一笔交易的哈希与结束记录不符"),
    "export_head": ("the export ends at {end}, not at the expected head {expected}", "导出结束于 {end}，不是预期的链头 {expected}"),
    "unlisted_file": ("a file the manifest does not list", "清单中未列出的文件"),
    "not_listed": ("{name} is not listed", "{name} 未列入清单"),
    "listed_missing": ("missing (the manifest lists it)", "缺失（清单中列有此文件）"),
    "sha_mismatch": ("does not match the manifest ({size} bytes, the manifest states {stated}: truncated or edited?)",
                     "与清单不符（{size} 字节，清单为 {stated}：被截断或修改？）"),
    "unreadable_table": ("unreadable: {detail}", "无法读取：“{detail}”"),
    "rows_stated": ("{n} rows, the manifest states {stated}", "{n} 行，清单为 {stated}"),
    "not_manifest_head": ("the last transaction is not the chain head the manifest states", "最后一笔交易不是清单所列的链头"),
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
    # a write retried after a transient database error (the note `quota` prints; the driver's words quoted)
    "retry_attempt": ("attempt {attempt}: {kind}: {detail}", "第 {attempt} 次：{kind}：“{detail}”"),
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
