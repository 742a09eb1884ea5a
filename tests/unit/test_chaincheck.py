"""The pure chain-and-balance checker on hand-made chains: what each transaction kind may move."""
import pytest

from quota.ledger import posting
from quota.ledger.chain import ChainChecker


def chain(*txns):
    """(body, prev_hash, hash) per transaction, hashed as the writer hashes (quota-chain-v2)."""
    out, prev = [], posting.GENESIS
    for seq, (kind, date, project, meta, postings) in enumerate(txns, 1):
        body = posting.txn_body(seq, kind, date, "2026-01-01T00:00:00.000000Z", "t", "", "", project, 1, meta, postings)
        digest = posting.txn_hash(prev, body)
        out.append((body, prev, digest))
        prev = digest
    return out


ISSUE = ("issue", "2026-01-01", None, {"tally_id": "T1", "zone": "Z", "expires": "2030-01-01", "creditable_g": 100},
         [["lot:L1", "L1", "COD", 100], ["issued:COD", "L1", "COD", -100]])
REGISTER = ("register", "2026-01-01", None, {"projects": {"P1": {"zone": "Z", "needs": {}},
                                                          "P2": {"zone": "Z", "needs": {}}}}, [])
RESERVE = ("reserve", "2026-01-02", "P1", {}, [["lot:L1", "L1", "COD", -40], ["project:P1:reserved", "L1", "COD", 40]])


def check(*txns):
    chk = ChainChecker("txn")
    for body, prev, digest in chain(*txns):
        chk.txn(body, prev, digest, body["seq"])
    chk.finish()
    return [p.message for p in chk.problems]


def test_an_honest_chain_passes():
    approve = ("approve", "2026-01-03", "P1", {}, [["project:P1:reserved", "L1", "COD", -40],
                                                  ["project:P1:allocated", "L1", "COD", 40]])
    assert check(ISSUE, REGISTER, RESERVE, approve) == []


@pytest.mark.parametrize("forged, message", [
    (("approve", "2026-01-03", "P1", {}, [["project:P1:reserved", "L1", "COD", -40],
                                          ["project:P2:allocated", "L1", "COD", 40]]), "does not belong"),
    (("reserve", "2026-01-03", "P2", {}, [["issued:COD", "L1", "COD", -40],
                                          ["project:P2:reserved", "L1", "COD", 40]]), "may not debit issued:COD"),
    (("issue", "2026-01-03", None, {"tally_id": "T2", "creditable_g": 300},
      [["lot:L1", "L1", "COD", 300], ["issued:COD", "L1", "COD", -300]]), "never tops up a lot"),
    (("issue", "2026-01-03", None, {"tally_id": "T1", "creditable_g": 5},
      [["lot:L2", "L2", "COD", 5], ["issued:COD", "L2", "COD", -5]]), "already issued"),
    (("issue", "2026-01-03", None, {"tally_id": "T2", "creditable_g": 5},
      [["lot:L2", "L2", "COD", 6], ["issued:COD", "L2", "COD", -6]]), "creditable amount is 5 g"),
    (("expire", "2026-01-03", None, {}, [["lot:L1", "L1", "COD", -60], ["expired:COD", "L1", "COD", 60]]),
     "expires on 2030-01-01"),
    (("release", "2026-01-03", "P1", {}, [["project:P1:reserved", "L1", "COD", -40],
                                          ["project:P1:allocated", "L1", "COD", 40]]), "may not credit"),
    (("reserve", "2026-01-03", "P9", {}, [["lot:L1", "L1", "COD", -10], ["project:P9:reserved", "L1", "COD", 10]]),
     "never registered"),
    (("revoke", "2026-01-03", None, {"lot": "L1"}, [["lot:L1", "L1", "COD", -10], ["revoked:COD", "L1", "COD", 10]]),
     "all its unallocated grams (60 g)"),
])
def test_each_kind_moves_only_between_its_accounts(forged, message):
    problems = check(ISSUE, REGISTER, RESERVE, forged)
    assert problems and message in problems[0], problems


def test_a_stub_is_bound_to_its_date():
    txns = chain(ISSUE, REGISTER, RESERVE)
    body, prev, digest = txns[2]
    for date, as_of, ok in (("2026-01-02", "2026-01-01", True), ("2026-01-05", "2026-01-01", False),
                            ("2026-01-02", "2026-01-02", False)):
        chk = ChainChecker("f.jsonl", as_of=as_of)
        for b, p, d in txns[:2]:
            chk.txn(b, p, d, b["seq"])
        chk.stub(3, date, posting.body_hash(body), prev, digest, 3)
        assert (chk.problems == []) is ok, chk.problems


def test_grams_never_return_to_a_revoked_lot():
    revoke = ("revoke", "2026-01-03", None, {"lot": "L1"}, [["lot:L1", "L1", "COD", -60],
                                                            ["revoked:COD", "L1", "COD", 60]])
    back = ("release", "2026-01-04", "P1", {}, [["project:P1:reserved", "L1", "COD", -40], ["lot:L1", "L1", "COD", 40]])
    honest = ("release", "2026-01-04", "P1", {}, [["project:P1:reserved", "L1", "COD", -40],
                                                  ["revoked:COD", "L1", "COD", 40]])
    assert check(ISSUE, REGISTER, RESERVE, revoke, honest) == []
    problems = check(ISSUE, REGISTER, RESERVE, revoke, back)
    assert problems and "grams return to lot L1, revoked in transaction 4" in problems[0]
    again = ("reserve", "2026-01-04", "P2", {}, [["lot:L1", "L1", "COD", -1], ["project:P2:reserved", "L1", "COD", 1]])
    assert "a reservation draws from lot L1" in check(ISSUE, REGISTER, RESERVE, revoke, again)[0]
