"""Planning scenarios (TOML): hypothetical lots, project changes, rule overrides, candidate measures."""
from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from quota import units
from quota.errors import ValidationFailed
from quota.rules.book import MEDIA, RatioRule, Rulebook, locate
from quota.rules.tomlcheck import Checker, read_toml


@dataclass
class ExtraLot:
    lot_id: str
    zone: str
    pollutant: str
    amount_g: int
    expires: dt.date | None


@dataclass
class ExtraProject:
    project_id: str
    name: str
    zone: str
    industry: str
    priority: int | Decimal  # units.parse_priority
    needed_by: dt.date | None
    must_fund: bool
    needs: dict[str, int]               # pollutant -> increment grams
    ratios: dict[str, Decimal]          # pollutant -> project's own ratio


@dataclass
class Candidate:
    candidate_id: str
    name: str
    zone: str
    cost: int
    reductions: dict[str, int]          # pollutant -> grams


@dataclass
class Scenario:
    name: str = ""
    text: str = ""
    as_of: dt.date | None = None
    lots: list[ExtraLot] = field(default_factory=list)
    projects: list[ExtraProject] = field(default_factory=list)
    remove_projects: list[str] = field(default_factory=list)
    non_attainment: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ratio_default: Decimal | None = None
    ratio_non_attainment: Decimal | None = None
    ratio_rules: list[RatioRule] = field(default_factory=list)
    candidates: list[Candidate] = field(default_factory=list)
    mode: str = "priority"
    budget: int | None = None

    def apply_rules(self, book: Rulebook) -> Rulebook:
        """The rulebook with this scenario's overrides (the stored rulebook is not changed)."""
        zones = dict(book.zones)
        for code, media in self.non_attainment.items():
            zones[code] = dataclasses.replace(zones[code], non_attainment=media)
        return dataclasses.replace(
            book, zones=zones,
            ratio_default=self.ratio_default if self.ratio_default is not None else book.ratio_default,
            ratio_non_attainment=(self.ratio_non_attainment if self.ratio_non_attainment is not None
                                  else book.ratio_non_attainment),
            ratio_rules=tuple(book.ratio_rules) + tuple(self.ratio_rules))


def load_scenario(path: str, book: Rulebook) -> Scenario:
    """Parse and validate a scenario file against the rulebook; raise ValidationFailed with every problem: every
    key known (a "did you mean" when one is close), every value of its type, numbers finite, ids not repeated."""
    name = Path(path).name
    text, data = read_toml(path, name, units.toml_decimal)
    p = _Parser(name, book)
    sc = p.parse(data)
    sc.text = text
    if p.problems:  # each at its line, found from its key path (rules.book.locate)
        raise ValidationFailed([q if q.row else q.at(row=locate(text, q.column)) for q in p.problems])
    return sc


LOT_KEYS = {"id", "zone", "pollutant", "amount", "expires"}
PROJECT_KEYS = {"project_id", "name", "zone", "industry", "priority", "needed_by", "must_fund", "needs", "ratios"}
RULE_KEYS = {"non_attainment", "ratio_default", "ratio_non_attainment", "ratio_rule"}
RATIO_RULE_KEYS = {"ratio", "pollutant", "zone", "industry"}
CANDIDATE_KEYS = {"id", "name", "zone", "cost", "reductions"}
TOP_KEYS = {"name", "as_of", "lots", "projects", "remove_projects", "rules", "candidates", "measures"}


