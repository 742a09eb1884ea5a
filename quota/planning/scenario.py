"""Planning scenarios (TOML): hypothetical lots, project changes, rule overrides, candidate measures."""
from __future__ import annotations

import dataclasses
import datetime as dt
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

from quota import identity
from quota import units
from quota.errors import Problem, ValidationFailed
from quota.rules.book import MEDIA, RatioRule, Rulebook


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
    priority: int
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
    """Parse and validate a scenario file against the rulebook; raise ValidationFailed with every problem."""
    name = Path(path).name
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
        data = tomllib.loads(text, parse_float=units.toml_decimal)
    except FileNotFoundError:
        raise ValidationFailed([Problem(name, 0, "", "file not found")]) from None
    except units.AmountError as exc:
        raise ValidationFailed([Problem(name, units.toml_problem_line(text, exc), "", str(exc))]) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValidationFailed([Problem(name, getattr(exc, "lineno", 0) or 0, "", f"cannot read: {exc}")]) from None
    p = _Parser(name, book)
    sc = p.parse(data)
    sc.text = text
    if p.problems:
        raise ValidationFailed(p.problems)
    return sc


class _Parser:
    def __init__(self, source: str, book: Rulebook):
        self.source, self.book, self.problems = source, book, []

    def err(self, where: str, message: str) -> None:
        self.problems.append(Problem(self.source, 0, where, message))

    def date(self, value, where: str) -> dt.date | None:
        if value is None or value == "":
            return None
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            self.err(where, f"not a date: {value!r} (use YYYY-MM-DD)")
            return None

    def amounts(self, table, where: str, zone: str, *, round_up: bool) -> dict[str, int]:
        out = {}
        if not isinstance(table, dict) or not table:
            self.err(where, "must be a table of pollutant = amount")
            return out
        for pol, raw in table.items():
            pol = self.code(pol, f"{where}.{pol}") or pol
            if pol not in self.book.pollutants:
                self.err(f"{where}.{pol}", f"unknown pollutant {pol!r}")
                continue
            try:
                value = units.parse_decimal(raw)
            except units.AmountError as exc:
                self.err(f"{where}.{pol}", str(exc))
                continue
            if value <= 0:
                self.err(f"{where}.{pol}", "amount must be greater than zero")
                continue
            unit = self.book.pollutants[pol].unit
            too_big = units.check_row_g(units.grams_exact(value, unit), unit)
            if too_big:
                self.err(f"{where}.{pol}", f"amount {value} {too_big}")
                continue
            out[pol] = units.to_requirement_g(value, unit) if round_up else units.to_credit_g(value, unit)
        return out

    def zone(self, value, where: str) -> str:
        value = self.code(value, where) if isinstance(value, str) else value
        if value not in self.book.zones:
            self.err(where, f"unknown zone {value!r}")
        return str(value)

    def code(self, value, where: str, required: bool = True) -> str:
        """An id or code by identity.code ('' and a problem if it is unfit)."""
        if value is None or value == "":
            if required:
                self.err(where, "required")
            return ""
        if not isinstance(value, str):
            self.err(where, f"must be a text, got {value!r}")
            return ""
        try:
            return identity.code(value, where)
        except identity.BadId as exc:
            self.err(where, exc.reason)
            return ""

    def free(self, value, where: str) -> str:
        """A name by identity.free_text (no control, bidi or line-break characters)."""
        try:
            return identity.free_text(str(value), where)
        except identity.BadId as exc:
            self.err(where, exc.reason)
            return ""

    def unknown(self, table: dict, allowed: set[str], where: str) -> None:
        for key in sorted(set(table) - allowed):
            self.err(f"{where}.{key}", "unknown key (typo, or a top-level key placed after a [[table]]?)")

    def parse(self, data: dict) -> Scenario:
        sc = Scenario(name=str(data.get("name", "")), as_of=self.date(data.get("as_of"), "as_of"))
        known = {"name", "as_of", "lots", "projects", "remove_projects", "rules", "candidates", "measures"}
        for key in sorted(set(data) - known):
            self.err(key, "unknown key (typo?)")
        for i, lot in enumerate(data.get("lots", []), 1):
            w = f"lots[{i}]"
            self.unknown(lot, {"id", "zone", "pollutant", "amount", "expires"}, w)
            zone = self.zone(lot.get("zone"), f"{w}.zone")
            pol = self.code(lot.get("pollutant"), f"{w}.pollutant", required=False)
            amounts = self.amounts({pol: lot.get("amount")}, w, zone, round_up=False) if pol else {}
            if not pol:
                self.err(f"{w}.pollutant", "required")
            sc.lots.append(ExtraLot(self.code(lot.get("id", f"H{i}"), f"{w}.id"), zone, pol or "", amounts.get(pol, 0),
                                    self.date(lot.get("expires"), f"{w}.expires")))
        for i, pr in enumerate(data.get("projects", []), 1):
            w = f"projects[{i}]"
            self.unknown(pr, {"project_id", "name", "zone", "industry", "priority", "needed_by", "must_fund",
                              "needs", "ratios"}, w)
            pid = self.code(pr.get("project_id"), f"{w}.project_id")
            zone = self.zone(pr.get("zone"), f"{w}.zone")
            ratios = {}
            for pol, r in (pr.get("ratios") or {}).items():
                pol = self.code(pol, f"{w}.ratios.{pol}") or pol
                r = Decimal(r) if isinstance(r, int) and not isinstance(r, bool) else r
                if not isinstance(r, Decimal) or not (1 <= r <= 100):
                    self.err(f"{w}.ratios.{pol}", "ratio must be from 1 to 100")
                else:
                    ratios[pol] = r
            priority = pr.get("priority", 1)
            if not isinstance(priority, int) or priority < 1:
                self.err(f"{w}.priority", "must be a whole number >= 1")
                priority = 1
            sc.projects.append(ExtraProject(pid, self.free(pr.get("name", ""), f"{w}.name"), zone,
                                            str(pr.get("industry", "")), priority,
                                            self.date(pr.get("needed_by"), f"{w}.needed_by"),
                                            bool(pr.get("must_fund", False)),
                                            self.amounts(pr.get("needs"), f"{w}.needs", zone, round_up=True), ratios))
        sc.remove_projects = [self.code(x, f"remove_projects[{i}]")
                              for i, x in enumerate(data.get("remove_projects", []), 1)]
        rules = data.get("rules", {})
        self.unknown(rules, {"non_attainment", "ratio_default", "ratio_non_attainment", "ratio_rule"}, "rules")
        for zone, media in (rules.get("non_attainment") or {}).items():
            zone = self.zone(zone, f"rules.non_attainment.{zone}")
            if not isinstance(media, list) or any(m not in MEDIA for m in media):
                self.err(f"rules.non_attainment.{zone}", f"must be a list of media from {', '.join(MEDIA)}")
            else:
                sc.non_attainment[zone] = tuple(sorted(media))
        for key in ("ratio_default", "ratio_non_attainment"):
            if key in rules:
                value = Decimal(rules[key]) if isinstance(rules[key], int) else rules[key]
                if not isinstance(value, Decimal) or not (1 <= value <= 100):
                    self.err(f"rules.{key}", "ratio must be from 1 to 100")
                else:
                    setattr(sc, key, value)
        for i, r in enumerate(rules.get("ratio_rule", []), 1):
            value = Decimal(r.get("ratio", 0)) if isinstance(r.get("ratio"), int) else r.get("ratio")
            if not isinstance(value, Decimal) or not (1 <= value <= 100):
                self.err(f"rules.ratio_rule[{i}].ratio", "ratio must be from 1 to 100")
                continue
            pol = self.code(r.get("pollutant"), f"rules.ratio_rule[{i}].pollutant", required=False) or None
            if pol and pol not in self.book.pollutants:
                self.err(f"rules.ratio_rule[{i}].pollutant", f"unknown pollutant {pol!r}")
            zone = self.zone(r["zone"], f"rules.ratio_rule[{i}].zone") if r.get("zone") else None
            sc.ratio_rules.append(RatioRule(value, pol, r.get("industry"), zone))
        for i, c in enumerate(data.get("candidates", []), 1):
            w = f"candidates[{i}]"
            self.unknown(c, {"id", "name", "zone", "cost", "reductions"}, w)
            zone = self.zone(c.get("zone"), f"{w}.zone")
            cost = c.get("cost", 0)
            if isinstance(cost, Decimal):
                cost = int(cost)
            if not isinstance(cost, int) or cost < 0:
                self.err(f"{w}.cost", "must be a non-negative number")
                cost = 0
            sc.candidates.append(Candidate(self.code(c.get("id", f"C{i}"), f"{w}.id"),
                                           self.free(c.get("name", ""), f"{w}.name"), zone, cost,
                                           self.amounts(c.get("reductions"), f"{w}.reductions", zone,
                                                        round_up=False)))
        measures = data.get("measures", {})
        self.unknown(measures, {"mode", "budget"}, "measures")
        sc.mode = measures.get("mode", "priority")
        if sc.mode not in ("priority", "cheapest"):
            self.err("measures.mode", "must be 'priority' (most priority within budget) or 'cheapest'")
        if "budget" in measures:
            budget = measures["budget"]
            sc.budget = int(budget) if isinstance(budget, (int, Decimal)) and budget >= 0 else None
            if sc.budget is None:
                self.err("measures.budget", "must be a non-negative number")
        return sc
