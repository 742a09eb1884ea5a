"""The outlook's cost (docs/performance.md, The outlook page): `quota plan outlook` and the web's /outlook on the sample
district (data/: the database tests/web/support.py builds), a first view and the same view again, and solves
in several threads of one process at once (as a server's request threads make them), on a generated instance
large enough for the planner to send its parts to worker processes. Prints figures, asserts nothing.

    .venv/bin/python -m bench.outlook [--engine sqlite|postgresql] [--threads 3] [--projects 3000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def views(engine_kind: str) -> None:
    from tests.databases import fresh_url
    from tests.web.support import login, make_app, prepare
    url, drop = fresh_url(engine_kind, Path(tempfile.mkdtemp()), "bench_outlook")
    try:
        engine = prepare(url)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "cli", "--db", url, "plan", "outlook", "--years", "5",
                               "--time-limit", "5", "--json"], capture_output=True, text=True, cwd=ROOT)
        cli = time.perf_counter() - started
        plan = json.loads(done.stdout)["plan"] if done.returncode == 0 else done.stderr.strip()[:80]
        print(f"{engine_kind}: quota plan outlook --years 5 --time-limit 5: {cli:.2f} s (process and all), {plan}")
        planner = login(make_app(engine), "planner")
        for query in ("/outlook", "/outlook?years=10"):
            started = time.perf_counter()
            status = planner.get(query).status_code
            first = time.perf_counter() - started
            again = []
            for _ in range(5):
                started = time.perf_counter()
                planner.get(query)
                again.append(time.perf_counter() - started)
            print(f"{engine_kind}: GET {query}: {status}, first view {first * 1000:.0f} ms, "
                  f"the same view again {statistics.median(again) * 1000:.1f} ms (median of 5)")
        engine.dispose()
    finally:
        drop()


def threads(n: int, projects: int) -> None:
    from bench.generate import shape
    from quota.planning import milp
    ps, lots = shape("reference", projects=projects)
    results: dict[int, str] = {}

    def one(i: int) -> None:
        started = time.perf_counter()
        try:
            status = milp.solve(ps, lots, [], time_limit=5.0)[0].status
        except Exception as exc:  # noqa: BLE001 -- a figure to print
            status = repr(exc)[:60]
        results[i] = f"{status} in {time.perf_counter() - started:.2f} s"

    workers = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join(max(0.0, 60 - (time.perf_counter() - started)))
    for i in range(n):
        print(f"{n} solves at once ({projects} projects, time limit 5 s), thread {i}: "
              f"{results.get(i, 'still running after 60 s')}", file=sys.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", default="sqlite", choices=("sqlite", "postgresql"))
    ap.add_argument("--threads", type=int, default=3)
    ap.add_argument("--projects", type=int, default=3000)
    args = ap.parse_args()
    views(args.engine)
    threads(args.threads, args.projects)  # (stderr: before the fix a solve could leave stdout on /dev/null)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # threads left solving (before the fix) must not keep the process


if __name__ == "__main__":
    main()
