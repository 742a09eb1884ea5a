"""The columns of the tally and project files: canonical names, which are required, and the header aliases
(Chinese names) each may be written with. Light on purpose (no pandas, no database): `--help` lists them."""
from __future__ import annotations

TALLY_REQUIRED = ["tally_id", "source_id", "source_name", "measure", "zone", "pollutant", "baseline_actual",
                  "unit", "effective_date", "report_no"]
TALLY_OPTIONAL = ["permitted", "post", "baseline_year", "method", "assessor", "supersedes", "distinct_source"]
TALLY_NAMES = {
    "tally_id": ["测算编号"], "source_id": ["平衡源编号", "企业编号", "源编号"],
    "source_name": ["企业名称", "平衡源名称", "项目名称"], "measure": ["措施", "削减方式", "类型"],
    "zone": ["区域", "控制单元", "所在区域"], "pollutant": ["污染物", "污染因子"],
    "baseline_actual": ["基准排放量", "实际排放量", "基准年实际排放量"], "permitted": ["许可排放量", "许可量"],
    "post": ["改造后排放量", "削减后排放量"], "unit": ["单位", "计量单位"], "baseline_year": ["基准年"],
    "effective_date": ["生效日期", "入库日期"], "method": ["测算方法", "核算方法"],
    "assessor": ["测算单位", "第三方机构", "核算单位"], "report_no": ["报告编号", "测算报告编号"],
    "supersedes": ["替代测算编号", "取代"], "distinct_source": ["独立平衡源", "非同一平衡源"],
}

PROJECT_REQUIRED = ["project_id", "name", "zone", "pollutant", "increment", "unit"]
PROJECT_OPTIONAL = ["industry", "priority", "needed_by", "must_fund", "ratio"]
PROJECT_NAMES = {
    "project_id": ["项目编号"], "name": ["项目名称"], "zone": ["区域", "所在区域", "控制单元"],
    "industry": ["行业", "行业类别"], "pollutant": ["污染物", "污染因子"],
    "increment": ["新增排放量", "新增量", "排放增量"], "unit": ["单位", "计量单位"], "priority": ["优先级"],
    "needed_by": ["需求日期", "需要日期"], "must_fund": ["必须保障", "必保"], "ratio": ["替代比例", "削减替代比例"],
}


def describe(required: list[str], optional: list[str], names: dict[str, list[str]]) -> str:
    """The columns for --help: each canonical name with the Chinese headers it may be written with."""
    def one(col: str) -> str:
        return f"{col} ({' / '.join(names[col])})" if names.get(col) else col
    return ("Required columns: " + ", ".join(one(c) for c in required) + ". Optional: "
            + ", ".join(one(c) for c in optional) + ". Headers are matched case-insensitively; a title row above "
            "the header is skipped.")
