"""Ledger benchmark on SQLite and PostgreSQL (DESIGN 9): prints figures and ratios, asserts nothing.

    .venv/bin/python -m bench.ledger [--engine sqlite|postgresql|both] [--postings 1000000] [--per-client 1000]
        [--rounds 5] [--skip import,ledger,throughput]

- tally import of 100,000 rows (target < 30 s)
- a ledger of N postings: balance query in the library (median of 100, target < 20 ms) and the whole
  `quota balance --json` process against `python -c "import sqlmodel, typer, rich"` (target <= 1.2x)
- verify (target < 60 s), JSONL export and offline verify --export (targets < 60 s, < 500 MB peak)
- reservation throughput with 1 and 8 clients, beside a raw-SQL double-entry reservation
  (lock the lot, check, move, one transaction row, two postings, hash-chain head; target >= 0.5x),
  alternated --rounds times on one database; the median ratio is the figure. Each worker opens one
  connection before the clock starts and makes every reservation on it, one transaction each (the
  library worker also reads the rulebook first: a process parses it once)
"""
from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import text

from quota.ledger import balances
from quota.store import db
from quota.ledger import posting as ledger
from quota.intake import project_files
from quota.rules import versions
from quota.intake import tallies
from tests.databases import fresh_url

ROOT = Path(__file__).resolve().parent.parent
QUOTA = str(Path(sys.executable).with_name("quota"))
T_HEADER = ("tally_id,source_id,source_name,measure,zone,pollutant,baseline_actual,permitted,post,unit,"
            "baseline_year,effective_date,method,assessor,report_no")
P_HEADER = "project_id,name,zone,industry,pollutant,increment,unit,priority,needed_by,must_fund,ratio"
ZONES = ["JT-JC", "JT-YT", "JT-DC", "JT-ZL", "JT-XB", "JT-ZQ"]
POLS = ["COD", "NH3-N", "TN", "SO2", "NOX", "PM"]


def fresh(kind: str, tmp: Path) -> tuple[str, callable]:
    """An empty database (SQLite file in `tmp`, or a fresh PostgreSQL schema) and its drop function."""
    return fresh_url(kind, tmp, prefix="bench")


