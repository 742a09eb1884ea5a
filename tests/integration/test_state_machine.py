"""Hypothesis state machine: the ledger against a simple in-memory reference model.

The model knows the eligibility rule on its own terms (pollutant, vintage, expiry against the later of the day
and needed_by, revoked lots) and where released grams go; the machine issues lots, adds projects, reserves,
tops up, approves, releases, cancels, revokes, changes the ratio in the rulebook and lets time pass. After every
step: per-lot balances, every project's holdings, the expired/revoked accounts and the zero sums equal the model;
every held gram was eligible for its project when it was drawn (and allocated grams when approved); no source
is credited twice; `verify` passes."""
import datetime as dt
import itertools
import tempfile
from decimal import ROUND_CEILING, Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text

from quota.audit import trace
from quota.store import db
from quota.planning import plans
from quota.intake import project_files
from quota.ledger import operations
from quota.rules import versions
from quota.intake import tallies
from quota.errors import Refused, ValidationFailed
from tests.conftest import DATA, ENGINES, PROJECT_HEADER, TALLY_HEADER
from tests.databases import fresh_url

# pollutant -> (zone of lots and projects, the ratio rule that applies to it in the sample rulebook, or None)
SETUP = {"COD": ("JT-YT", None), "VOCS": ("JT-DC", Decimal(2))}
LIFE = 5
RULES = (DATA / "rules.toml").read_text(encoding="utf-8")
DC_BLOCK = 'code = "JT-DC"\nname = "Dongcheng Subdistrict"\nname_zh = "东城街道"\nwatershed = "DJ"'
assert DC_BLOCK in RULES


