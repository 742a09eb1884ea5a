"""Self-contained HTML report for staff and planners: tables and inline SVG charts, no network, no JS."""
from __future__ import annotations

import datetime as dt
import html
from collections import defaultdict

from sqlalchemy import Engine, text

from quota.ledger import balances
from quota import clock
from quota.store import db
from quota.planning import plans
from quota.rules import versions
from quota import units
from quota.report.catalogue import WORDS_ZH as STATES_ZH, header as H, t

COLORS = {"available": "#2e7d32", "reserved": "#f9a825", "allocated": "#1565c0", "supply": "#2e7d32",
          "demand": "#c62828", "funded": "#1565c0", "unfunded": "#c62828"}
e = html.escape


def build(engine: Engine, *, plan_id: str | None = None, as_of: dt.date | None = None, lang: str = "en",
          outlook: dict | None = None) -> str:
    """The report as one HTML string; `outlook` (quota.planning.outlook.outlook's result) adds its chart."""
    day = as_of or clock.today()
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        unit = {p: book.pollutants[p].unit for p in book.pollutants}
        lot_rows = balances.balance_rows(conn, unit, by="lot", as_of=as_of, today=day)
        by_zone = balances.balance_rows(conn, unit, by="zone", as_of=as_of, today=day)
        sources = {r[0]: (r[1], r[2]) for r in conn.execute(text(
            "SELECT l.serial, s.source_id, s.name FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
            "JOIN source s ON s.source_id = t.source_id"))}

    def pname(code: str) -> str:
        p = book.pollutants.get(code)
        return f"{code} {p.name_zh}" if (p and lang == "zh") else code

    name = book.jurisdiction_name_zh if lang == "zh" else book.jurisdiction_name
    parts = [_head(t("report_title", lang, name=name)),
             f"<h1>{e(t('report_title', lang, name=name))}</h1><p>{e(t('report_as_of', lang, day=day))}</p>"]
    # 1. balance per pollutant and matching key
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in by_zone:
        key = book.matching_key(r["pollutant"], r["zone"]) if r["zone"] in book.zones else r["zone"]
        for kind in ("available", "reserved", "allocated"):
            groups[(r["pollutant"], key)][kind] += r[f"{kind}_g"]
    parts.append(f"<h2>{e(t('report_balance', lang))}</h2>")
    parts.append(_legend([(t("available", lang), COLORS["available"]), (t("reserved_kind", lang), COLORS["reserved"]),
                          (t("allocated_kind", lang), COLORS["allocated"])]))
    parts.append(_stacked_bars([(f"{pname(p)} · {k}", unit[p], [(COLORS[kind], v[kind], t(
        {"available": "available", "reserved": "reserved_kind", "allocated": "allocated_kind"}[kind], lang))
        for kind in ("available", "reserved", "allocated")]) for (p, k), v in sorted(groups.items())]))
    parts.append(_table([H(c, lang) for c in ("Pollutant", "Key", "Available", "Reserved", "Allocated", "Unit")],
                        [[pname(p), k, units.display(v["available"], unit[p]), units.display(v["reserved"], unit[p]),
                          units.display(v["allocated"], unit[p]), unit[p]] for (p, k), v in sorted(groups.items())]))
    # 2. lots by expiry
    parts.append(f"<h2>{e(t('report_expiry', lang))}</h2>")
    live = [r for r in lot_rows if r["available_g"] > 0]
    parts.append(_timeline(live, day, pname))
    soon = [r for r in live if r["expires"] and day < dt.date.fromisoformat(r["expires"]) <= day + dt.timedelta(days=365)]
    parts.append(f"<h3>{e(t('report_expiring', lang))}</h3>")
    parts.append(_table([H(c, lang) for c in ("Lot", "Pollutant", "Zone", "Expires", "Available", "Unit")],
                        [[r["lot"], pname(r["pollutant"]), r["zone"], r["expires"], r["available"], r["unit"]]
                         for r in sorted(soon, key=lambda r: (r["expires"], r["lot"]))]) if soon
                 else f"<p>{e(t('report_none', lang))}</p>")
    # 3. quota still held from lots that can serve no one new: allocations made before a lot was revoked or
    # superseded stay, and are shown here for the auditor
    flagged = [r for r in lot_rows if r["state"] in ("revoked", "superseded") and (r["reserved_g"] or r["allocated_g"])]
    parts.append(f"<h2>{e(t('report_flagged', lang))}</h2>")
    parts.append(_table([H(c, lang) for c in ("Lot", "Pollutant", "Zone", "State", "Reserved", "Allocated", "Unit")],
                        [[r["lot"], pname(r["pollutant"]), r["zone"], STATES_ZH.get(r["state"], r["state"]) if lang == "zh"
                          else r["state"], r["reserved"], r["allocated"], r["unit"]] for r in flagged]) if flagged
                 else f"<p>{e(t('report_none', lang))}</p>")
    if plan_id:
        parts += _plan_section(engine, plan_id, lang, unit, pname, sources)
    if outlook is not None:
        parts += _outlook_section(outlook, lang, pname)
    parts.append("</body></html>")
    return "\n".join(parts)


