"""Hypothesis state machine: the ledger against a simple in-memory reference model."""
import datetime as dt
import itertools
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import text

from quota import audit, db, projects, quota_ops, rulebooks, tallies
from quota.errors import Refused
from tests.conftest import DATA, ENGINES, PROJECT_HEADER, TALLY_HEADER
from tests.databases import fresh_url

# pollutant -> (zone of lots and projects, ratio applied by the sample rulebook there)
SETUP = {"COD": ("JT-YT", 1), "VOCS": ("JT-DC", 2)}
LIFE = 5


class LedgerMachine(RuleBasedStateMachine):
    kind = "sqlite"

    @initialize()
    def setup(self):
        self.tmp = Path(tempfile.mkdtemp())
        url, self.drop = fresh_url(self.kind, self.tmp)
        self.engine = db.make_engine(url)
        rulebooks.init(self.engine, str(DATA / "rules.toml"), "model")
        self.day = dt.date(2026, 1, 1)
        self.pinned = os.environ.get("QUOTA_TODAY")
        os.environ["QUOTA_TODAY"] = "2099-12-31"  # time passes in this model: the library's today is far ahead
        self.ids = itertools.count(1)
        self.lots = {}        # serial -> [pollutant, expires, available]
        self.counter = {}     # (account kind, pollutant) -> grams outside lots
        self.projects = {}    # pid -> {"pollutant", "required", "needed_by", "state", "held": {serial: g}}

    def teardown(self):
        if hasattr(self, "pinned"):
            os.environ.pop("QUOTA_TODAY", None)
            if self.pinned is not None:
                os.environ["QUOTA_TODAY"] = self.pinned
        if hasattr(self, "engine"):
            self.engine.dispose()
            self.drop()

    def _csv(self, header, row):
        path = self.tmp / f"f{next(self.ids)}.csv"
        path.write_text(header + "\n" + row + "\n", encoding="utf-8")
        return str(path)

    @rule(pollutant=st.sampled_from(sorted(SETUP)), milli=st.integers(1, 6_000), age=st.integers(0, 1_700))
    def issue(self, pollutant, milli, age):
        n = next(self.ids)
        zone = SETUP[pollutant][0]
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
        self.lots[serial] = [pollutant, effective, expires, milli * 1000]

    @rule(pollutant=st.sampled_from(sorted(SETUP)), percent=st.integers(1, 130),
          ahead=st.one_of(st.none(), st.integers(0, 400)))
    def add_project(self, pollutant, percent, ahead):
        """A project sized from 1% to 130% of the supply it could draw on, so that
        servable, short and multi-lot requests are all common."""
        pid = f"P{next(self.ids)}"
        needed_by = None if ahead is None else self.day + dt.timedelta(days=ahead)
        on = needed_by or self.day
        supply = sum(l[3] for l in self.lots.values()
                     if l[0] == pollutant and l[1] <= self.day and l[2] > on)
        zone, ratio = SETUP[pollutant]
        increment_g = max(1, supply * percent // 100 // ratio)
        projects.import_projects(self.engine, self._csv(
            PROJECT_HEADER, f"{pid},项目,{zone},x,{pollutant},{increment_g / 1_000_000:.6f},t/a,1,"
                            f"{needed_by or ''},false,"), actor="model")
        self.projects[pid] = {"pollutant": pollutant, "required": increment_g * ratio, "state": "pipeline",
                              "needed_by": needed_by, "held": {}, "part": None}

    def _pick(self, data, states):
        pids = sorted(p for p, v in self.projects.items() if v["state"] in states)
        return data.draw(st.sampled_from(pids)) if pids else None

    def _plan(self, pid):
        """The model's draws for a project: earliest expiry first; returns (plan, grams short)."""
        p = self.projects[pid]
        on = max(p["needed_by"] or self.day, self.day)  # the later of today and needed_by
        eligible = sorted((l[2], s) for s, l in self.lots.items()
                          if l[0] == p["pollutant"] and l[3] > 0 and l[1] <= self.day and l[2] > on)
        left, plan = p["required"], {}
        for _, serial in eligible:
            take = min(left, self.lots[serial][3])
            if take:
                plan[serial] = take
                left -= take
        return plan, left

    def _pipeline(self, servable):
        return sorted(pid for pid, p in self.projects.items()
                      if p["state"] == "pipeline" and (self._plan(pid)[1] == 0) == servable)

    @precondition(lambda self: self._pipeline(servable=True))
    @rule(data=st.data())
    def reserve(self, data):
        pid = data.draw(st.sampled_from(self._pipeline(servable=True)))
        plan, _ = self._plan(pid)
        result = quota_ops.reserve(self.engine, pid, actor="model", date=self.day)
        assert {d["lot"]: d["amount_g"] for d in result["draws"]} == plan
        for serial, g in plan.items():
            self.lots[serial][3] -= g
        self.projects[pid].update(state="reserved", held=plan, part="reserved")

    @precondition(lambda self: self._pipeline(servable=False))
    @rule(data=st.data())
    def reserve_short(self, data):
        pid = data.draw(st.sampled_from(self._pipeline(servable=False)))
        with pytest.raises(Refused, match="short by"):
            quota_ops.reserve(self.engine, pid, actor="model", date=self.day)

    @rule(data=st.data())
    def approve(self, data):
        pid = self._pick(data, {"reserved"})
        if pid is None:
            return
        p = self.projects[pid]
        on = max(p["needed_by"] or self.day, self.day)
        if any(self.lots[s][2] <= on for s in p["held"]):  # a held lot can no longer serve: re-reserve first
            with pytest.raises(Refused, match="cannot be approved"):
                quota_ops.approve(self.engine, pid, doc="DOC", actor="model", date=self.day)
            return
        quota_ops.approve(self.engine, pid, doc="DOC", actor="model", date=self.day)
        p.update(state="approved", part="allocated")

    def _return(self, p):
        for serial, g in p["held"].items():
            if self.lots[serial][2] <= self.day:
                key = ("expired", self.lots[serial][0])
                self.counter[key] = self.counter.get(key, 0) + g
            else:
                self.lots[serial][3] += g
        p.update(held={}, part=None)

    @rule(data=st.data())
    def release(self, data):
        pid = self._pick(data, {"reserved"})
        if pid is None:
            return
        quota_ops.release(self.engine, pid, actor="model", date=self.day)
        self._return(self.projects[pid])
        self.projects[pid]["state"] = "pipeline"

    @rule(data=st.data())
    def cancel(self, data):
        pid = self._pick(data, {"pipeline", "reserved", "approved"})
        if pid is None:
            return
        quota_ops.cancel(self.engine, pid, actor="model", date=self.day)
        self._return(self.projects[pid])
        self.projects[pid]["state"] = "cancelled"

    @rule(days=st.integers(1, 900))
    def expire(self, days):
        self.day += dt.timedelta(days=days)
        quota_ops.expire(self.engine, self.day, actor="model")
        for serial, lot in self.lots.items():
            if lot[2] <= self.day and lot[3] > 0:
                key = ("expired", lot[0])
                self.counter[key] = self.counter.get(key, 0) + lot[3]
                lot[3] = 0

    @invariant()
    def ledger_matches_model(self):
        if not hasattr(self, "engine"):
            return
        with self.engine.connect() as conn:
            rows = conn.execute(text("SELECT account, lot, kind, pollutant, amount_g FROM balance")).all()
        lots = {r[1]: r[4] for r in rows if r[2] == "lot"}
        assert lots == {s: l[3] for s, l in self.lots.items()}
        held = {}
        for r in rows:
            if r[2] in ("reserved", "allocated") and r[4]:
                held[(r[0], r[1])] = r[4]
        want = {(f"project:{pid}:{p['part']}", s): g for pid, p in self.projects.items() if p["part"]
                for s, g in p["held"].items()}
        assert held == want
        expired = {}
        for r in rows:
            if r[2] == "expired":
                expired[r[3]] = expired.get(r[3], 0) + r[4]
        assert expired == {k[1]: v for k, v in self.counter.items() if v}
        assert all(r[4] >= 0 for r in rows if r[2] in ("lot", "reserved", "allocated"))
        sums = {}
        for r in rows:
            sums[r[3]] = sums.get(r[3], 0) + r[4]
        assert all(v == 0 for v in sums.values())
        assert audit.verify(self.engine)[1] == []


@pytest.mark.parametrize("kind", ENGINES)
def test_ledger_state_machine(kind):
    machine = type(f"Machine_{kind}", (LedgerMachine,), {"kind": kind})
    machine.TestCase.settings = settings(max_examples=15 if kind == "postgresql" else 30,
                                         stateful_step_count=30, deadline=None,
                                         suppress_health_check=list(HealthCheck))
    machine.TestCase().runTest()