class LedgerMachine(RuleBasedStateMachine):
    kind = "sqlite"

    @initialize()
    def setup(self):
        self.tmp = Path(tempfile.mkdtemp())
        url, self.drop = fresh_url(self.kind, self.tmp)
        self.engine = db.make_engine(url)
        versions.init(self.engine, str(DATA / "rules.toml"), "model")
        self.day = dt.date(2026, 1, 1)
        from quota import clock
        self.pinned = clock.today
        clock.today = lambda: self.day  # time passes in this model: the library's today is the model's day
        self.ids = itertools.count(1)
        self.default = Decimal("1.0")  # the rulebook's default ratio
        self.dc_watershed = "DJ"  # zone JT-DC's watershed in the rulebook in force
        self.lots = {}        # serial -> {"pol", "effective", "expires", "available", "status", "source"}
        self.counter = {}     # (account kind, pollutant) -> grams outside lots
        self.projects = {}    # pid -> {"pollutant", "increment", "needed_by", "state", "held": {serial: g}, "part"}
        self.credited = {}    # source -> grams credited
        self.expired_of = {}  # lot -> grams that expired from it (posted to expired:, or lapsed when superseded)

    def teardown(self):
        if hasattr(self, "pinned"):
            from quota import clock
            clock.today = self.pinned
        if hasattr(self, "engine"):
            self.engine.dispose()
            self.drop()

    def _csv(self, header, row):
        path = self.tmp / f"f{next(self.ids)}.csv"
        path.write_text(header + "\n" + row + "\n", encoding="utf-8")
        return str(path)

    # ------------------------------------------------------------------ the model's rule

    def _required(self, p) -> int:
        rule_ratio = SETUP[p["pollutant"]][1]
        ratio = max(self.default, rule_ratio) if rule_ratio else self.default
        return int((Decimal(p["increment"]) * ratio).to_integral_value(rounding=ROUND_CEILING))

    def _until(self, p):
        return max(p["needed_by"] or self.day, self.day)

    def _key(self, pollutant, zone):
        """COD matches by watershed: JT-YT is always in DJ, JT-DC moves between DJ and CDH (change_zone)."""
        if pollutant == "COD" and zone == "JT-DC":
            return self.dc_watershed
        return "DJ" if pollutant == "COD" else "JTN"

    def _eligible(self, serial, p) -> bool:
        lot = self.lots[serial]
        return (lot["pol"] == p["pollutant"] and lot["status"] == "active" and lot["effective"] <= self.day
                and lot["expires"] > self._until(p)
                and self._key(lot["pol"], lot["zone"]) == self._key(p["pollutant"], SETUP[p["pollutant"]][0]))

    def _order(self, serials):
        return sorted(serials, key=lambda s: (self.lots[s]["expires"], s))

    def _give_back(self, serial, grams):
        lot = self.lots[serial]
        if lot["status"] != "active":
            key = (lot["status"], lot["pol"])
        elif lot["expires"] <= self.day:
            key = ("expired", lot["pol"])
            self.expired_of[serial] = self.expired_of.get(serial, 0) + grams
        else:
            lot["available"] += grams
            return
        self.counter[key] = self.counter.get(key, 0) + grams

    def _rebalance(self, pid):
        """(returns [(serial, grams)], keep {serial: g}, draws {serial: g}, short grams) of `reserve` on pid."""
        p = self.projects[pid]
        returns, keep = [], {}
        left = self._required(p)
        for serial in self._order([s for s in p["held"] if self._eligible(s, p)]):
            kept = min(p["held"][serial], left)
            left -= kept
            if kept:
                keep[serial] = kept
            if p["held"][serial] > kept:
                returns.append((serial, p["held"][serial] - kept))
        returns += [(s, g) for s, g in p["held"].items() if not self._eligible(s, p)]
        draws = {}
        for serial in self._order([s for s in self.lots if self._eligible(s, p) and self.lots[s]["available"] > 0]):
            if not left:
                break
            take = min(left, self.lots[serial]["available"])
            draws[serial] = take
            left -= take
        return returns, keep, draws, left

    # ------------------------------------------------------------------ steps

    @rule(pollutant=st.sampled_from(sorted(SETUP)), milli=st.integers(1, 6_000), age=st.integers(0, 1_700),
          elsewhere=st.booleans())
    def issue(self, pollutant, milli, age, elsewhere):
        n = next(self.ids)
        zone = "JT-DC" if pollutant == "COD" and elsewhere else SETUP[pollutant][0]
        effective = self.day - dt.timedelta(days=age)
        amount = f"{milli / 1000:.3f}"
        result = tallies.import_tallies(self.engine, self._csv(
            TALLY_HEADER, f"T{n},S{n},源{n},closure,{zone},{pollutant},{amount},,,t/a,,{effective},m,a,R{n}"),
            actor="model")
        serial = result["lots"][0]
        try:
            expires = effective.replace(year=effective.year + LIFE)
        except ValueError:
            expires = effective.replace(year=effective.year + LIFE, day=28)
        self.lots[serial] = {"pol": pollutant, "effective": effective, "expires": expires, "available": milli * 1000,
                             "status": "active", "source": f"S{n}", "tally": f"T{n}", "supersedes": None,
                             "current": True, "zone": zone}
        self.credited[f"S{n}"] = self.credited.get(f"S{n}", 0) + milli * 1000

    def _spent(self, serial) -> int:
        """Grams a lot gave out for good: allocated to projects, or expired (posted, or lapsed on the lot)."""
        allocated = sum(p["held"].get(serial, 0) for p in self.projects.values() if p["part"] == "allocated")
        return allocated + self.expired_of.get(serial, 0)

    @precondition(lambda self: any(l["current"] for l in self.lots.values()))
    @rule(data=st.data(), milli=st.integers(1, 8_000))
    def supersede(self, data, milli):
        """A corrected tally for a lot's source: credited its amount less what the whole chain it replaces gave
        out for good, expiring no later than that chain; the old lot's balance leaves it for good."""
        old = data.draw(st.sampled_from(sorted(s for s, l in self.lots.items() if l["current"])))
        head = self.lots[old]
        chain, s = [], old
        while s:
            chain.append(s)
            s = self.lots[s]["supersedes"]
        if head["status"] == "active" and head["available"] and head["expires"] <= self.day:
            self.expired_of[old] = self.expired_of.get(old, 0) + head["available"]  # lapsed: spent
        spent = sum(self._spent(x) for x in chain)
        n = next(self.ids)
        zone = head["zone"]
        row = (f"T{n},{head['source']},源,closure,{zone},{head['pol']},{milli / 1000:.3f},,,t/a,,{self.day},m,a,R{n},"
               f"{head['tally']}")
        path = self._csv(TALLY_HEADER + ",supersedes", row)
        if milli * 1000 - spent <= 0:
            if head["status"] == "active" and head["available"] and head["expires"] <= self.day:
                self.expired_of[old] -= head["available"]  # refused: nothing moved
            with pytest.raises(ValidationFailed):
                tallies.import_tallies(self.engine, path, actor="model")
            return
        serial = tallies.import_tallies(self.engine, path, actor="model")["lots"][0]
        if head["status"] == "active":
            if head["available"]:
                key = ("expired" if head["expires"] <= self.day else "superseded", head["pol"])
                self.counter[key] = self.counter.get(key, 0) + head["available"]
            head.update(available=0, status="superseded")
        head["current"] = False
        try:
            own = self.day.replace(year=self.day.year + LIFE)
        except ValueError:
            own = self.day.replace(year=self.day.year + LIFE, day=28)
        expires = min([own] + [self.lots[x]["expires"] for x in chain])
        self.lots[serial] = {"pol": head["pol"], "effective": self.day, "expires": expires,
                             "available": milli * 1000 - spent, "status": "active", "source": head["source"],
                             "tally": f"T{n}", "supersedes": old, "current": True, "zone": zone}
        self.credited[head["source"]] += milli * 1000 - spent

    @rule(pollutant=st.sampled_from(sorted(SETUP)), percent=st.integers(1, 130),
          ahead=st.one_of(st.none(), st.integers(0, 400)))
    def add_project(self, pollutant, percent, ahead):
        """A project sized from 1% to 130% of the supply it could draw on, so that
        servable, short and multi-lot requests are all common."""
        pid = f"P{next(self.ids)}"
        needed_by = None if ahead is None else self.day + dt.timedelta(days=ahead)
        p = {"pollutant": pollutant, "increment": 1, "needed_by": needed_by, "state": "pipeline", "held": {},
             "part": None}
        supply = sum(l["available"] for s, l in self.lots.items() if self._eligible(s, p))
        increment_g = max(1, supply * percent // 100 // 2)
        zone = SETUP[pollutant][0]
        project_files.import_projects(self.engine, self._csv(
            PROJECT_HEADER, f"{pid},项目,{zone},x,{pollutant},{increment_g / 1_000_000:.6f},t/a,1,"
                            f"{needed_by or ''},false,"), actor="model")
        p["increment"] = increment_g
        self.projects[pid] = p

    def _pick(self, data, states):
        pids = sorted(p for p, v in self.projects.items() if v["state"] in states)
        return data.draw(st.sampled_from(pids)) if pids else None

    def _reservable(self, outcome: str) -> list[str]:
        """Pipeline or reserved projects whose `reserve` the model expects to succeed ("ok"), to be refused as
        short ("short") or as already reserved in full ("full")."""
        out = []
        for pid, p in sorted(self.projects.items()):
            if p["state"] not in ("pipeline", "reserved"):
                continue
            returns, _, draws, short = self._rebalance(pid)
            got = "short" if short else ("ok" if returns or draws else "full")
            if got == outcome:
                out.append(pid)
        return out

    @precondition(lambda self: self._reservable("short") or self._reservable("full"))
    @rule(data=st.data())
    def reserve_refused(self, data):
        short = self._reservable("short")
        pid = data.draw(st.sampled_from(short or self._reservable("full")))
        with pytest.raises(Refused, match="short by" if short else "already reserved in full"):
            operations.reserve(self.engine, pid, actor="model", date=self.day)

    @precondition(lambda self: self._reservable("ok"))
    @rule(data=st.data())
    def reserve(self, data):
        """Reserve a pipeline project, or top up / rebalance a reserved one: exactly what the model predicts."""
        pid = data.draw(st.sampled_from(self._reservable("ok")))
        p = self.projects[pid]
        returns, keep, draws, short = self._rebalance(pid)
        result = operations.reserve(self.engine, pid, actor="model", date=self.day)
        assert {d["lot"]: d["amount_g"] for d in result["draws"]} == draws
        assert sorted((r["lot"], r["amount_g"]) for r in result["returned"]) == sorted(returns)
        for serial, g in returns:
            self._give_back(serial, g)
        for serial, g in draws.items():
            self.lots[serial]["available"] -= g
            keep[serial] = keep.get(serial, 0) + g
        p.update(state="reserved", held=keep, part="reserved")
        assert all(self._eligible(s, p) for s in keep)  # every held gram was eligible when drawn or kept

    @precondition(lambda self: any(p["state"] == "reserved" for p in self.projects.values()))
    @rule(data=st.data())
    def approve(self, data):
        pid = self._pick(data, {"reserved"})
        p = self.projects[pid]
        if any(not self._eligible(s, p) for s in p["held"]) or sum(p["held"].values()) != self._required(p):
            with pytest.raises(Refused, match="cannot be approved"):
                operations.approve(self.engine, pid, doc="DOC", actor="model", date=self.day)
            return
        operations.approve(self.engine, pid, doc="DOC", actor="model", date=self.day)
        p.update(state="approved", part="allocated")

    def _return(self, p):
        for serial, g in p["held"].items():
            self._give_back(serial, g)
        p.update(held={}, part=None)

    @precondition(lambda self: any(p["state"] == "reserved" for p in self.projects.values()))
    @rule(data=st.data())
    def release(self, data):
        pid = self._pick(data, {"reserved"})
        operations.release(self.engine, pid, actor="model", date=self.day)
        self._return(self.projects[pid])
        self.projects[pid]["state"] = "pipeline"

    @precondition(lambda self: any(p["state"] == "pipeline" for p in self.projects.values()))
    @rule()
    def plan_apply(self):
        """A plan on the model's day, applied: every draw it reserves must be eligible by the model's rule and
        hold exactly the project's requirement."""
        plan = plans.run_plan(self.engine, as_of=self.day, actor="model", time_limit=5)
        if plan["status"] == "infeasible" or not plan["funded"]:
            return
        plans.apply_plan(self.engine, plan["plan_id"], actor="model", date=self.day)
        for f in plan["funded"]:
            p = self.projects[f["project_id"]]
            held = {}
            for d in f["draws"]:
                assert self._eligible(d["lot"], p), (f["project_id"], d)
                held[d["lot"]] = held.get(d["lot"], 0) + d["amount_g"]
                self.lots[d["lot"]]["available"] -= d["amount_g"]
            assert sum(held.values()) == self._required(p)
            p.update(state="reserved", held=held, part="reserved")

    @rule(data=st.data())
    def cancel(self, data):
        pid = self._pick(data, {"pipeline", "reserved", "approved"})
        if pid is None:
            return
        operations.cancel(self.engine, pid, actor="model", date=self.day)
        self._return(self.projects[pid])
        self.projects[pid]["state"] = "cancelled"

    @precondition(lambda self: any(l["status"] == "active" for l in self.lots.values()))
    @rule(data=st.data())
    def revoke(self, data):
        serials = sorted(s for s, l in self.lots.items() if l["status"] == "active")
        held = sorted({s for p in self.projects.values() for s in p["held"]} & set(serials))
        if held and data.draw(st.booleans()):  # most interesting: a lot some project holds grams of
            serials = held
        if not serials:
            return
        serial = data.draw(st.sampled_from(serials))
        result = operations.revoke(self.engine, serial, actor="model", memo="invalid", date=self.day)
        lot = self.lots[serial]
        assert result["revoked_g"] == lot["available"]
        if lot["available"]:
            key = ("revoked", lot["pol"])
            self.counter[key] = self.counter.get(key, 0) + lot["available"]
        lot.update(available=0, status="revoked")

    @rule(ratio=st.sampled_from(["1.0", "1.5", "2.0", "3.0"]))
    def change_ratio(self, ratio):
        """A new rulebook version with another default ratio: requirements change under reservations."""
        self.default = Decimal(ratio)
        self._load_rules()

    @rule()
    def change_zone(self):
        """A new rulebook version moving zone JT-DC to the other watershed: its COD lots stop (or start) serving
        the projects of JT-YT, under reservations too."""
        self.dc_watershed = "CDH" if self.dc_watershed == "DJ" else "DJ"
        self._load_rules()

    def _load_rules(self):
        text_ = RULES.replace("default = 1.0", f"default = {self.default}", 1).replace(
            DC_BLOCK, DC_BLOCK.replace('watershed = "DJ"', f'watershed = "{self.dc_watershed}"'), 1)
        path = self.tmp / f"rules{next(self.ids)}.toml"
        path.write_text(text_, encoding="utf-8")
        versions.load(self.engine, str(path), "model")

    @rule(days=st.integers(1, 900))
    def expire(self, days):
        self.day += dt.timedelta(days=days)
        operations.expire(self.engine, self.day, actor="model")
        for serial, lot in self.lots.items():
            if lot["expires"] <= self.day and lot["available"] > 0:
                self.expired_of[serial] = self.expired_of.get(serial, 0) + lot["available"]
                key = ("expired", lot["pol"])
                self.counter[key] = self.counter.get(key, 0) + lot["available"]
                lot["available"] = 0

    # ------------------------------------------------------------------ invariants

    @invariant()
    def ledger_matches_model(self):
        if not hasattr(self, "engine"):
            return
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT account, lot, kind, pollutant, amount_g FROM balance")).all()
            status = dict(conn.execute(text("SELECT serial, status FROM lot_status")).all())
            credited = dict(conn.execute(text(
                "SELECT t.source_id, sum(l.issued_g) FROM lot l JOIN tally t ON t.tally_id = l.tally_id "
                "GROUP BY t.source_id")).all())
        lots = {r[1]: r[4] for r in rows if r[2] == "lot"}
        assert lots == {s: l["available"] for s, l in self.lots.items()}
        assert status == {s: l["status"] for s, l in self.lots.items() if l["status"] != "active"}
        held = {}
        for r in rows:
            if r[2] in ("reserved", "allocated") and r[4]:
                held[(r[0], r[1])] = r[4]
        want = {(f"project:{pid}:{p['part']}", s): g for pid, p in self.projects.items() if p["part"]
                for s, g in p["held"].items()}
        assert held == want
        outside = {}
        for r in rows:
            if r[2] in ("expired", "revoked", "superseded") and r[4]:
                outside[(r[2], r[3])] = outside.get((r[2], r[3]), 0) + r[4]
        assert outside == {k: v for k, v in self.counter.items() if v}
        assert all(r[4] >= 0 for r in rows if r[2] in ("lot", "reserved", "allocated"))
        sums = {}
        for r in rows:
            sums[r[3]] = sums.get(r[3], 0) + r[4]
        assert all(v == 0 for v in sums.values())
        assert {k: int(v) for k, v in credited.items()} == self.credited  # no source credited twice
        assert trace.verify(self.engine)[1] == []


@pytest.mark.parametrize("kind", ENGINES)
def test_ledger_state_machine(kind):
    machine = type(f"Machine_{kind}", (LedgerMachine,), {"kind": kind})
    machine.TestCase.settings = settings(max_examples=15 if kind == "postgresql" else 30,
                                         stateful_step_count=30, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
