"""One identity for a source, and what it can ever be credited (pure: no database).

The same source is the same normalised id (identity.code). A new id whose name and zone compare
equal (identity.name_key) to a source already known (in the ledger, or earlier in the file) is
refused as a likely duplicate unless its row sets `distinct_source`.

Per source and pollutant, the measures form one history ordered by effective date (the ledger's
current tallies, i.e. those no other tally supersedes, then the file's rows): what a source can
ever be credited is bounded by its first baseline. After an upgrade, the next measure's baseline is
capped at that upgrade's post-upgrade emissions (a closure credits only what was still emitted; a
second upgrade only its further reduction). After a closure nothing more can be credited: a second
closure, or an upgrade after it, is refused. A row dated before a measure already in the ledger is
refused, since it would change what that measure credited.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from decimal import Decimal
from typing import NamedTuple

from quota import identity
from quota import units
from quota.errors import Problem


class Prior(NamedTuple):
    """A current tally of the ledger, as the history needs it."""
    tally_id: str
    source_id: str
    pollutant: str
    measure: str
    effective_date: dt.date
    post_g: Decimal | None      # post-upgrade emissions in exact grams (None for a closure)


def post_g(record) -> Decimal | None:
    if record.measure != "upgrade" or record.post is None:
        return None
    return units.grams_exact(record.post, record.unit)


def settle(name: str, records: list, book, prior: list[Prior] = (), sources: dict | None = None,
           credit=None) -> tuple[list, list[Problem]]:
    """The records with source ids spelled as the ledger has them and credits capped by each
    source's history, and the problems found. `sources` is {stored source id: (name, zone)};
    `credit(book, record, cap_g)` computes a record's creditable grams under a cap."""
    problems: list[Problem] = []
    out = _identify(name, list(records), sources or {}, problems)
    replaced = {identity.loose(r.supersedes) for r in out if r.supersedes}
    events: dict[tuple, list] = defaultdict(list)
    for p in prior:
        if identity.loose(p.tally_id) not in replaced:
            events[(identity.loose(p.source_id), p.pollutant)].append((p.effective_date, 0, p.tally_id, p))
    for i, r in enumerate(out):
        events[(identity.loose(r.source_id), r.pollutant)].append((r.effective_date, 1, r.row, i))
    for key in sorted(events):
        history = sorted(events[key], key=lambda e: e[:3])
        last_prior = max((e[3] for e in history if not e[1]), key=lambda p: p.effective_date, default=None)
        state: tuple | None = None  # (measure, post grams, tally id, date) of the last credited measure
        for date, is_new, _, item in history:
            if not is_new:
                state = (item.measure, item.post_g, item.tally_id, date)
                continue
            r = out[item]
            if last_prior is not None and r.effective_date < last_prior.effective_date:
                problems.append(Problem.of(name, r.row, "effective_date", "out_of_order", source=r.source_id,
                                           pollutant=r.pollutant, tally=last_prior.tally_id,
                                           date=str(last_prior.effective_date)))
                continue
            if state and state[0] == "closure":
                if r.measure == "closure":
                    problems.append(Problem.of(name, r.row, "pollutant", "second_closure", source=r.source_id,
                                               pollutant=r.pollutant, tally=state[2], date=str(state[3])))
                else:
                    problems.append(Problem.of(name, r.row, "measure", "closed_source", source=r.source_id,
                                               pollutant=r.pollutant, tally=state[2], date=str(state[3])))
                continue
            cap = state[1] if state else None
            if cap is not None and r.measure == "upgrade" and post_g(r) >= cap:
                problems.append(Problem.of(name, r.row, "post", "no_reduction", source=r.source_id,
                                           pollutant=r.pollutant, emits=units.exact(int(cap), r.unit), unit=r.unit,
                                           tally=state[2], post=str(r.post)))
                continue
            grams = credit(book, r, cap) if cap is not None or r.capped_by else r.creditable_g
            if grams <= 0:
                problems.append(Problem.of(name, r.row, "baseline_actual", "zero_after_cap", tally=state[2])
                                if cap is not None else Problem.of(name, r.row, "baseline_actual", "zero_credit"))
                continue
            capped_by = state[2] if cap is not None and grams < credit(book, r, None) else ""
            if (grams, capped_by) != (r.creditable_g, r.capped_by):
                out[item] = r = dataclasses.replace(r, creditable_g=grams, capped_by=capped_by)
            state = (r.measure, post_g(r), r.tally_id, date)
    return out, problems


def _identify(name: str, records: list, sources: dict, problems: list[Problem]) -> list:
    """Spell each known source as stored; refuse a new id that looks like a known source."""
    by_id = {identity.loose(s): (s, n, z) for s, (n, z) in sources.items()}
    looks: dict[tuple[str, str], str] = {}
    for s, (n, z) in sorted(sources.items()):
        looks.setdefault((identity.name_key(n), z), s)
    new: set[str] = set()
    out = []
    for r in records:
        key = identity.loose(r.source_id)
        if key in by_id:
            stored, _, zone = by_id[key]
            if zone != r.zone:
                problems.append(Problem.of(name, r.row, "zone", "source_zone", source=stored, zone=zone,
                                           given=r.zone))
            if stored != r.source_id:
                r = dataclasses.replace(r, source_id=stored)
        elif key not in new:
            new.add(key)
            look = (identity.name_key(r.source_name), r.zone)
            other = looks.get(look) if look[0] else None  # a name of no letters or digits compares to none
            if other is not None and not r.distinct_source:
                problems.append(Problem.of(name, r.row, "source_id", "duplicate_source", source=r.source_id,
                                           other=other, name=r.source_name, zone=r.zone))
            looks.setdefault(look, r.source_id)
        out.append(r)
    return out
