"""The ledger's account names, defined once: a lot's own account, a project's reserved and allocated accounts,
and the per-pollutant accounts that grams come from (issued) or go to when they leave circulation (expired,
revoked, superseded). SQL that joins a lot to its own balance uses LOT_BALANCE_JOIN."""
from __future__ import annotations

POOLS = ("issued", "expired", "revoked", "superseded", "adjustment")


def lot_account(serial: str) -> str:
    return f"lot:{serial}"


def project_account(project_id: str, part: str) -> str:
    """`part` is 'reserved' or 'allocated'."""
    return f"project:{project_id}:{part}"


def pool_account(pool: str, pollutant: str) -> str:
    """Where a pollutant's grams come from (issued) or go when they leave circulation."""
    if pool not in POOLS:
        raise ValueError(f"unknown pool account {pool!r}")
    return f"{pool}:{pollutant}"


def lot_balance_join(balance: str, serial: str) -> str:
    """The SQL condition joining balance rows `balance` (an alias) to the own balance of the lot whose serial is
    the SQL expression `serial` (lot_account in SQL)."""
    return f"{balance}.account = 'lot:' || {serial} AND {balance}.lot = {serial}"
