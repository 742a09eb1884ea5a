"""SQLModel tables: rulebooks, sources, tallies, lots, projects, transactions, postings, balances."""
from __future__ import annotations

import datetime as dt
from typing import Optional

from sqlalchemy import BigInteger, CheckConstraint, Column, Index, Text
from sqlmodel import Field, SQLModel


class RulebookVersion(SQLModel, table=True):
    __tablename__ = "rulebook"
    version: int = Field(primary_key=True)
    sha256: str
    text: str = Field(sa_column=Column(Text, nullable=False))
    loaded_at: str
    actor: str


class Source(SQLModel, table=True):
    __tablename__ = "source"
    source_id: str = Field(primary_key=True)
    name: str
    zone: str


class Tally(SQLModel, table=True):
    __tablename__ = "tally"
    tally_id: str = Field(primary_key=True)
    source_id: str = Field(foreign_key="source.source_id", index=True)
    measure: str
    zone: str
    pollutant: str
    baseline_actual: str
    permitted: Optional[str] = None
    post: Optional[str] = None
    unit: str
    baseline_year: Optional[int] = None
    effective_date: dt.date
    method: str = ""
    assessor: str = ""
    report_no: str = ""
    creditable_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    supersedes: Optional[str] = None
    import_id: int = Field(foreign_key="import_batch.id")
    row: int = 0


class Lot(SQLModel, table=True):
    __tablename__ = "lot"
    __table_args__ = (Index("ix_lot_draw", "pollutant", "expires", "serial"),)  # lots in drawing order
    serial: str = Field(primary_key=True)
    tally_id: str = Field(foreign_key="tally.tally_id", unique=True)
    pollutant: str
    zone: str
    effective_date: dt.date
    expires: Optional[dt.date] = None
    issued_g: int = Field(sa_column=Column(BigInteger, nullable=False))


class Project(SQLModel, table=True):
    __tablename__ = "project"
    project_id: str = Field(primary_key=True)
    name: str
    zone: str
    industry: str = ""
    # the priority in integer ten-thousandths (7.5 -> 75000; units.parse_priority), so it is exact on both
    # engines: 0 < priority <= 10^6 with at most 4 decimal places (migration 0013)
    priority_e4: int = Field(default=10_000, sa_column=Column(
        BigInteger, CheckConstraint("priority_e4 > 0 AND priority_e4 <= 10000000000", name="ck_project_priority_e4"),
        nullable=False, server_default="10000"))
    needed_by: Optional[dt.date] = None
    must_fund: bool = False
    state: str = "pipeline"
    reserved_until: Optional[dt.date] = None
    doc: Optional[str] = None
    import_id: int = Field(foreign_key="import_batch.id")


class ProjectNeed(SQLModel, table=True):
    __tablename__ = "project_need"
    project_id: str = Field(foreign_key="project.project_id", primary_key=True)
    pollutant: str = Field(primary_key=True)
    increment_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    ratio: Optional[str] = None


class ImportBatch(SQLModel, table=True):
    __tablename__ = "import_batch"
    id: Optional[int] = Field(default=None, primary_key=True)
    kind: str
    file_name: str
    sha256: str = Field(index=True)
    rows: int
    imported_at: str
    actor: str


class Txn(SQLModel, table=True):
    """One ledger transaction; `seq` is its place in the hash chain."""
    __tablename__ = "txn"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    kind: str
    effective_date: dt.date
    booked_at: str
    actor: str
    memo: str = ""
    ref: str = ""
    project_id: Optional[str] = Field(default=None, index=True)  # a project's history (trace)
    rulebook_version: int
    meta: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    prev_hash: str
    hash: str


class Posting(SQLModel, table=True):
    __tablename__ = "posting"
    id: Optional[int] = Field(default=None, primary_key=True)
    txn_seq: int = Field(foreign_key="txn.seq")  # no index: postings are read with the whole ledger
    account: str
    lot: str
    pollutant: str
    amount_g: int = Field(sa_column=Column(BigInteger, nullable=False))


class Balance(SQLModel, table=True):
    """Maintained balance of one (account, lot) pair; always equal to a replay of postings."""
    __tablename__ = "balance"
    __table_args__ = (
        CheckConstraint("(NOT nonneg) OR amount_g >= 0", name="ck_balance_nonneg"),
        {"sqlite_with_rowid": False},  # SQLite keeps the pairs in their key's B-tree (one tree per write)
    )
    account: str = Field(primary_key=True)
    lot: str = Field(primary_key=True)
    kind: str
    pollutant: str
    zone: str
    project_id: Optional[str] = None  # a project's pairs are found by account (the key's prefix)
    nonneg: bool
    amount_g: int = Field(sa_column=Column(BigInteger, nullable=False))
    last_date: Optional[dt.date] = None


class Operation(SQLModel, table=True):
    """Idempotency record: one row per --key, with a hash of the request and its result."""
    __tablename__ = "operation"
    key: str = Field(primary_key=True)
    command: str
    request_hash: str
    result: str = Field(sa_column=Column(Text, nullable=False))
    created_at: str
    db_user: Optional[str] = None  # PostgreSQL: the database user that wrote the row (default CURRENT_USER)


