"""The rulebook: pollutants, zones, matching, ratios and crediting rules, loaded from TOML."""
from __future__ import annotations

import datetime as dt
import hashlib
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from decimal import Decimal

from quota import identity
from quota.errors import Problem, ValidationFailed

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
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        raise ValidationFailed([Problem(path, 0, "", "file not found")]) from None
    except IsADirectoryError:
        raise ValidationFailed([Problem(path, 0, "", "is a directory, not a rulebook file")]) from None
    except OSError as exc:
        raise ValidationFailed([Problem(path, 0, "", f"cannot read the file: {exc.strerror or exc}")]) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValidationFailed([Problem(path, 0, "", f"not UTF-8 text: {exc}")]) from None
    book, problems = parse_rulebook(text, source=path)
    if problems:
        raise ValidationFailed(problems)
    return book


def parse_rulebook(text: str, source: str = "rules.toml") -> tuple[Rulebook | None, list[Problem]]:
    """Parse and validate a rulebook; return (rulebook, []) or (None, problems)."""
    try:
        data = tomllib.loads(text, parse_float=Decimal)  # stored rulebooks are re-read: keep TOML's grammar
    except tomllib.TOMLDecodeError as exc:
        line = getattr(exc, "lineno", 0) or _line_of(str(exc))
        return None, [Problem(source, line, "", f"TOML syntax error: {exc}")]

    v = _Validator(source)
    book = v.build(data, text)
    if v.problems:
        return None, [Problem(p.source, p.row or locate(text, p.column), p.column, p.message) for p in v.problems]
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


def _line_of(message: str) -> int:
    m = re.search(r"line (\d+)", message)
    return int(m.group(1)) if m else 0