def tally_csv(path: Path, n: int, start: int = 0) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(T_HEADER + "\n")
        for i in range(start, start + n):
            z, p = ZONES[i % 6], POLS[(i // 6) % 6]
            fh.write(f"T{i},S{i},源{i},closure,{z},{p},{5 + i % 50}.25,,,t/a,2020,2025-01-0{1 + i % 9},m,x,R{i}\n")


def project_csv(path: Path, n: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(P_HEADER + "\n")
        for i in range(n):
            fh.write(f"P{i:06d},项目{i},{ZONES[i % 6]},x,{POLS[(i // 6) % 6]},0.01,t/a,1,,false,\n")


def init(url: str):
    engine = db.make_engine(url)
    versions.init(engine, str(ROOT / "data" / "rules.toml"), "bench")
    return engine


def bench_import(kind: str, tmp: Path) -> None:
    url, drop = fresh(kind, tmp)
    engine = init(url)
    tally_csv(tmp / "t100k.csv", 100_000)
    t0 = time.perf_counter()
    r = tallies.import_tallies(engine, str(tmp / "t100k.csv"), actor="bench")
    secs = time.perf_counter() - t0
    print(f"  tally import of 100,000 rows: {secs:.1f} s ({r['tallies']} lots)   target < 30 s   "
          f"ratio {secs / 30:.2f} of the limit")
    engine.dispose()
    drop()


def build(engine, postings: int, n_lots: int = 2000, n_projects: int = 20000, tmp: Path = Path(".")) -> None:
    """Lots and projects through the importers, then reserve/release cycles through ledger.post_many."""
    tally_csv(tmp / "lots.csv", n_lots, start=10_000_000)
    tallies.import_tallies(engine, str(tmp / "lots.csv"), actor="bench")
    project_csv(tmp / "projects.csv", n_projects)
    project_files.import_projects(engine, str(tmp / "projects.csv"), actor="bench")
    with engine.connect() as c:
        lots = [(r[0], r[1], r[2]) for r in c.execute(text("SELECT serial, pollutant, zone FROM lot ORDER BY serial"))]
        version = c.execute(text("SELECT max(version) FROM rulebook")).scalar_one()
    by_pol = {}
    for serial, pol, zone in lots:
        by_pol.setdefault(pol, []).append((serial, zone))
    have = 2 * n_lots
    day, i = dt.date(2025, 2, 1), 0
    while have < postings:
        specs = []
        for _ in range(10_000):
            pid = f"P{i % n_projects:06d}"
            pol = POLS[((i % n_projects) // 6) % 6]
            zone = ZONES[(i % n_projects) % 6]
            serial, lzone = by_pol[pol][(i // 7) % len(by_pol[pol])]
            g = 10_000
            acct = ledger.project_account(pid, "reserved")
            specs.append(ledger.TxnSpec("reserve", day, [
                ledger.Leg(ledger.lot_account(serial), serial, pol, -g, lzone),
                ledger.Leg(acct, serial, pol, g, zone, pid)], project_id=pid))
            specs.append(ledger.TxnSpec("release", day, [
                ledger.Leg(acct, serial, pol, -g, zone, pid),
                ledger.Leg(ledger.lot_account(serial), serial, pol, g, lzone)], project_id=pid))
            i += 1
            have += 4
        db.run_write(engine, lambda c: ledger.post_many(c, specs, actor="bench", rulebook=version))
        day += dt.timedelta(days=1)


def timed(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (MB) of a command, from /usr/bin/time."""
    out = subprocess.run(["/usr/bin/time", "-f", "%e %M", *cmd], capture_output=True, text=True)
    wall, kb = out.stderr.strip().splitlines()[-1].split()
    return float(wall), int(kb) // 1024


def compile_project() -> None:
    """Write the project's bytecode, as pip does for an installed package. An editable install under
    PYTHONDONTWRITEBYTECODE=1 (set on this machine) compiles every module of quota on each run, about
    20 ms that the floor's site-packages never pay."""
    import compileall
    for package in ("quota", "cli"):
        compileall.compile_dir(str(ROOT / package), quiet=1)


def median_process(cmd: list[str], n: int = 7) -> float:
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        xs.append(time.perf_counter() - t0)
    return statistics.median(xs)


def bench_ledger(kind: str, tmp: Path, postings: int) -> None:
    url, drop = fresh(kind, tmp)
    engine = init(url)
    t0 = time.perf_counter()
    build(engine, postings, tmp=tmp)
    with engine.connect() as c:
        n = c.execute(text("SELECT count(*) FROM posting")).scalar_one()
        pairs = c.execute(text("SELECT count(*) FROM balance")).scalar_one()
    print(f"  ledger built: {n:,} postings, {pairs:,} balance rows in {time.perf_counter() - t0:.0f} s")
    for by in ("pollutant", "zone"):
        xs = []
        for _ in range(100):
            t = time.perf_counter()
            balances.balance(engine, by=by)
            xs.append(time.perf_counter() - t)
        med = statistics.median(xs) * 1000
        print(f"  balance --by {by} in the library: median {med:.1f} ms of 100   target < 20 ms   "
              f"ratio {med / 20:.2f}")
    compile_project()
    floor = median_process([sys.executable, "-c", "import sqlmodel, typer, rich"])
    proc = median_process([QUOTA, "--db", url, "balance", "--json"])
    print(f"  `quota balance --json` process: {proc:.3f} s; floor (import sqlmodel, typer, rich) {floor:.3f} s; "
          f"ratio {proc / floor:.2f}   target <= 1.2")
    wall, mb = timed([QUOTA, "--db", url, "verify"])
    print(f"  quota verify: {wall:.1f} s, peak {mb} MB   target < 60 s")
    out = tmp / f"ledger-{kind}.jsonl"
    wall, mb = timed([QUOTA, "--db", url, "export", "--format", "jsonl", "--out", str(out)])
    print(f"  export --format jsonl: {wall:.1f} s, peak {mb} MB, {out.stat().st_size / 1e6:.0f} MB file   "
          "targets < 60 s, < 500 MB")
    wall, mb = timed([QUOTA, "verify", "--export", str(out)])
    print(f"  verify --export: {wall:.1f} s, peak {mb} MB   targets < 60 s, < 500 MB")
    out.unlink()
    engine.dispose()
    drop()


# ---------------------------------------------------------------- reservation throughput

def _library_worker(url: str, ids: list[str], barrier, q) -> None:
    from quota.store import db as qdb
    from quota.ledger import operations
    from quota.rules import versions as qrulebooks
    engine = qdb.make_engine(url)
    with engine.connect() as conn:  # one connection for the run, opened before the clock starts, as the raw worker's
        with conn.begin():
            qrulebooks.current(conn)  # (and the rulebook parsed, once per process)
        barrier.wait()
        t0 = time.perf_counter()
        for pid in ids:
            operations.reserve(conn, pid, actor="bench", date=dt.date(2026, 1, 1))  # one transaction each
        q.put(time.perf_counter() - t0)
    engine.dispose()


RAW_SCHEMA = [
    "CREATE TABLE raw_lot (serial TEXT PRIMARY KEY, amount BIGINT NOT NULL CHECK (amount >= 0))",
    "CREATE TABLE raw_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, hash TEXT NOT NULL)",
    "CREATE TABLE raw_txn (seq BIGINT PRIMARY KEY, kind TEXT, project TEXT, prev_hash TEXT, hash TEXT)",
    "CREATE TABLE raw_posting (txn_seq BIGINT, account TEXT, amount BIGINT)",
    "CREATE TABLE raw_held (account TEXT, lot TEXT, amount BIGINT, PRIMARY KEY (account, lot))",
]


def _raw_worker(kind: str, dsn: str, ids: list[str], barrier, q) -> None:
    """The reference: a double-entry reservation in plain SQL through the driver."""
    import hashlib
    if kind == "sqlite":
        import sqlite3
        conn = sqlite3.connect(dsn, timeout=60, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # same durability as the library
        ph, begin, lock = "?", "BEGIN IMMEDIATE", ""
    else:
        import psycopg
        conn = psycopg.connect(dsn, autocommit=True)
        ph, begin, lock = "%s", "BEGIN", " FOR UPDATE"
    cur = conn.cursor()
    barrier.wait()
    t0 = time.perf_counter()
    for i, pid in enumerate(ids):
        lot = f"L{i % 50}"
        cur.execute(begin)
        cur.execute(f"SELECT seq, hash FROM raw_head WHERE id = 1{lock}")
        seq, prev = cur.fetchone()
        cur.execute(f"SELECT amount FROM raw_lot WHERE serial = {ph}{lock}", (lot,))
        (amount,) = cur.fetchone()
        if amount < 10_000:
            cur.execute("ROLLBACK")
            continue
        cur.execute(f"UPDATE raw_lot SET amount = amount - 10000 WHERE serial = {ph}", (lot,))
        cur.execute(f"INSERT INTO raw_held (account, lot, amount) VALUES ({ph}, {ph}, 10000)", (f"project:{pid}", lot))
        digest = hashlib.sha256(f"{prev}{seq + 1}reserve{pid}".encode()).hexdigest()
        cur.execute(f"INSERT INTO raw_txn VALUES ({ph}, 'reserve', {ph}, {ph}, {ph})", (seq + 1, pid, prev, digest))
        cur.execute(f"INSERT INTO raw_posting VALUES ({ph}, {ph}, -10000), ({ph}, {ph}, 10000)",
                    (seq + 1, f"lot:{lot}", seq + 1, f"project:{pid}"))
        cur.execute(f"UPDATE raw_head SET seq = {ph}, hash = {ph} WHERE id = 1", (seq + 1, digest))
        cur.execute("COMMIT")
    q.put(time.perf_counter() - t0)
    conn.close()


def _run(target, args_for, clients: int, per_client: int) -> float:
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(clients), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args_for(c), barrier, q)) for c in range(clients)]
    for p in procs:
        p.start()
    secs = max(q.get(timeout=900) for _ in procs)
    for p in procs:
        p.join()
    return clients * per_client / secs


def bench_throughput(kind: str, tmp: Path, per_client: int, rounds: int = 3) -> None:
    """Library and raw SQL alternate `rounds` times on the same database (this machine's speed drifts
    from minute to minute), each going first in every other round; the figure is the median of the
    per-round ratios. SQLite's write-ahead log is checkpointed after the setup, so the first timed run
    does not copy the setup's pages into the database file."""
    for clients in (1, 8):
        url, drop = fresh(kind, tmp)
        engine = init(url)
        n = clients * per_client
        tally_csv(tmp / "tl.csv", 300, start=20_000_000)
        tallies.import_tallies(engine, str(tmp / "tl.csv"), actor="bench")
        project_csv(tmp / "tp.csv", n * rounds)
        project_files.import_projects(engine, str(tmp / "tp.csv"), actor="bench")
        with engine.begin() as c:
            for sql in RAW_SCHEMA:
                c.execute(text(sql))
            c.execute(text("INSERT INTO raw_head VALUES (1, 0, :h)"), {"h": "0" * 64})
            for k in range(50):
                c.execute(text("INSERT INTO raw_lot VALUES (:s, :a)"), {"s": f"L{k}", "a": 10**12})
        if kind == "sqlite":
            dsn = url.removeprefix("sqlite:///")
            with engine.connect() as c:  # the setup's pages go to the file now, not in the first timed run
                c.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)")
        else:
            schema = url.split("%3D")[-1]
            dsn = f"host=127.0.0.1 port=5432 dbname=test user=root options='-csearch_path={schema}'"
        figures = []
        for r in range(rounds):
            ids = [f"P{i:06d}" for i in range(r * n, (r + 1) * n)]
            runs = {"lib": lambda: _run(_library_worker, lambda c: (url, ids[c::clients]), clients, per_client),
                    "raw": lambda: _run(_raw_worker, lambda c: (kind, dsn, ids[c::clients]), clients, per_client)}
            order = ["lib", "raw"] if r % 2 == 0 else ["raw", "lib"]  # neither always runs first
            rates = {name: runs[name]() for name in order}
            lib, raw = rates["lib"], rates["raw"]
            figures.append((lib / raw, lib, raw))
        ratio, lib, raw = sorted(figures)[len(figures) // 2]
        rounds_text = ", ".join(f"{f[0]:.2f}" for f in figures)
        print(f"  reservations, {clients} client(s): library {lib:,.0f}/s, raw SQL {raw:,.0f}/s, "
              f"ratio {ratio:.2f} (median of rounds {rounds_text})   target >= 0.5")
        engine.dispose()
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="both", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--postings", type=int, default=1_000_000)
    ap.add_argument("--per-client", type=int, default=1000, help="reservations per client and run (steady state)")
    ap.add_argument("--rounds", type=int, default=5, help="library/raw alternations per throughput figure")
    ap.add_argument("--skip", default="", help="comma list of: import,ledger,throughput")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    kinds = ["sqlite", "postgresql"] if args.engine == "both" else [args.engine]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        for kind in kinds:
            print(f"{kind}:")
            if "import" not in skip:
                bench_import(kind, tmp)
            if "ledger" not in skip:
                bench_ledger(kind, tmp, args.postings)
            if "throughput" not in skip:
                bench_throughput(kind, tmp, args.per_client, args.rounds)


if __name__ == "__main__":
    main()
