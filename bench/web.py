"""Web workspace under load (docs/performance.md, Web workspace), on loopback only, bounded in clients and time;
prints figures, asserts nothing (the checks after the run are printed as ok/FAILED).

    .venv/bin/python -m bench.web [--engine sqlite|postgresql|both] [--clients 8,32] [--seconds 60]
        [--workers 2] [--write-seconds 15]

For each engine and client count: a fresh database (600 tallies, 12,000 small projects), `quota serve
--workers N` on 127.0.0.1, and N concurrent clients (asyncio, httpx, keep-alive) for --seconds: 90% reads
(half the overview page with a session, half GET /api/v1/balance), 10% writes through the API (reserve or
release of a random project from a shared pool of 200, so clients overlap; 409 refusals are correct answers,
not errors). Printed: requests/s, p50/p95/p99 per route, 5xx count. Then the checks: `verify` passes, no
lot is overdrawn, and every reservation the API acknowledged is one reserve transaction in the ledger.

Then reservations alone, --write-seconds each: through the API (N clients, each reserving fresh projects)
and through the library directly (N processes, one engine each, same operation and keys), in the same run;
the ratio API/library is the figure (target >= 0.5).
"""
from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.ledger import init, project_csv, tally_csv
from tests.databases import fresh_url

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "bench password 123"
MAX_SECONDS = 300
MAX_CLIENTS = 64
PROJECTS = 12000  # 200 shared by the mixed run, the rest reserved once each in the write phases


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare(kind: str, tmp: Path) -> tuple[str, callable, str]:
    from quota.intake import project_files, tallies
    from quota.store import users
    url, drop = fresh_url(kind, tmp, prefix="benchweb")
    engine = init(url)
    tally_csv(tmp / "t.csv", 600)
    project_csv(tmp / "p.csv", PROJECTS)
    tallies.import_tallies(engine, str(tmp / "t.csv"), actor="bench")
    project_files.import_projects(engine, str(tmp / "p.csv"), actor="bench")
    users.add_user(engine, "bench-clerk", "clerk", PASSWORD)
    token = users.new_token(engine, "bench-clerk")["token"]
    engine.dispose()
    return url, drop, token


def start_server(url: str, workers: int, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cli", "--db", url, "serve", "--host", "127.0.0.1", "--port",
                             str(port), "--workers", str(workers)], cwd=ROOT, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    base = f"http://127.0.0.1:{port}"
    import httpx
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/login", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            break
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("quota serve did not start: " + log.read_text()[-2000:])


async def signed_in(base: str):
    import httpx
    c = httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False)
    page = (await c.get("/login")).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = await c.post("/login", data={"username": "bench-clerk", "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303, r.text[:300]
    return c


async def mixed(base: str, token: str, clients: int, seconds: float, pool: list[str]) -> dict:
    """The 90/10 run: returns {route: [latencies]}, status counts and acknowledged reservations."""
    sessions = [await signed_in(base) for _ in range(clients)]
    lat: dict[str, list[float]] = {}
    status: dict[int, int] = {}
    reserved_ok = [0]
    auth = {"Authorization": f"Bearer {token}"}
    stop = time.monotonic() + seconds
    rng = random.Random(7)

    async def one(c):
        while time.monotonic() < stop:
            x = rng.random()
            started = time.perf_counter()
            if x < 0.45:
                route, r = "GET /", await c.get("/")
            elif x < 0.90:
                route, r = "GET /api/v1/balance", await c.get("/api/v1/balance", headers=auth)
            elif x < 0.95:
                route = "POST reserve"
                r = await c.post(f"/api/v1/projects/{rng.choice(pool)}/reserve",
                                 headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
                if r.status_code == 200:
                    reserved_ok[0] += 1
            else:
                route = "POST release"
                r = await c.post(f"/api/v1/projects/{rng.choice(pool)}/release",
                                 headers={**auth, "Idempotency-Key": uuid.uuid4().hex})
            lat.setdefault(route, []).append(time.perf_counter() - started)
            status[r.status_code] = status.get(r.status_code, 0) + 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in sessions))
    wall = time.perf_counter() - t0
    for c in sessions:
        await c.aclose()
    return {"lat": lat, "status": status, "wall": wall, "reserved_ok": reserved_ok[0]}


async def api_writes(base: str, token: str, clients: int, seconds: float, ids: list[list[str]]) -> tuple[int, float]:
    import httpx
    auth = {"Authorization": f"Bearer {token}"}
    stop = time.monotonic() + seconds
    done = [0]

    async def one(mine: list[str]):
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            for pid in mine:
                if time.monotonic() >= stop:
                    return
                r = await c.post(f"/api/v1/projects/{pid}/reserve", headers={**auth, "Idempotency-Key": "a" + pid})
                if r.status_code == 200:
                    done[0] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(one(m) for m in ids))
    return done[0], time.perf_counter() - t0


