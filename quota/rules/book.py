"""The rulebook: pollutants, zones, matching, ratios and crediting rules, loaded from TOML."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal

from quota.errors import Problem, ValidationFailed
from quota.rules.tomlcheck import Checker

MEDIA = ("water", "air", "metal")
UNITS = ("t/a", "kg/a")
MATCH_KEYS = ("watershed", "airshed", "zone", "jurisdiction")
BASELINES = ("min_actual_permitted", "actual")
CODE_RE = re.compile(r"^[A-Z][A-Z0-9-]*$")
ZONE_RE = re.compile(r"^[A-Z0-9][A-Z0-9-]*$")


@dataclass(frozen=True)
class Pollutant:
    code: str
    name: str
    name_zh: str
    medium: str
    unit: str


@dataclass(frozen=True)
class Zone:
    code: str
    name: str
    name_zh: str
    watershed: str
    airshed: str
    non_attainment: tuple[str, ...] = ()


@dataclass(frozen=True)
class RatioRule:
    ratio: Decimal
    pollutant: str | None = None
    industry: str | None = None
    zone: str | None = None

    def matches(self, pollutant: str, industry: str, zone: str) -> bool:
        return (
            (self.pollutant is None or self.pollutant == pollutant)
            and (self.industry is None or self.industry.casefold() == (industry or "").casefold())
            and (self.zone is None or self.zone == zone)
        )


@dataclass(frozen=True)
class Rulebook:
    jurisdiction_code: str
    jurisdiction_name: str
    jurisdiction_name_zh: str
    pollutants: dict[str, Pollutant]
    zones: dict[str, Zone]
    matching: dict[str, str]
    ratio_default: Decimal
    ratio_non_attainment: Decimal
    ratio_rules: tuple[RatioRule, ...]
    baseline: str
    discount: Decimal
    life_years: int
    text: str = field(default="", repr=False, compare=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    def pollutant(self, code: str) -> Pollutant:
        return self.pollutants[code]

    def matching_key(self, pollutant: str, zone: str) -> str:
        """The key a lot and a project must share to be matched (e.g. the watershed)."""
        kind = self.matching[self.pollutants[pollutant].medium]
        z = self.zones[zone]
        return {"watershed": z.watershed, "airshed": z.airshed, "zone": z.code,
                "jurisdiction": self.jurisdiction_code}[kind]

    def zones_with_key(self, pollutant: str, key: str) -> tuple[str, ...]:
        """The zones (sorted) whose lots of `pollutant` carry matching key `key`."""
        return self._zones_by_key.get((pollutant, key), ())

    @cached_property
    def _zones_by_key(self) -> dict[tuple[str, str], tuple[str, ...]]:
        out: dict[tuple[str, str], list[str]] = {}
        for pollutant in self.pollutants:
            for zone in sorted(self.zones):
                out.setdefault((pollutant, self.matching_key(pollutant, zone)), []).append(zone)
        return {k: tuple(v) for k, v in out.items()}

    def ratio(self, pollutant: str, industry: str, zone: str,
              own: Decimal | None = None) -> tuple[Decimal, list[str]]:
        """The strictest applicable replacement ratio, and why (list of reasons)."""
        key = (pollutant, industry, zone, own)
        found = self._ratios.get(key)
        if found is None:
            found = self._ratios[key] = self._ratio(pollutant, industry, zone, own)
        return found[0], list(found[1])

    @cached_property
    def _ratios(self) -> dict[tuple, tuple[Decimal, tuple[str, ...]]]:
        return {}  # (pollutant, industry, zone, own ratio) -> (ratio, reasons), filled as projects are read

    def _ratio(self, pollutant: str, industry: str, zone: str,
               own: Decimal | None) -> tuple[Decimal, tuple[str, ...]]:
        candidates: list[tuple[Decimal, str]] = [(self.ratio_default, "default")]
        medium = self.pollutants[pollutant].medium
        if medium in self.zones[zone].non_attainment:
            candidates.append((self.ratio_non_attainment, f"{zone} non-attainment ({medium})"))
        for rule in self.ratio_rules:
            if rule.matches(pollutant, industry, zone):
                keys = ", ".join(f"{k}={v}" for k, v in
                                 (("pollutant", rule.pollutant), ("industry", rule.industry),
                                  ("zone", rule.zone)) if v)
                candidates.append((rule.ratio, f"rule {keys or 'all'}"))
        if own is not None:
            candidates.append((own, "project row"))
        best = max(c[0] for c in candidates)
        return best, tuple(why for r, why in candidates if r == best)

    def lot_expiry(self, effective: dt.date) -> dt.date | None:
        if self.life_years == 0:
            return None
        try:
            return effective.replace(year=effective.year + self.life_years)
        except ValueError:  # 29 February
            return effective.replace(year=effective.year + self.life_years, day=28)


def load_rulebook_file(path: str) -> Rulebook:
    """Read and validate a rulebook file; ValidationFailed lists every problem (a missing file, a directory, text
    that is not UTF-8 or not TOML, and each unknown key or unfit value)."""
    from quota.rules.tomlcheck import read_toml
    text, _ = read_toml(path, path, Decimal)
    book, problems = parse_rulebook(text, source=path)
    if problems:
        raise ValidationFailed(problems)
    return book


def parse_rulebook(text: str, source: str = "rules.toml") -> tuple[Rulebook | None, list[Problem]]:
    """Parse and validate a rulebook; return (rulebook, []) or (None, problems)."""
    from quota.rules.tomlcheck import toml_problem
    try:
        data = tomllib.loads(text, parse_float=Decimal)  # stored rulebooks are re-read: keep TOML's grammar
    except tomllib.TOMLDecodeError as exc:
        return None, [toml_problem(source, text, exc)]

    v = _Validator(source)
    book = v.build(data, text)
    if v.problems:
        return None, [p if p.row else p.at(row=locate(text, p.column)) for p in v.problems]
    return book, []


def locate(text: str, column: str) -> int:
    """Best-effort line of a rulebook key path such as 'zones[2].code' or 'crediting.discount'."""
    lines = text.splitlines()
    m = re.match(r"^([a-z_.]+?)(?:\[(\d+)\])?(?:\.([A-Za-z_-]+))?$", column or "")
    if not m:
        return 0
    table, index, key = m.group(1), m.group(2), m.group(3)
    start = 0
    if index is not None:
        header = f"[[{table}]]"
        seen = 0
        for i, line in enumerate(lines):
            if line.strip() == header:
                seen += 1
                if seen == int(index):
                    start = i
                    break
        else:
            return 0
    else:
        parts = table.split(".")
        if len(parts) > 1 or key is None:
            section, key = (".".join(parts[:-1]), parts[-1]) if key is None else (table, key)
        else:
            section = table
        if not section:  # a top-level key: before the first table header
            start = -1
        else:
            for i, line in enumerate(lines):
                if line.strip() == f"[{section}]":
                    start = i
                    break
            else:
                return 0
    if key is None:
        return start + 1
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if stripped.startswith("["):
            break
        if re.match(rf"^{re.escape(key)}\s*=", stripped):
            return i + 1
    return start + 1


class _Validator(Checker):
    def _code(self, table: dict, key: str, where: str, required: bool = True) -> str:
        """A zone or pollutant code in the normal form of every id (identity.code), so that a
        code in the rulebook and the same code typed in a file are one code."""
        if key not in table and not required:
            return ""
        return self.code(table.get(key), f"{where}.{key}", required)

    def _ratio(self, value: object, where: str) -> Decimal:
        number = self.number(value, where)
        if number is None:
            return Decimal(1)
        if not 1 <= number <= 100:
            self.err(where, "ratio_range", value=str(number))
            return Decimal(1)
        return number

    def build(self, data: dict, text: str) -> Rulebook | None:
        self.keys(data, {"jurisdiction", "pollutants", "zones", "matching", "ratios", "crediting"})
        j = self.table(data.get("jurisdiction"), "jurisdiction")
        self.keys(j, {"code", "name", "name_zh"}, "jurisdiction")
        code = self.string(j, "code", "jurisdiction")
        pollutants = self._pollutants(data.get("pollutants"))
        zones = self._zones(data.get("zones"))
        matching = self._matching(self.table(data.get("matching"), "matching"))
        ratios = self.table(data.get("ratios"), "ratios")
        self.keys(ratios, {"default", "non_attainment", "rule"}, "ratios")
        rdefault = self._ratio(ratios.get("default", Decimal(1)), "ratios.default")
        rnon = self._ratio(ratios.get("non_attainment", rdefault), "ratios.non_attainment")
        rules = self._ratio_rules(ratios.get("rule"), pollutants, zones)
        baseline, discount, life = self._crediting(self.table(data.get("crediting"), "crediting"))
        if self.problems:
            return None
        return Rulebook(code, self.free(j, "name", "jurisdiction"), self.free(j, "name_zh", "jurisdiction"),
                        pollutants, zones, matching, rdefault, rnon, rules, baseline, discount, life, text)

    def _pollutants(self, items: object) -> dict[str, Pollutant]:
        out: dict[str, Pollutant] = {}
        if items is None or items == []:
            self.err("pollutants", "need_entries", table="pollutants")
            return out
        entries = self.tables(items, "pollutants")
        for where, p in entries:
            self.keys(p, {"code", "name", "name_zh", "medium", "unit"}, where)
            code = self._code(p, "code", where)
            if code and not CODE_RE.match(code):
                self.err(f"{where}.code", "bad_code_pattern", value=code, pattern="[A-Z][A-Z0-9-]*")
            if code in out:
                self.err(f"{where}.code", "duplicate_code", what="pollutant", value=code)
            medium = self.string(p, "medium", where).strip().lower()  # any case, as the imports read units
            if medium and medium not in MEDIA:
                self.err(f"{where}.medium", "unknown_medium", value=medium, known=list(MEDIA))
            unit = self.string(p, "unit", where).strip().lower()
            if unit and unit not in UNITS:
                self.err(f"{where}.unit", "unknown_unit", value=unit, known=list(UNITS))
            out.setdefault(code, Pollutant(code, self.free(p, "name", where), self.free(p, "name_zh", where),
                                           medium, unit))
        return out

    def _zones(self, items: object) -> dict[str, Zone]:
        out: dict[str, Zone] = {}
        if items is None or items == []:
            self.err("zones", "need_entries", table="zones")
            return out
        entries = self.tables(items, "zones")
        for where, z in entries:
            self.keys(z, {"code", "name", "name_zh", "watershed", "airshed", "non_attainment"}, where)
            code = self._code(z, "code", where)
            if code and not ZONE_RE.match(code):
                self.err(f"{where}.code", "bad_code_pattern", value=code, pattern="[A-Z0-9][A-Z0-9-]*")
            if code in out:
                self.err(f"{where}.code", "duplicate_code", what="zone", value=code)
            watershed = self.string(z, "watershed", where)
            airshed = self.string(z, "airshed", where)
            non = [m.strip().lower() for m in self.strings(z.get("non_attainment"), f"{where}.non_attainment")]
            if any(m not in MEDIA for m in non):
                self.err(f"{where}.non_attainment", "unknown_medium", value=", ".join(m for m in non if m not in MEDIA),
                         known=list(MEDIA))
                non = []
            out.setdefault(code, Zone(code, self.free(z, "name", where), self.free(z, "name_zh", where), watershed,
                                      airshed, tuple(sorted(set(non)))))
        return out

    def _matching(self, m: dict) -> dict[str, str]:
        defaults = {"water": "watershed", "air": "airshed", "metal": "zone"}
        self.keys(m, MEDIA, "matching")
        for key, value in m.items():
            if key not in MEDIA:
                continue
            if not isinstance(value, str):
                self.wrong(f"matching.{key}", "string", value)
            elif value not in MATCH_KEYS:
                self.err(f"matching.{key}", "unknown_match_key", value=value, known=list(MATCH_KEYS))
            else:
                defaults[key] = value
        return defaults

    def _ratio_rules(self, items: object, pollutants: dict, zones: dict) -> tuple[RatioRule, ...]:
        rules = []
        for where, r in self.tables(items, "ratios.rule"):
            self.keys(r, {"ratio", "pollutant", "zone", "industry"}, where)
            if "ratio" not in r:
                self.err(f"{where}.ratio", "missing_key")
                continue
            ratio = self._ratio(r["ratio"], f"{where}.ratio")
            pol = self._code(r, "pollutant", where, False) or None
            zone = self._code(r, "zone", where, False) or None
            if pol and pol not in pollutants:
                self.err(f"{where}.pollutant", "unknown_pollutant", value=pol, known=sorted(pollutants))
            if zone and zone not in zones:
                self.err(f"{where}.zone", "unknown_zone", value=zone, known=sorted(zones))
            rule = RatioRule(ratio, pol, self.string(r, "industry", where, False) or None, zone)
            for j, other in enumerate(rules, 1):
                if (other.pollutant, other.industry, other.zone) == (rule.pollutant, rule.industry, rule.zone) \
                        and other.ratio != rule.ratio:
                    self.err(f"{where}.ratio", "ratio_conflict", other=f"ratios.rule[{j}]", other_ratio=str(other.ratio),
                             ratio=str(rule.ratio))
            rules.append(rule)
        return tuple(rules)

    def _crediting(self, c: dict) -> tuple[str, Decimal, int]:
        self.keys(c, {"baseline", "discount", "life_years"}, "crediting")
        baseline = c.get("baseline", "min_actual_permitted")
        if not isinstance(baseline, str):
            self.wrong("crediting.baseline", "string", baseline)
        elif baseline not in BASELINES:
            self.err("crediting.baseline", "bad_choice", options=list(BASELINES), value=baseline)
        discount = self.number(c.get("discount", Decimal(0)), "crediting.discount")
        if discount is not None and not 0 <= discount < 1:
            self.err("crediting.discount", "discount_range", value=str(discount))
            discount = None
        life = self.integer(c.get("life_years", 0), "crediting.life_years", 0, 100, 0)
        return baseline, discount if discount is not None else Decimal(0), life