def _plan_section(engine, plan_id, lang, unit, pname, sources) -> list[str]:
    """Supply and demand as the plan saw them, funded/unfunded projects, shadow prices, flows."""
    plan = plans.get_plan(engine, plan_id)
    supply = {(g["pollutant"], g["key"]): g["supply_g"] for g in plan.get("groups", [])}
    demand = {(g["pollutant"], g["key"]): g["demand_g"] for g in plan.get("groups", [])}
    out = [f"<h2>{e(t('report_plan', lang, id=plan_id))}</h2>",
           "<p>" + e(f"{plan['status']}, objective {plan.get('objective_exact') or format(plan['objective'], 'g')}, "
                     f"bound {plan['bound']:g}") + "</p>",
           _legend([(t("supply", lang), COLORS["supply"]), (t("demand", lang), COLORS["demand"])]),
           _grouped_bars([(f"{pname(p)} · {k}", unit[p], supply.get((p, k), 0), demand.get((p, k), 0))
                          for p, k in sorted(set(supply) | set(demand)) if demand.get((p, k))])]
    out.append(f"<h2>{e(t('report_projects', lang))}</h2>")
    rows = [[f["project_id"], f.get("name", ""), f["priority"], t("funded_word", lang), ""] for f in plan["funded"]]
    rows += [[u["project_id"], u.get("name", ""), u["priority"], t("unfunded_word", lang),
              ", ".join(f"{pname(p)} {units.display_up(g, unit[p])} {unit[p]}" for p, g in u["shortfall_g"].items())]
             for u in plan["unfunded"]]
    out.append(_table([H(c, lang) for c in ("Project", "Name", "Priority", "State", "Short")], rows))
    if plan["shadow_prices"]:
        out.append(f"<h3>{e(t('shadow', lang))}</h3>")
        out.append(_table([H(c, lang) for c in ("Pollutant", "Key", "Value")],
                          [[pname(s["pollutant"]), s["key"], f"{s['value']:.4g} / {s['per']}"]
                           for s in plan["shadow_prices"]]))
    out.append(f"<h2>{e(t('report_flow', lang))}</h2>")
    links: dict[tuple[str, str], int] = defaultdict(int)
    for f in plan["funded"]:
        for d in f["draws"]:
            src = sources.get(d["lot"], (d["lot"], d["lot"]))
            links[(f"{src[0]} {src[1]}", f["project_id"])] += 1
    out.append(_flow(links))
    return out


def _head(title: str) -> str:
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + e(title) + "</title><style>"
            "body{font-family:'Noto Sans CJK SC','Microsoft YaHei',sans-serif;margin:2em;color:#222}"
            "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:3px 8px;"
            "font-size:13px}th{background:#f0f0f0}td.n{text-align:right}svg{display:block;margin:.5em 0}"
            ".legend span{display:inline-block;margin-right:1.5em}.legend i{display:inline-block;width:12px;"
            "height:12px;margin-right:4px;vertical-align:middle}</style></head><body>")


def _legend(items) -> str:
    return "<p class='legend'>" + "".join(f"<span><i style='background:{c}'></i>{e(label)}</span>"
                                          for label, c in items) + "</p>"