class ChainHead(SQLModel, table=True):
    """The row PostgreSQL's ledger writers lock (FOR UPDATE), which orders the chain; the chain's head itself
    is its last transaction (SQLite orders writers with BEGIN IMMEDIATE)."""
    __tablename__ = "chain_head"
    id: int = Field(primary_key=True)


TABLES = [RulebookVersion, Source, ImportBatch, Tally, Lot, Project, ProjectNeed, Txn, Posting,
          Balance, Operation, ChainHead]


class Plan(SQLModel, table=True):
    """A solved allocation scenario (not part of the ledger; `plan apply` turns it into reservations)."""
    __tablename__ = "plan"
    plan_id: str = Field(primary_key=True)
    created_at: str
    actor: str
    as_of: dt.date
    status: str
    rulebook_version: int
    head_seq: int
    scenario_name: str = ""
    scenario: str = Field(default="", sa_column=Column(Text, nullable=False))
    result: str = Field(sa_column=Column(Text, nullable=False))
    applied_at: Optional[str] = None
    run_key: Optional[str] = Field(default=None, unique=True, index=True)  # the idempotency key it was run with
    run_request: Optional[str] = None  # the SHA-256 of that request (migration 0016)


TABLES.append(Plan)


class BalanceTotal(SQLModel, table=True):
    """Totals of lot, reserved and allocated balances per (kind, pollutant, zone, lot expiry), maintained
    with the postings so balance queries read a small table (NEVER stands for 'does not expire')."""
    __tablename__ = "balance_total"
    kind: str = Field(primary_key=True)
    pollutant: str = Field(primary_key=True)
    zone: str = Field(primary_key=True)
    expires: dt.date = Field(primary_key=True)
    amount_g: int = Field(sa_column=Column(BigInteger, nullable=False))


TABLES.append(BalanceTotal)


class Matching(SQLModel, table=True):
    """Each rulebook version's matching key per (pollutant, zone), written with the version (append-only),
    so SQL can pick a project's candidate lots without the rulebook in hand."""
    __tablename__ = "matching"
    version: int = Field(primary_key=True)
    pollutant: str = Field(primary_key=True)
    zone: str = Field(primary_key=True)
    key: str


TABLES.append(Matching)


class LotStatus(SQLModel, table=True):
    """A lot that can no longer serve (revoked, or superseded by a new tally), written with the transaction
    that says so (`txn_seq`); append-only. A lot without a row is active (expiry is a matter of dates)."""
    __tablename__ = "lot_status"
    serial: str = Field(primary_key=True, foreign_key="lot.serial")
    status: str
    txn_seq: int = Field(foreign_key="txn.seq")


TABLES.append(LotStatus)


class WebUser(SQLModel, table=True):
    """A person who signs in to the web workspace (`quota user add`): a role, an Argon2 hash of the
    password, and the state of failed logins (counted across every server worker). Never deleted: a
    disabled user keeps the name recorded as actor on the ledger."""
    __tablename__ = "web_user"
    name: str = Field(primary_key=True)
    role: str
    password_hash: str
    created_at: str
    disabled_at: Optional[str] = None
    failed_logins: int = 0
    locked_until: Optional[str] = None


TABLES.append(WebUser)


class WebToken(SQLModel, table=True):
    """An API token of a user (`quota user token NAME`), stored as its SHA-256 only."""
    __tablename__ = "web_token"
    token_hash: str = Field(primary_key=True)
    name: str = Field(foreign_key="web_user.name", index=True)
    created_at: str
    label: Optional[str] = None  # what the token is for (`quota user token NAME --label ...`)


TABLES.append(WebToken)


class WebSession(SQLModel, table=True):
    """A signed-in browser session (migration 0015): the cookie carries a random id, the server keeps its
    SHA-256, so one session (or all of a user's) can be ended before the cookie expires."""
    __tablename__ = "web_session"
    sid_hash: str = Field(primary_key=True)
    name: str = Field(foreign_key="web_user.name", index=True)
    created_at: str
    client: str  # the client's address at sign-in
    agent: str  # the browser's User-Agent at sign-in (shortened)


TABLES.append(WebSession)


class WebThrottle(SQLModel, table=True):
    """Failed sign-ins from one client address (any user name, known or not) in the current window."""
    __tablename__ = "web_throttle"
    client: str = Field(primary_key=True)
    failures: int
    window_start: str
    locked_until: Optional[str] = None


TABLES.append(WebThrottle)


class VerifyRun(SQLModel, table=True):
    """One `verify` of the database (migration 0016), whichever front end ran it: the overview's "last
    verified"."""
    __tablename__ = "verify_run"
    run_id: str = Field(primary_key=True)
    at: str = Field(index=True)
    actor: str
    ok: bool
    head_seq: int
    head_hash: str
    problems: int


TABLES.append(VerifyRun)


class WebSetting(SQLModel, table=True):
    """Settings of the web workspace kept with the data: the session secret (made at the first start of
    `quota serve`); the last verification is in verify_run."""
    __tablename__ = "web_setting"
    key: str = Field(primary_key=True)
    value: str = Field(sa_column=Column(Text, nullable=False))


TABLES.append(WebSetting)