class _Validator:
    def __init__(self, source: str):
        self.source = source
        self.problems: list[Problem] = []

    def err(self, column: str, message: str) -> None:
        self.problems.append(Problem(self.source, 0, column, message))

    def keys(self, table: dict, allowed: set[str], where: str) -> None:
        """Refuse keys the schema does not know, with a "did you mean" when one is close (a misspelt
        `life_year` must not silently leave lots never expiring)."""
        import difflib
        for key in sorted(set(table) - allowed, key=str):
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            self.err(f"{where}.{key}", "unknown key" + (f" (did you mean {close[0]!r}?)" if close else
                                                       f" (known: {', '.join(sorted(allowed))})"))

    def tables(self, items: list, where: str) -> list[tuple[str, dict]]:
        """The entries of an array of tables, each with its path; an entry that is not a table is refused."""
        out = []
        for i, item in enumerate(items, 1):
            if isinstance(item, dict):
                out.append((f"{where}[{i}]", item))
            else:
                self.err(f"{where}[{i}]", f"must be a table ([[{where}]] with keys), got {item!r}")
        return out

    def _str(self, table: dict, key: str, where: str, required: bool = True) -> str:
        value = table.get(key)
        if value is None:
            if required:
                self.err(f"{where}.{key}", "required key is missing")
            return ""
        if not isinstance(value, str):
            self.err(f"{where}.{key}", f"must be a string, got {value!r}")
            return ""
        return value.strip()

    def _code(self, table: dict, key: str, where: str, required: bool = True) -> str:
        """A zone or pollutant code in the normal form of every id (identity.code), so that a
        code in the rulebook and the same code typed in a file are one code."""
        value = self._str(table, key, where, required)
        if not value:
            return ""
        try:
            return identity.code(value, f"{where}.{key}")
        except identity.BadId as exc:
            self.err(f"{where}.{key}", exc.reason)
            return ""

    def _ratio(self, value: object, where: str) -> Decimal:
        if isinstance(value, int) and not isinstance(value, bool):
            value = Decimal(value)
        if not isinstance(value, Decimal) or not value.is_finite() or value < 1 or value > 100:
            self.err(where, f"ratio must be a number from 1 to 100, got {value!r}")
            return Decimal(1)
        return value

    def build(self, data: dict, text: str) -> Rulebook | None:
        j = data.get("jurisdiction", {})
        if not isinstance(j, dict):
            self.err("jurisdiction", "must be a table")
            j = {}
        self.keys(j, {"code", "name", "name_zh"}, "jurisdiction")
        code = self._str(j, "code", "jurisdiction")
        pollutants = self._pollutants(data.get("pollutants"))
        zones = self._zones(data.get("zones"))
        matching = self._matching(data.get("matching", {}))
        ratios = data.get("ratios", {})
        if not isinstance(ratios, dict):
            self.err("ratios", "must be a table")
            ratios = {}
        self.keys(ratios, {"default", "non_attainment", "rule"}, "ratios")
        rdefault = self._ratio(ratios.get("default", Decimal(1)), "ratios.default")
        rnon = self._ratio(ratios.get("non_attainment", rdefault), "ratios.non_attainment")
        rules = self._ratio_rules(ratios.get("rule", []), pollutants, zones)
        baseline, discount, life = self._crediting(data.get("crediting", {}))
        known = {"jurisdiction", "pollutants", "zones", "matching", "ratios", "crediting"}
        for key in sorted(set(data) - known):
            self.err(key, "unknown section (typo?)")
        if self.problems:
            return None
        return Rulebook(code, self._str(j, "name", "jurisdiction", False),
                        self._str(j, "name_zh", "jurisdiction", False), pollutants, zones, matching,
                        rdefault, rnon, rules, baseline, discount, life, text)

    def _pollutants(self, items: object) -> dict[str, Pollutant]:
        out: dict[str, Pollutant] = {}
        if not isinstance(items, list) or not items:
            self.err("pollutants", "at least one [[pollutants]] entry is required")
            return out
        for where, p in self.tables(items, "pollutants"):
            self.keys(p, {"code", "name", "name_zh", "medium", "unit"}, where)
            code = self._code(p, "code", where)
            if code and not CODE_RE.match(code):
                self.err(f"{where}.code", f"{code!r} must match [A-Z][A-Z0-9-]*")
            if code in out:
                self.err(f"{where}.code", f"duplicate pollutant code {code!r}")
            medium = self._str(p, "medium", where)
            if medium and medium not in MEDIA:
                self.err(f"{where}.medium", f"unknown medium {medium!r} (expected one of {', '.join(MEDIA)})")
            unit = self._str(p, "unit", where)
            if unit and unit not in UNITS:
                self.err(f"{where}.unit", f"unknown unit {unit!r} (expected one of {', '.join(UNITS)})")
            out.setdefault(code, Pollutant(code, self._str(p, "name", where, False),
                                           self._str(p, "name_zh", where, False), medium, unit))
        return out

    def _zones(self, items: object) -> dict[str, Zone]:
        out: dict[str, Zone] = {}
        if not isinstance(items, list) or not items:
            self.err("zones", "at least one [[zones]] entry is required")
            return out
        for where, z in self.tables(items, "zones"):
            self.keys(z, {"code", "name", "name_zh", "watershed", "airshed", "non_attainment"}, where)
            code = self._code(z, "code", where)
            if code and not ZONE_RE.match(code):
                self.err(f"{where}.code", f"{code!r} must match [A-Z0-9][A-Z0-9-]* (ASCII, used in account names)")
            if code in out:
                self.err(f"{where}.code", f"duplicate zone code {code!r}")
            watershed = self._str(z, "watershed", where)
            airshed = self._str(z, "airshed", where)
            non = z.get("non_attainment", [])
            if not isinstance(non, list) or any(m not in MEDIA for m in non):
                self.err(f"{where}.non_attainment", f"must be a list of media from {', '.join(MEDIA)}, got {non!r}")
                non = []
            out.setdefault(code, Zone(code, self._str(z, "name", where, False),
                                      self._str(z, "name_zh", where, False), watershed, airshed,
                                      tuple(sorted(set(non)))))
        return out

    def _matching(self, m: object) -> dict[str, str]:
        defaults = {"water": "watershed", "air": "airshed", "metal": "zone"}
        if not isinstance(m, dict):
            self.err("matching", "must be a table")
            return defaults
        for key, value in m.items():
            if key not in MEDIA:
                self.err(f"matching.{key}", f"unknown medium {key!r}")
            elif value not in MATCH_KEYS:
                self.err(f"matching.{key}", f"unknown matching key {value!r} (expected one of {', '.join(MATCH_KEYS)})")
            else:
                defaults[key] = value
        return defaults

    def _ratio_rules(self, items: object, pollutants: dict, zones: dict) -> tuple[RatioRule, ...]:
        if not isinstance(items, list):
            self.err("ratios.rule", "must be an array of tables [[ratios.rule]]")
            return ()
        rules = []
        for where, r in self.tables(items, "ratios.rule"):
            if "ratio" not in r:
                self.err(f"{where}.ratio", "required key is missing")
                continue
            ratio = self._ratio(r["ratio"], f"{where}.ratio")
            pol = self._code(r, "pollutant", where, False) or None
            zone = self._code(r, "zone", where, False) or None
            if pol and pol not in pollutants:
                self.err(f"{where}.pollutant", f"unknown pollutant {pol!r}")
            if zone and zone not in zones:
                self.err(f"{where}.zone", f"unknown zone {zone!r}")
            self.keys(r, {"ratio", "pollutant", "zone", "industry"}, where)
            rule = RatioRule(ratio, pol, self._str(r, "industry", where, False) or None, zone)
            for j, other in enumerate(rules, 1):
                if (other.pollutant, other.industry, other.zone) == (rule.pollutant, rule.industry, rule.zone) \
                        and other.ratio != rule.ratio:
                    self.err(f"{where}.ratio", f"contradicts ratios.rule[{j}]: same pollutant/industry/zone with "
                             f"ratio {other.ratio}, here {rule.ratio}")
            rules.append(rule)
        return tuple(rules)

    def _crediting(self, c: object) -> tuple[str, Decimal, int]:
        if not isinstance(c, dict):
            self.err("crediting", "must be a table")
            return "min_actual_permitted", Decimal(0), 0
        self.keys(c, {"baseline", "discount", "life_years"}, "crediting")
        baseline = c.get("baseline", "min_actual_permitted")
        if baseline not in BASELINES:
            self.err("crediting.baseline", f"must be one of {', '.join(BASELINES)}, got {baseline!r}")
        discount = c.get("discount", Decimal(0))
        if isinstance(discount, int) and not isinstance(discount, bool):
            discount = Decimal(discount)
        if not isinstance(discount, Decimal) or not discount.is_finite() or not (0 <= discount < 1):
            self.err("crediting.discount", f"must be a number in [0, 1), got {discount!r}")
            discount = Decimal(0)
        life = c.get("life_years", 0)
        if not isinstance(life, int) or isinstance(life, bool) or not (0 <= life <= 100):
            self.err("crediting.life_years", f"must be a whole number of years from 0 to 100, got {life!r}")
            life = 0
        return baseline, discount, life