def _table(header, rows) -> str:
    cells = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _stacked_bars(items) -> str:
    """Horizontal stacked bars, one per (label, unit, [(color, grams, name)]), each scaled to its own total."""
    row_h, label_w, width = 24, 210, 520
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 160}' height='{row_h * len(items) + 10}'>"]
    for i, (label, unit, parts) in enumerate(items):
        y = 5 + i * row_h
        total = sum(g for _, g, _ in parts) or 1
        svg.append(f"<text x='0' y='{y + 15}' font-size='12'>{e(label)}</text>")
        x = label_w
        for color, g, name in parts:
            w = width * g / total
            if w > 0:
                svg.append(f"<rect x='{x:.1f}' y='{y}' width='{w:.1f}' height='{row_h - 6}' fill='{color}'>"
                           f"<title>{e(name)}: {e(units.display(g, unit))} {e(unit)}</title></rect>")
            x += w
        svg.append(f"<text x='{label_w + width + 6}' y='{y + 15}' font-size='12'>{e(units.display(total, unit))} "
                   f"{e(unit)}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _grouped_bars(items) -> str:
    row_h, label_w, width = 30, 210, 520
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 220}' height='{row_h * len(items) + 10}'>"]
    for i, (label, unit, s, d) in enumerate(items):  # each pair scaled to its own larger bar
        y = 5 + i * row_h
        scale = width / max(s, d, 1)
        svg.append(f"<text x='0' y='{y + 16}' font-size='12'>{e(label)}</text>")
        svg.append(f"<rect x='{label_w}' y='{y}' width='{s * scale:.1f}' height='11' fill='{COLORS['supply']}'/>")
        svg.append(f"<rect x='{label_w}' y='{y + 12}' width='{d * scale:.1f}' height='11' fill='{COLORS['demand']}'/>")
        svg.append(f"<text x='{label_w + width + 6}' y='{y + 16}' font-size='12'>{e(units.display(s, unit))} / "
                   f"{e(units.display(d, unit))} {e(unit)}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _timeline(rows, day: dt.date, pname) -> str:
    if not rows:
        return ""
    dates = [dt.date.fromisoformat(r["expires"]) for r in rows if r["expires"]] + [day]
    start, end = min(dates), max(dates) + dt.timedelta(days=30)
    pols = sorted({r["pollutant"] for r in rows})
    label_w, width, row_h = 130, 620, 26
    span = max((end - start).days, 1)
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 80}' height='{row_h * len(pols) + 40}'>"]
    x_today = label_w + width * (day - start).days / span
    svg.append(f"<line x1='{x_today:.1f}' y1='0' x2='{x_today:.1f}' y2='{row_h * len(pols)}' stroke='#999' "
               f"stroke-dasharray='4'/><text x='{x_today + 3:.1f}' y='{row_h * len(pols) + 14}' font-size='11'>{day}</text>")
    for year in range(start.year + 1, end.year + 1):
        x = label_w + width * (dt.date(year, 1, 1) - start).days / span
        svg.append(f"<text x='{x:.1f}' y='{row_h * len(pols) + 30}' font-size='11' fill='#555'>{year}</text>")
    peak = max(r["available_g"] for r in rows)
    for i, pol in enumerate(pols):
        y = i * row_h + row_h / 2
        svg.append(f"<text x='0' y='{y + 4:.1f}' font-size='12'>{e(pname(pol))}</text>")
        for r in (r for r in rows if r["pollutant"] == pol):
            x = label_w + width * ((dt.date.fromisoformat(r["expires"]) - start).days if r["expires"] else span) / span
            radius = 3 + 9 * (r["available_g"] / peak) ** 0.5
            svg.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{radius:.1f}' fill='{COLORS['available']}' "
                       f"fill-opacity='0.6'><title>{e(r['lot'])}: {e(r['available'])} {e(r['unit'])}, "
                       f"{e(r['expires'] or '-')}</title></circle>")
    svg.append("</svg>")
    return "".join(svg)