class _Parser(Checker):
    def __init__(self, source: str, book: Rulebook):
        super().__init__(source)
        self.book = book

    def priority(self, value, where: str) -> int | Decimal:
        """A project's priority (units.parse_priority): 1 and a problem when it is unfit."""
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
            self.wrong(where, "number", value)
            return 1
        try:
            return units.parse_priority(value)
        except units.AmountError as exc:
            self.err(where, exc.code, **exc.facts)
            return 1

    def amounts(self, table, where: str, *, round_up: bool) -> dict[str, int]:
        """pollutant = amount (each amount > 0, finite, within one row's bound) as grams."""
        out = {}
        if table is None or table == {}:
            self.err(where, "missing_key")
            return out
        if not isinstance(table, dict):
            self.wrong(where, "table", table)
            return out
        for key, raw in table.items():
            pol = self.pollutant(key, f"{where}.{key}")
            if not pol:
                continue
            if pol in out:  # `cod` and `COD` name one pollutant: the second would silently replace the first
                self.err(f"{where}.{key}", "duplicate_code", what="pollutant", value=pol)
                continue
            unit = self.book.pollutants[pol].unit
            value = self.amount(raw, f"{where}.{key}", unit)
            if value is not None:
                out[pol] = units.to_requirement_g(value, unit) if round_up else units.to_credit_g(value, unit)
        return out

    def amount(self, raw, where: str, unit: str):
        try:
            value = units.parse_decimal(raw)
        except units.AmountError as exc:
            self.err(where, exc.code, **exc.facts)
            return None
        if value <= 0:
            self.err(where, "positive_amount")
            return None
        too_big = units.check_row_g(units.grams_exact(value, unit), unit)
        if too_big:
            self.err(where, "amount_too_big", value=str(value), **too_big)
            return None
        return value

    def pollutant(self, value, where: str, required: bool = True) -> str:
        pol = self.code(value, where, required)
        if pol and pol not in self.book.pollutants:
            self.err(where, "unknown_pollutant", value=pol, known=sorted(self.book.pollutants))
            return ""
        return pol

    def zone(self, value, where: str, required: bool = True) -> str:
        zone = self.code(value, where, required)
        if zone and zone not in self.book.zones:
            self.err(where, "unknown_zone", value=zone, known=sorted(self.book.zones))
            return ""
        return zone

    def ratio(self, value, where: str) -> Decimal | None:
        number = self.number(value, where)
        if number is not None and not 1 <= number <= 100:
            self.err(where, "ratio_range", value=str(number))
            return None
        return number

    def cost(self, value, where: str) -> int | None:
        number = self.number(value, where)
        if number is not None and number < 0:
            self.err(where, "not_negative", value=str(number))
            return None
        return None if number is None else int(number)

    def unique(self, ids: list[str], what: str, where: str) -> None:
        seen = set()
        for i, x in enumerate(ids, 1):
            if x and x in seen:
                self.err(f"{where}[{i}]", "duplicate_id", what=what, value=x)
            seen.add(x)

    def parse(self, data: dict) -> Scenario:
        self.keys(data, TOP_KEYS)
        sc = Scenario(name=self.free(data, "name", ""), as_of=self.date(data.get("as_of"), "as_of"))
        for w, lot in self.tables(data.get("lots"), "lots"):
            self.keys(lot, LOT_KEYS, w)
            zone = self.zone(lot.get("zone"), f"{w}.zone")
            pol = self.pollutant(lot.get("pollutant"), f"{w}.pollutant")
            grams = 0
            if "amount" not in lot:
                self.err(f"{w}.amount", "missing_key")
            elif pol:
                value = self.amount(lot["amount"], f"{w}.amount", self.book.pollutants[pol].unit)
                grams = 0 if value is None else units.to_credit_g(value, self.book.pollutants[pol].unit)
            sc.lots.append(ExtraLot(self.code(lot.get("id", f"H{len(sc.lots) + 1}"), f"{w}.id"), zone, pol, grams,
                                    self.date(lot.get("expires"), f"{w}.expires")))
        self.unique([lot.lot_id for lot in sc.lots], "lot", "lots")
        for w, pr in self.tables(data.get("projects"), "projects"):
            self.keys(pr, PROJECT_KEYS, w)
            pid = self.code(pr.get("project_id"), f"{w}.project_id")
            zone = self.zone(pr.get("zone"), f"{w}.zone")
            ratios = {}
            for key, r in self.table(pr.get("ratios"), f"{w}.ratios").items():
                pol = self.pollutant(key, f"{w}.ratios.{key}")
                value = self.ratio(r, f"{w}.ratios.{key}")
                if pol and value is not None:
                    ratios[pol] = value
            # a TOML integer, a TOML decimal (7.5, read exactly) or a text by the number grammar ("7.5")
            priority = self.priority(pr.get("priority", 1), f"{w}.priority")
            sc.projects.append(ExtraProject(pid, self.free(pr, "name", w), zone, self.free(pr, "industry", w),
                                            priority, self.date(pr.get("needed_by"), f"{w}.needed_by"),
                                            self.boolean(pr, "must_fund", w),
                                            self.amounts(pr.get("needs"), f"{w}.needs", round_up=True), ratios))
        self.unique([p.project_id for p in sc.projects], "project", "projects")
        sc.remove_projects = [self.code(x, f"remove_projects[{i}]")
                              for i, x in enumerate(self.strings(data.get("remove_projects"), "remove_projects"), 1)]
        rules = self.table(data.get("rules"), "rules")
        self.keys(rules, RULE_KEYS, "rules")
        for key, media in self.table(rules.get("non_attainment"), "rules.non_attainment").items():
            zone = self.zone(key, f"rules.non_attainment.{key}")
            media = self.strings(media, f"rules.non_attainment.{key}")
            if any(m not in MEDIA for m in media):
                self.err(f"rules.non_attainment.{key}", "unknown_medium",
                         value=", ".join(m for m in media if m not in MEDIA), known=list(MEDIA))
            elif zone:
                sc.non_attainment[zone] = tuple(sorted(set(media)))
        for key in ("ratio_default", "ratio_non_attainment"):
            if key in rules:
                setattr(sc, key, self.ratio(rules[key], f"rules.{key}"))
        for w, r in self.tables(rules.get("ratio_rule"), "rules.ratio_rule"):
            self.keys(r, RATIO_RULE_KEYS, w)
            if "ratio" not in r:
                self.err(f"{w}.ratio", "missing_key")
                continue
            value = self.ratio(r["ratio"], f"{w}.ratio")
            pol = self.pollutant(r.get("pollutant"), f"{w}.pollutant", required=False) or None
            zone = self.zone(r.get("zone"), f"{w}.zone", required=False) or None
            industry = self.string(r, "industry", w, required=False) or None
            if value is not None:
                sc.ratio_rules.append(RatioRule(value, pol, industry, zone))
        for w, c in self.tables(data.get("candidates"), "candidates"):
            self.keys(c, CANDIDATE_KEYS, w)
            zone = self.zone(c.get("zone"), f"{w}.zone")
            cost = self.cost(c.get("cost", 0), f"{w}.cost")
            sc.candidates.append(Candidate(self.code(c.get("id", f"C{len(sc.candidates) + 1}"), f"{w}.id"),
                                           self.free(c, "name", w), zone, cost or 0,
                                           self.amounts(c.get("reductions"), f"{w}.reductions", round_up=False)))
        self.unique([c.candidate_id for c in sc.candidates], "candidate", "candidates")
        measures = self.table(data.get("measures"), "measures")
        self.keys(measures, {"mode", "budget"}, "measures")
        sc.mode = self.string(measures, "mode", "measures", required=False) or "priority"
        if sc.mode not in ("priority", "cheapest"):
            self.err("measures.mode", "bad_mode", value=sc.mode)
        if "budget" in measures:
            sc.budget = self.cost(measures["budget"], "measures.budget")
        return sc
