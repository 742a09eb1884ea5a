"""The hash chain's canonical text: the fast writer's text is exactly canonical(txn_body(...))."""
import datetime as dt

from hypothesis import given, settings, strategies as st

from quota.ledger import posting as ledger

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)  # any Unicode, quotes and controls too
json_value = st.recursive(st.none() | st.booleans() | st.integers() | text,
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                          max_leaves=8)
posting = st.tuples(text, text, text, st.integers(-10**15, 10**15).filter(bool))


@settings(max_examples=300, deadline=None)
@given(seq=st.integers(1, 10**9), kind=text, effective=st.dates(), booked=text, actor=text, memo=text, ref=text,
       project=st.none() | text, rulebook=st.integers(1, 10**6), meta=st.dictionaries(text, json_value, max_size=4),
       postings=st.lists(posting, min_size=1, max_size=5))
def test_the_posting_path_hashes_the_same_text_as_verify(seq, kind, effective, booked, actor, memo, ref, project,
                                                          rulebook, meta, postings):
    body = ledger.txn_body(seq, kind, effective, booked, actor, memo, ref, project, rulebook, meta, postings)
    fast = ledger.canonical_txn(seq, kind, str(effective), booked, actor, memo, ref, project, rulebook,
                                ledger.canonical(meta), sorted([list(p) for p in postings]))
    assert fast == ledger.canonical(body)


def test_the_booking_time_keeps_its_format_at_a_whole_second(monkeypatch):
    class Clock(dt.datetime):
        @classmethod
        def now(cls, tz=None):
            return dt.datetime(2026, 11, 29, 22, 25, 9, 0, tzinfo=tz)
    monkeypatch.setattr(ledger.dt, "datetime", Clock)
    assert ledger.now_iso() == "2026-11-29T22:25:09.000000Z"