def _flow(links: dict[tuple[str, str], int]) -> str:
    """Sources on the left, projects on the right, one line per (source, project) with draws."""
    if not links:
        return ""
    left = sorted({a for a, _ in links})
    right = sorted({b for _, b in links})
    row_h, width = 22, 760
    height = row_h * max(len(left), len(right)) + 10
    ly = {a: 10 + i * height / max(len(left), 1) for i, a in enumerate(left)}
    ry = {b: 10 + i * height / max(len(right), 1) for i, b in enumerate(right)}
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + 20}'>"]
    for (a, b), n in sorted(links.items()):
        svg.append(f"<path d='M 250 {ly[a]:.1f} C 380 {ly[a]:.1f}, 420 {ry[b]:.1f}, 550 {ry[b]:.1f}' stroke='"
                   f"{COLORS['allocated']}' stroke-opacity='0.45' stroke-width='{1 + 2 * n}' fill='none'/>")
    for a in left:
        svg.append(f"<rect x='240' y='{ly[a] - 6:.1f}' width='10' height='12' fill='{COLORS['available']}'/>"
                   f"<text x='234' y='{ly[a] + 4:.1f}' font-size='12' text-anchor='end'>{e(a)}</text>")
    for b in right:
        svg.append(f"<rect x='550' y='{ry[b] - 6:.1f}' width='10' height='12' fill='{COLORS['funded']}'/>"
                   f"<text x='566' y='{ry[b] + 4:.1f}' font-size='12'>{e(b)}</text>")
    svg.append("</svg>")
    return "".join(svg)


def _outlook_section(outlook: dict, lang: str, pname) -> list[str]:
    """One row per (pollutant, key), soonest short first: a bar per year for the quota left at the
    year's end (green) and the demand the plan cannot fund that year (red), each row to its own scale."""
    span = outlook["years"]
    out = [f"<h2>{e(t('report_outlook', lang, first=span[0], last=span[-1]))}</h2>",
           _legend([(t("outlook_left", lang), COLORS["supply"]), (t("outlook_short", lang), COLORS["unfunded"])])]
    label_w, cell, bar_h, row_h = 210, 90, 30, 44
    svg = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + cell * len(span) + 10}' "
           f"height='{row_h * (len(outlook['groups']) + 1)}'>"]
    for j, year in enumerate(span):
        svg.append(f"<text x='{label_w + j * cell + 4}' y='14' font-size='12'>{year}</text>")
    for i, g in enumerate(outlook["groups"]):
        y0 = row_h * (i + 1)
        top = max([1] + [max(r["closing_g"], r["unmet_g"], 0) for r in g["years"]])
        label = f"{pname(g['pollutant'])} · {g['key']}" + (f" (↓{g['first_short_year']})" if g["first_short_year"] else "")
        svg.append(f"<text x='0' y='{y0 + bar_h - 8}' font-size='12'>{e(label)}</text>")
        for j, r in enumerate(g["years"]):
            x = label_w + j * cell
            left = max(r["closing_g"], 0) * bar_h / top
            short = max(r["unmet_g"], 0) * bar_h / top
            svg.append(f"<rect x='{x}' y='{y0 + bar_h - left:.1f}' width='38' height='{left:.1f}' "
                       f"fill='{COLORS['supply']}'><title>{e(units.display(r['closing_g'], g['unit']))} "
                       f"{e(g['unit'])}</title></rect>")
            svg.append(f"<rect x='{x + 40}' y='{y0 + bar_h - short:.1f}' width='38' height='{short:.1f}' "
                       f"fill='{COLORS['unfunded']}'><title>{e(units.display(r['unmet_g'], g['unit']))} "
                       f"{e(g['unit'])}</title></rect>")
    svg.append("</svg>")
    out.append("".join(svg))
    out.append(_table([H(c, lang) for c in ("Pollutant", "Key", "Unit")] + [str(y) for y in span],
                      [[pname(g["pollutant"]), g["key"], g["unit"]] +
                       [units.display(r["closing_g"], g["unit"]) + (f" (−{units.display_up(r['unmet_g'], g['unit'])})"
                                                                   if r["unmet_g"] > 0 else "") for r in g["years"]]
                       for g in outlook["groups"]]))
    return out