def _library_writer(url: str, ids: list[str], seconds: float, barrier, q) -> None:
    from quota.ledger import operations
    from quota.store import db
    engine = db.make_engine(url)
    operations.reserve(engine, ids[0], actor="bench-clerk", key="l" + ids[0])  # connect and parse the rulebook
    barrier.wait()
    stop, n = time.monotonic() + seconds, 1
    for pid in ids[1:]:
        if time.monotonic() >= stop:
            break
        operations.reserve(engine, pid, actor="bench-clerk", key="l" + pid)
        n += 1
    q.put(n)
    engine.dispose()


def library_writes(url: str, clients: int, seconds: float, ids: list[list[str]]) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    barrier, q = ctx.Barrier(clients + 1), ctx.Queue()
    procs = [ctx.Process(target=_library_writer, args=(url, ids[i], seconds, barrier, q)) for i in range(clients)]
    for p in procs:
        p.start()
    barrier.wait()
    t0 = time.perf_counter()
    total = sum(q.get() for _ in procs)
    wall = time.perf_counter() - t0
    for p in procs:
        p.join()
    return total - clients, wall  # the warm-up reservation of each process is not counted


def checks(url: str, acknowledged: int) -> list[str]:
    from quota.audit import trace
    from quota.ledger import balances
    from quota.store import db
    engine = db.make_engine(url)
    out = []
    _, problems = trace.verify(engine)
    out.append(f"verify: {'ok' if not problems else 'FAILED ' + str(problems[:3])}")
    lots = balances.balance(engine, by="lot")["rows"]
    negative = [r["lot"] for r in lots if min(r["available_g"], r["reserved_g"], r["allocated_g"]) < 0]
    out.append(f"no lot overdrawn: {'ok' if not negative else 'FAILED ' + ', '.join(negative[:5])}")
    with engine.connect() as conn:
        n = conn.exec_driver_sql("SELECT count(*) FROM txn WHERE kind = 'reserve' AND actor = 'bench-clerk'").scalar()
    out.append(f"acknowledged reservations = reserve transactions: "
               f"{'ok' if n == acknowledged else 'FAILED'} ({acknowledged} acknowledged, {n} in the ledger)")
    engine.dispose()
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))] * 1000


def run(kind: str, clients: int, seconds: float, workers: int, write_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        url, drop, token = prepare(kind, tmp)
        proc, base = start_server(url, workers, tmp / "server.log")
        try:
            pool = [f"P{i:06d}" for i in range(200)]
            result = asyncio.run(mixed(base, token, clients, seconds, pool))
            total = sum(result["status"].values())
            fivexx = sum(v for k, v in result["status"].items() if k >= 500)
            print(f"\n{kind}, {clients} clients, {workers} workers, {seconds:.0f} s: {total / result['wall']:.0f} "
                  f"requests/s, status {dict(sorted(result['status'].items()))}, 5xx: {fivexx}")
            print(f"  {'route':24} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}")
            for route, values in sorted(result["lat"].items()):
                print(f"  {route:24} {len(values):6d} {pct(values, 50):8.1f} {pct(values, 95):8.1f} "
                      f"{pct(values, 99):8.1f}")
            for line in checks(url, result["reserved_ok"]):
                print("  " + line)
            fresh = [f"P{i:06d}" for i in range(200, PROJECTS)]
            half = len(fresh) // 2
            api_ids = [fresh[:half][i::clients] for i in range(clients)]
            lib_ids = [fresh[half:][i::clients] for i in range(clients)]
            api_n, api_wall = asyncio.run(api_writes(base, token, clients, write_seconds, api_ids))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        lib_n, lib_wall = library_writes(url, clients, write_seconds, lib_ids)
        api_rate, lib_rate = api_n / api_wall, lib_n / lib_wall
        print(f"  reservations: API {api_rate:.0f}/s ({api_n} in {api_wall:.1f} s), library {lib_rate:.0f}/s "
              f"({lib_n} in {lib_wall:.1f} s), ratio {api_rate / lib_rate:.2f} (target >= 0.5)")
        for line in checks(url, result["reserved_ok"] + api_n)[:2]:
            print("  " + line)
        drop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="both", choices=["sqlite", "postgresql", "both"])
    ap.add_argument("--clients", default="8,32")
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--write-seconds", type=float, default=15)
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    if any(not 1 <= c <= MAX_CLIENTS for c in clients) or not 0 < args.seconds <= MAX_SECONDS \
            or not 0 < args.write_seconds <= MAX_SECONDS:
        raise SystemExit(f"bounded: 1 to {MAX_CLIENTS} clients, at most {MAX_SECONDS} s per phase")
    for kind in (["sqlite", "postgresql"] if args.engine == "both" else [args.engine]):
        for n in clients:
            run(kind, n, args.seconds, args.workers, args.write_seconds)


if __name__ == "__main__":
    main()
