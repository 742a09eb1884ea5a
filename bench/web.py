"""Web workspace under load (docs/performance.md, Web workspace), on loopback only, bounded in clients and time;
prints figures, asserts nothing (the checks after the run are printed as ok/FAILED).

    .venv/bin/python -m bench.web [--engine sqlite|postgresql|both] [--clients 8,32] [--seconds 60]
        [--workers 2] [--write-seconds 15]

For each engine and client count: a fresh database (600 tallies, 12,000 small projects), `quota serve
--workers N` on 127.0.0.1, and N concurrent clients (asyncio, one keep-alive HTTP/1.1 connection each, see
Conn; signed in through the login form before the clock starts) for --seconds: 90% reads (half the overview
page with a session, half GET /api/v1/balance), 10% writes through the API (reserve or release of a random
project from a shared pool of 200, so clients overlap; 409 refusals are correct answers, not errors).
Printed: requests/s, p50/p95/p99 per route, 5xx count, the CPU the server (all its processes) and the load
generator used while the clock ran (they share the machine's cores) and the load average. Then the checks:
`verify` passes, no lot is overdrawn, and every reservation the API acknowledged is one reserve transaction in
the ledger.

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


class Conn:
    """One keep-alive HTTP/1.1 connection, written by hand on asyncio streams: the load generator shares the
    server's 2 cores, and httpx spends about 4 ms of CPU per request there (more than the server's own work),
    this about 0.1 ms. It reads Content-Length bodies (every answer of the app has one) and keeps the session
    cookie up to date from Set-Cookie."""

    def __init__(self, base: str, headers: dict[str, str] | None = None):
        self.host, self.port = base.removeprefix("http://").split(":")
        self.headers = dict(headers or {})
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, int(self.port))
        head = {"Host": f"{self.host}:{self.port}", **self.headers, **(headers or {})}
        if method == "POST":
            head["Content-Length"] = "0"
        self.writer.write((f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items())
                           + "\r\n").encode("latin-1"))
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status, length, close = int(lines[0].split(" ", 2)[1]), 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise RuntimeError("chunked answers are not read by this client")
            elif name == "connection" and value.lower() == "close":
                close = True
            elif name == "set-cookie" and value.startswith(SESSION + "="):
                self.headers["Cookie"] = value.split(";", 1)[0]
        body = await self.reader.readexactly(length)
        if close:
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


SESSION = "quota_session"


async def signed_in(base: str) -> Conn:
    """A connection with a clerk's session cookie (signed in through httpx: not timed)."""
    import httpx
    async with httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False) as c:
        page = (await c.get("/login")).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        r = await c.post("/login", data={"username": "bench-clerk", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303, r.text[:300]
        return Conn(base, {"Cookie": f"{SESSION}={c.cookies[SESSION]}"})


async def sign_in(base: str, clients: int) -> list[Conn]:
    return [await signed_in(base) for _ in range(clients)]


async def mixed(base: str, token: str, sessions: list[Conn], seconds: float, pool: list[str]) -> dict:
    """The 90/10 run: returns {route: [latencies]}, status counts and acknowledged reservations."""
    lat: dict[str, list[float]] = {}
    status: dict[int, int] = {}
    reserved_ok = [0]
    auth = {"Authorization": f"Bearer {token}"}
    stop = time.monotonic() + seconds
    rng = random.Random(7)

    async def one(c: Conn):
        while time.monotonic() < stop:
            x = rng.random()
            started = time.perf_counter()
            if x < 0.45:
                route, (code, _) = "GET /", await c.request("GET", "/")
            elif x < 0.90:
                route, (code, _) = "GET /api/v1/balance", await c.request("GET", "/api/v1/balance", auth)
            elif x < 0.95:
                route = "POST reserve"
                code, _ = await c.request("POST", f"/api/v1/projects/{rng.choice(pool)}/reserve",
                                          {**auth, "Idempotency-Key": uuid.uuid4().hex})
                if code == 200:
                    reserved_ok[0] += 1
            else:
                route = "POST release"
                code, _ = await c.request("POST", f"/api/v1/projects/{rng.choice(pool)}/release",
                                          {**auth, "Idempotency-Key": uuid.uuid4().hex})
            lat.setdefault(route, []).append(time.perf_counter() - started)
            status[code] = status.get(code, 0) + 1

    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(one(c) for c in sessions))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    for c in sessions:
        await c.aclose()
    return {"lat": lat, "status": status, "wall": wall, "reserved_ok": reserved_ok[0], "client_cpu": cpu}


async def api_writes(base: str, token: str, clients: int, seconds: float, ids: list[list[str]]) -> tuple[int, float]:
    auth = {"Authorization": f"Bearer {token}"}
    stop = time.monotonic() + seconds
    done = [0]

    async def one(mine: list[str]):
        c = Conn(base, auth)
        try:
            for pid in mine:
                if time.monotonic() >= stop:
                    return
                code, _ = await c.request("POST", f"/api/v1/projects/{pid}/reserve", {"Idempotency-Key": "a" + pid})
                if code == 200:
                    done[0] += 1
        finally:
            await c.aclose()

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


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) of the server process and its workers, from /proc (Linux; 0 elsewhere)."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        total = 0
        for p in [str(pid), *kids]:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        return total / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


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
            sessions = asyncio.run(sign_in(base, clients))
            cpu0 = server_cpu(proc.pid)
            result = asyncio.run(mixed(base, token, sessions, seconds, pool))
            cpu = server_cpu(proc.pid) - cpu0
            total = sum(result["status"].values())
            fivexx = sum(v for k, v in result["status"].items() if k >= 500)
            print(f"\n{kind}, {clients} clients, {workers} workers, {seconds:.0f} s: {total / result['wall']:.0f} "
                  f"requests/s, status {dict(sorted(result['status'].items()))}, 5xx: {fivexx}")
            print(f"  CPU: server {cpu / result['wall']:.2f} cores ({cpu / total * 1000:.1f} ms a request), load "
                  f"generator {result['client_cpu'] / result['wall']:.2f} cores; load average "
                  f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
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
