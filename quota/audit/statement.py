"""Source statement (总量来源说明) of a project for the approval file: Markdown, HTML or XLSX."""
from __future__ import annotations

import html
from typing import IO

from sqlalchemy import Engine

from quota.audit import trace
from quota.store import db
from quota import outfiles
from quota.rules import versions
from quota import units

LABELS = {
    "en": {"title": "Source statement of emission quota", "project": "Project", "zone": "Zone",
           "industry": "Industry", "state": "State", "doc": "Approval document", "pollutant": "Pollutant",
           "increment": "Increment", "ratio": "Ratio", "why": "Why", "required": "Required", "held": "Held",
           "lot": "Lot", "amount": "Amount", "tally": "Tally", "source": "Source", "measure": "Measure",
           "assessor": "Assessor", "report": "Report no.", "remaining": "Lot remaining", "status": "Status",
           "unit": "Unit", "closure": "closure", "upgrade": "upgrade", "reserved": "reserved",
           "allocated": "allocated", "requirement": "Requirement", "sources": "Sources",
           "revoked": "REVOKED", "superseded": "SUPERSEDED", "expired": "expired"},
    "zh": {"title": "建设项目主要污染物排放总量指标来源说明", "project": "项目", "zone": "区域", "industry": "行业",
           "state": "状态", "doc": "批复文号", "pollutant": "污染物", "increment": "新增排放量", "ratio": "替代比例",
           "why": "依据", "required": "所需替代量", "held": "已落实", "lot": "指标批次", "amount": "数量",
           "tally": "测算编号", "source": "平衡源", "measure": "削减方式", "assessor": "测算单位",
           "report": "报告编号", "remaining": "批次剩余", "status": "状态", "unit": "单位",
           "closure": "关闭", "upgrade": "提升改造", "reserved": "预留", "allocated": "已核定",
           "requirement": "总量需求", "sources": "指标来源",
           "revoked": "已注销", "superseded": "已被替代", "expired": "已过期",
           "pipeline": "待审", "approved": "已批复", "cancelled": "已撤销"},  # a project's state (header)
}


def statement(engine: Engine, project_id: str, lang: str = "en") -> dict:
    """The statement's content as plain data: a title, header fields and two tables."""
    t = trace.trace(engine, project_id)
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
    L = LABELS[lang]

    def pname(code: str) -> str:
        p = book.pollutants[code]
        return f"{code} {p.name_zh}" if lang == "zh" else f"{code} ({p.name})"

    zone = book.zones.get(t["zone"])
    zone_name = f"{t['zone']} {zone.name_zh if lang == 'zh' else zone.name}" if zone else t["zone"]
    docs = [h["ref"] for h in t["history"] if h["kind"] == "approve" and h["ref"]]
    head = [(L["project"], f"{t['project_id']} {t['name']}"), (L["zone"], zone_name), (L["industry"], t["industry"]),
            (L["state"], L.get(t["state"], t["state"])), (L["doc"], ", ".join(docs) or "-")]
    needs = [[pname(n["pollutant"]), units.display(n["increment_g"], n["unit"]), n["ratio"], "; ".join(n["why"]),
              units.display(n["required_g"], n["unit"]), units.display(n["held_g"], n["unit"]), n["unit"]]
             for n in t["needs"]]
    draws = [[pname(d["pollutant"]), d["lot"] + ("" if d["lot_state"] == "active" else f" ({L[d['lot_state']]})"),
              L.get(d["state"], d["state"]), units.display(d["amount_g"], d["unit"]),
              d["tally_id"], f"{d['source_id']} {d['source_name']}", L.get(d["measure"], d["measure"]), d["assessor"],
              d["report_no"], units.display(d["lot_remaining_g"], d["unit"]), d["unit"]] for d in t["draws"]]
    return {"title": L["title"], "head": head,
            "needs_header": [L[k] for k in ("pollutant", "increment", "ratio", "why", "required", "held", "unit")],
            "needs": needs,
            "draws_header": [L[k] for k in ("pollutant", "lot", "status", "amount", "tally", "source", "measure",
                                            "assessor", "report", "remaining", "unit")],
            "draws": draws, "labels": L}


_MD_SPECIAL = {c: "\\" + c for c in "\\`*_[]|~#!"}
_MD_SPECIAL.update({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
_LINE_BREAKS = "\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029"


def _md_cell(v) -> str:
    """A value as Markdown text: no line breaks or control characters (a row stays one row), Markdown
    punctuation backslash-escaped (no links, emphasis or table cells from data) and HTML as entities."""
    out = []
    for c in str(v):
        if c in _LINE_BREAKS or c == "\t":
            out.append(" ")
        elif ord(c) < 32 or 0x7f <= ord(c) < 0xa0:
            continue
        else:
            out.append(_MD_SPECIAL.get(c, c))
    return "".join(out)


def to_markdown(s: dict) -> str:
    lines = [f"# {_md_cell(s['title'])}", ""]
    lines += [f"- **{_md_cell(k)}**: {_md_cell(v)}" for k, v in s["head"]]
    for title, header, rows in ((s["labels"]["requirement"], s["needs_header"], s["needs"]),
                                (s["labels"]["sources"], s["draws_header"], s["draws"])):
        lines += ["", f"## {_md_cell(title)}", "", "| " + " | ".join(_md_cell(x) for x in header) + " |",
                  "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def to_html(s: dict) -> str:
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>" + e(s["title"]) + "</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #999;padding:4px 8px}th{background:#eee}</style></head><body>",
             f"<h1>{e(s['title'])}</h1><dl>"]
    parts += [f"<dt>{e(k)}</dt><dd>{e(str(v))}</dd>" for k, v in s["head"]]
    parts.append("</dl>")
    for title, header, rows in ((s["labels"]["requirement"], s["needs_header"], s["needs"]),
                                (s["labels"]["sources"], s["draws_header"], s["draws"])):
        parts.append(f"<h2>{e(title)}</h2><table><tr>" + "".join(f"<th>{e(h)}</th>" for h in header) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in rows]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def to_xlsx(s: dict, path: str) -> None:
    from openpyxl import Workbook
    from quota.audit.table_export import neutralise
    wb = Workbook()
    ws = wb.active
    ws.title = "statement"
    ws.append([s["title"]])
    for k, v in s["head"]:
        ws.append([k, neutralise(v)])
    for title, header, rows in ((s["labels"]["requirement"], s["needs_header"], s["needs"]),
                                (s["labels"]["sources"], s["draws_header"], s["draws"])):
        ws.append([])
        ws.append([title])
        ws.append(header)
        for row in rows:
            ws.append([neutralise(v) for v in row])
    outfiles.save_xlsx(wb, path)


def write_statement(engine: Engine, project_id: str, fmt: str, out: IO[str] | None, path: str | None,
                    lang: str = "en") -> None:
    """Write the statement to `out` (a stream) or to the file `path`, which appears complete or not at
    all and is never the database (quota.outfiles)."""
    if path:
        outfiles.check_target(path, engine)
    s = statement(engine, project_id, lang)
    if fmt == "xlsx":
        with outfiles.atomic_path(path, engine) as tmp:
            to_xlsx(s, str(tmp))
    else:
        text = to_markdown(s) if fmt == "md" else to_html(s)
        if path:
            with outfiles.atomic_file(path, engine) as fh:
                fh.write(text)
        else:
            out.write(text)