def overview(engine: Engine, *, as_of: dt.date | None = None, lang: str = "en") -> dict:
    """What the web workspace's overview shows (the report's first sections, as data): available / reserved /
    allocated per pollutant and matching key with its chart (inline SVG, no script), the lots expiring in the
    next 12 months, and the chain's head."""
    day = as_of or clock.today()
    with db.reading(engine) as conn:
        _, book = versions.current(conn)
        unit = {p: book.pollutants[p].unit for p in book.pollutants}
        until = day + dt.timedelta(days=365) if day <= dt.date.max - dt.timedelta(days=365) else dt.date.max
        if as_of is None:  # today: from the maintained balances
            soon = balances.expiring_lots(conn, unit, day, until)
        else:  # a past day: every lot replayed to that day
            soon = sorted((r for r in balances.balance_rows(conn, unit, by="lot", as_of=as_of, today=day)
                           if r["available_g"] > 0 and r["expires"]
                           and day < dt.date.fromisoformat(r["expires"]) <= until), key=lambda r: (r["expires"], r["lot"]))
        by_zone = balances.balance_rows(conn, unit, by="zone", as_of=as_of, today=day)
        seq, head = db.chain_head(conn)
    groups: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in by_zone:
        key = book.matching_key(r["pollutant"], r["zone"]) if r["zone"] in book.zones else r["zone"]
        for kind in ("available", "reserved", "allocated"):
            groups[(r["pollutant"], key)][kind] += r[f"{kind}_g"]
    rows = [{"pollutant": p, "name_zh": book.pollutants[p].name_zh if p in book.pollutants else "", "key": k,
             "unit": unit[p], **{f"{kind}_g": v[kind] for kind in ("available", "reserved", "allocated")},
             **{kind: units.display(v[kind], unit[p]) for kind in ("available", "reserved", "allocated")}}
            for (p, k), v in sorted(groups.items())]
    pname = (lambda c: f"{c} {book.pollutants[c].name_zh}") if lang == "zh" else (lambda c: c)
    chart = _stacked_bars([(f"{pname(r['pollutant'])} · {r['key']}", r["unit"], [
        (COLORS[kind], r[f"{kind}_g"], t({"available": "available", "reserved": "reserved_kind",
                                          "allocated": "allocated_kind"}[kind], lang))
        for kind in ("available", "reserved", "allocated")]) for r in rows]) if rows else ""
    return {"as_of": day.isoformat(), "rows": rows, "chart_svg": chart, "colors": COLORS,
            "expiring": [{k: r[k] for k in ("lot", "pollutant", "zone", "expires", "available_g", "available",
                                            "unit")} for r in soon],
            "head": {"seq": seq, "hash": head}}


def plan_view(engine: Engine, plan_id: str, lang: str = "en") -> dict:
    """What the web workspace's plan page shows: the stored plan (plans.get_plan), its supply-and-demand chart
    and the report's flow chart (sources on the left, the projects they fund on the right), as inline SVG."""
    plan = plans.get_plan(engine, plan_id)
    lots = sorted({d["lot"] for f in plan["funded"] for d in f["draws"]})
    sources: dict[str, tuple[str, str]] = {}
    if lots:
        from sqlalchemy import bindparam
        with db.reading(engine) as conn:
            sources = {r[0]: (r[1], r[2]) for r in conn.execute(text(
                "SELECT l.serial, s.source_id, s.name FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
                "JOIN source s ON s.source_id = t.source_id WHERE l.serial IN :lots").bindparams(
                bindparam("lots", expanding=True)), {"lots": lots})}
    links: dict[tuple[str, str], int] = defaultdict(int)
    for f in plan["funded"]:
        for d in f["draws"]:
            src = sources.get(d["lot"], (d["lot"], d["lot"]))
            links[(f"{src[0]} {src[1]}", f["project_id"])] += 1
    return {"plan": plan, "chart": plan_chart(plan, lang), "flow": _flow(links)}


def outlook_view(outlook: dict, lang: str = "en") -> str:
    """The report's outlook section (chart and table) for the web workspace's outlook page."""
    return "".join(_outlook_section(outlook, lang, lambda code: code))


def plan_chart(plan: dict, lang: str = "en") -> str:
    """The report's supply-and-demand chart of a stored plan (plans.get_plan), per pollutant and key, as inline
    SVG (for the web workspace's plan page)."""
    unit = plan.get("units", {})
    groups = [g for g in plan.get("groups", []) if g["demand_g"] and g["pollutant"] in unit]
    return _grouped_bars([(f"{g['pollutant']} · {g['key']}", unit[g["pollutant"]], g["supply_g"], g["demand_g"])
                          for g in groups]) if groups else ""
