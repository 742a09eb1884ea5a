"""provenance under the chain: commit the facts of projects and tallies registered before quota-chain-v2

From this version on, an issue transaction's meta carries every fact of its tally and source, and a
project import posts a `register` transaction with each project's requirement facts; `verify` compares
the tally, lot, source, project and project_need rows with them. A ledger begun earlier has projects no
transaction registered and issues whose meta lacks the tally's amounts, unit, method and assessor. This
migration commits those facts, as the tables hold them now, in one `register` transaction at the end of
the chain (trust on first use: the tables are taken as they stand at the upgrade). Transactions keep the
hash they were written with (quota-chain-v1); new ones are hashed with quota-chain-v2.

Revision ID: 0011
Revises: 0010
"""
import datetime as dt
import json

from alembic import op
import sqlalchemy as sa

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

LEGACY_TALLY = ("baseline_actual", "permitted", "post", "unit", "baseline_year", "method", "assessor")


def upgrade() -> None:
    from quota import clock
    from quota.ledger import posting
    conn = op.get_bind()
    registered, bare = set(), set()
    for kind, meta in conn.execute(sa.text("SELECT kind, meta FROM txn WHERE kind IN ('register', 'issue')")):
        meta = json.loads(meta)
        if kind == "register":
            registered |= set(meta.get("projects") or {})
        elif "source_name" not in meta:
            bare.add(meta.get("tally_id"))
    projects = {}
    rows = conn.execute(sa.text("SELECT p.project_id, p.name, p.zone, p.industry, p.priority, p.needed_by, "
                                "p.must_fund, n.pollutant, n.increment_g, n.ratio FROM project p LEFT JOIN "
                                "project_need n ON n.project_id = p.project_id ORDER BY p.project_id, n.pollutant"))
    for pid, name, zone, industry, priority, needed_by, must_fund, pol, inc, ratio in rows:
        if pid in registered:
            continue
        facts = projects.setdefault(pid, {"name": name, "zone": zone, "industry": industry or "",
                                          "priority": int(priority), "needed_by": _iso(needed_by),
                                          "must_fund": bool(must_fund), "needs": {}})
        if pol is not None:
            facts["needs"][pol] = {"increment_g": int(inc), "ratio": ratio}
    tallies = {}
    if bare:
        for r in conn.execute(sa.text(f"SELECT t.tally_id, s.name, {', '.join('t.' + c for c in LEGACY_TALLY)} "
                                      "FROM tally t JOIN source s ON s.source_id = t.source_id ORDER BY t.tally_id")):
            if r[0] in bare:
                tallies[r[0]] = {"source_name": r[1], **{c: (int(v) if c == "baseline_year" and v is not None
                                                             else v) for c, v in zip(LEGACY_TALLY, r[2:])}}
    if not projects and not tallies:
        return
    head = conn.execute(sa.text("SELECT seq, hash FROM txn ORDER BY seq DESC LIMIT 1")).first()
    seq, prev = (int(head[0]) + 1, head[1]) if head else (1, posting.GENESIS)
    version = conn.execute(sa.text("SELECT max(version) FROM rulebook")).scalar_one() or 0
    meta = {"projects": projects, "tallies": tallies}
    today, booked = clock.today(), posting.now_iso()
    memo = f"migration 0010: {len(projects)} project(s) and {len(tallies)} tally(ies) registered before quota-chain-v2"
    body = posting.txn_body(seq, "register", today, booked, "migration 0010", memo, "", None, int(version), meta, [])
    conn.execute(sa.text("INSERT INTO txn (seq, kind, effective_date, booked_at, actor, memo, ref, project_id, "
                         "rulebook_version, meta, prev_hash, hash) VALUES (:s, 'register', :d, :b, 'migration 0010', "
                         ":m, '', NULL, :v, :meta, :p, :h)"),
                 {"s": seq, "d": today, "b": booked, "m": memo, "v": int(version), "meta": posting.canonical(meta),
                  "p": prev, "h": posting.txn_hash(prev, body)})


def _iso(value):
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def downgrade() -> None:
    pass  # the chain is append-only: the register transaction stays
