"""drawing.plan_draws: each need drawn from its candidate lots in drawing order, shortfalls reported exactly."""
import datetime as dt
from decimal import Decimal

from hypothesis import given, strategies as st

from quota.ledger.drawing import LotAvail, plan_draws
from quota.ledger.projects import Need


def need(pollutant, grams):
    return Need(pollutant, grams, Decimal(1), ("default",), grams, "DJ")


def lot(serial, grams, pollutant="COD"):
    return LotAvail(serial, "JT-YT", dt.date(2030, 1, 1), grams, None, pollutant)


def test_draws_in_order_and_stops_when_met():
    draws, short = plan_draws([need("COD", 5)], {"COD": [lot("A", 3), lot("B", 4), lot("C", 9)]})
    assert [(x.serial, g) for x, g in draws["COD"]] == [("A", 3), ("B", 2)] and short == []


def test_shortfall_is_the_grams_missing():
    n = need("COD", 10)
    draws, short = plan_draws([n], {"COD": [lot("A", 3), lot("B", 4)]})
    assert sum(g for _, g in draws["COD"]) == 7 and short == [(n, 3)]


def test_a_need_whose_lots_were_cut_is_not_short_yet():
    """With `cut`, a need that read as many rows as the cut may have more lots: -1 asks for a full read."""
    n = need("COD", 10)
    assert plan_draws([n], {"COD": [lot("A", 3), lot("B", 4)]}, cut=2)[1] == [(n, -1)]
    assert plan_draws([n], {"COD": [lot("A", 3)]}, cut=2)[1] == [(n, 7)]


def test_each_pollutant_from_its_own_lots():
    draws, short = plan_draws([need("COD", 2), need("NH3N", 1)],
                              {"COD": [lot("A", 5)], "NH3N": [lot("N", 1, "NH3N")]})
    assert {p: [(x.serial, g) for x, g in d] for p, d in draws.items()} == {"COD": [("A", 2)], "NH3N": [("N", 1)]}
    assert short == []


@given(st.lists(st.integers(1, 10**9), max_size=8), st.integers(0, 5 * 10**9))
def test_draws_never_exceed_a_lot_nor_the_need_and_cover_what_exists(sizes, required):
    lots = [lot(f"L{i}", g) for i, g in enumerate(sizes)]
    n = need("COD", required)
    draws, short = plan_draws([n], {"COD": lots})
    drawn = [g for _, g in draws["COD"]]
    assert all(0 < g <= x.available_g for (x, g) in draws["COD"])
    assert sum(drawn) == min(required, sum(sizes))
    assert short == ([] if sum(sizes) >= required else [(n, required - sum(sizes))])
    # drawing order: every lot before the last one drawn is drawn whole
    assert all(g == x.available_g for x, g in draws["COD"][:-1])
