"""Split the planning model into independent parts and solve the hard ones on all cores.

Projects that share no (pollutant, matching key) group -- and no candidate measure that could
supply both -- compete for nothing: the MILP is then a sum of independent problems, its optimum
the sum of theirs. `split` finds these parts (connected components of the project-group graph).
The planner settles the easy parts itself (everything fits, or the LP optimum is already whole)
and hands the rest to `run`, which solves them in worker processes, as many at once as there are
cores, each with a share of the remaining time weighted by its difficulty. A part that finishes
early gives its time back to those not yet started. A worker that overruns its time (a solver
that stops checking its clock) is killed, and the part falls back to its LP-guided start.

This module imports no solver: the work itself is `planner.solve_part`.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path

GRACE = 1.0    # seconds past its time limit after which a worker in its solver is presumed stuck
MIN_MIP = 0.1  # a part offered less solver time than this keeps its LP-guided start
END_GRACE = 0.1  # seconds past the run's deadline after which any worker still solving is killed


@dataclass
class Part:
    projects: list[int]                               # global project indices, ascending
    rows: list[int] = field(default_factory=list)     # global row indices, ascending
    cands: list[int] = field(default_factory=list)    # global candidate indices, ascending


def split(n_projects: int, rows, n_cands: int, *, couple_candidates: bool, budget: bool) -> list[Part]:
    """Connected components of the graph joining projects that appear in one row (one group), and,
    when candidates are still to be chosen, the projects of every row a candidate could supply
    (all candidates in one part under a common budget). Parts are ordered by their first project."""
    parent = list(range(n_projects + n_cands))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def union(a: int, b: int) -> None:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)

    widest: set = set()
    for row in rows:
        first = row.terms[0][0]
        # a group's rows are nested (problem.build_rows: each holds the projects dated on or after its
        # threshold) and its first row, at the earliest date, holds them all: joining that one suffices
        if row.group not in widest:
            widest.add(row.group)
            for pi, _ in row.terms[1:]:
                union(first, pi)
        if couple_candidates:
            for ci, _ in row.cand_terms:
                union(first, n_projects + ci)
    if couple_candidates and budget and n_cands:
        for ci in range(1, n_cands):
            union(n_projects, n_projects + ci)
    parts: dict[int, Part] = {}
    for pi in range(n_projects):
        parts.setdefault(find(pi), Part([])).projects.append(pi)
    for r_i, row in enumerate(rows):
        parts[find(row.terms[0][0])].rows.append(r_i)
    if couple_candidates:
        for ci in range(n_cands):
            root = find(n_projects + ci)
            if root in parts:  # a candidate no project could draw on is never worth taking
                parts[root].cands.append(ci)
    return sorted(parts.values(), key=lambda p: p.projects[0])


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass
class Job:
    key: int
    weight: float
    payload: tuple            # arguments of planner.solve_part after the time limit
    result: dict | None = None
    start: list[int] | None = None  # the part's LP-guided start, as the worker reported it
    seconds: float = 0.0
    limit: float = 0.0


def _worker(conn) -> None:  # pragma: no cover - runs in a child process
    from quota.planning import milp
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        key, limit, threads, payload, sent = msg
        # the part's time counts from when the parent sent it (the transfer is part of it); the wall
        # clock is the one both processes share
        limit = max(0.0, limit - max(0.0, time.time() - sent))
        try:
            result = milp.solve_part(*payload, time_limit=limit, threads=threads,
                                        on_start=lambda start: conn.send(("start", key, start)))
            conn.send((key, result))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which falls back
            conn.send((key, {"error": repr(exc)}))


class _Duplex:
    """The worker's end: reads requests from one pipe, writes results to the other."""

    def __init__(self, rfd: int, wfd: int):
        self.r, self.w = Connection(rfd, writable=False), Connection(wfd, readable=False)

    def recv(self):
        return self.r.recv()

    def send(self, obj) -> None:
        self.w.send(obj)


class _Proc:
    """One worker: `python -m quota.decompose` with a pipe each way (its stdout stays free for the
    solver's chatter). A plain subprocess, so the caller's main module is never re-imported."""

    def __init__(self):
        self.threads: int | None = None  # HiGHS fixes its thread count at a process's first solve
        to_child, from_parent = os.pipe()
        to_parent, from_child = os.pipe()
        pkg_root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [pkg_root, os.environ.get("PYTHONPATH")]))}
        self.proc = subprocess.Popen([sys.executable, "-m", "quota.planning.decompose", str(to_child), str(from_child)],
                                     pass_fds=(to_child, from_child), env=env,
                                     stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        os.close(to_child)
        os.close(from_child)
        self.send_conn = Connection(from_parent, readable=False)
        self.conn = Connection(to_parent, writable=False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()
        self.conn.close()
        self.send_conn.close()


class _Pool:
    """Idle worker processes, started early (the solver's import overlaps the model build). A run takes the
    workers it needs and gives them back: two solves at once in one process (the web workspace serves requests
    in threads) each have their own, never share a pipe (they did, and read each other's results: a view
    waited without end). A stuck worker, or one whose thread count does not suit the next job, is killed and
    replaced by the run holding it; at most cores() idle workers are kept."""

    def __init__(self):
        self.workers: list[_Proc] = []  # idle, the next to be taken first
        self._lock = threading.Lock()

    def ensure(self, size: int) -> None:
        """At least `size` idle workers (started now, for the run about to take them)."""
        with self._lock:
            self.workers = [w for w in self.workers if w.alive()]
            self.workers += [_Proc() for _ in range(max(0, size - len(self.workers)))]

    def take(self, size: int) -> list[_Proc]:
        """`size` workers for one run alone: idle ones first, new ones when another run holds the rest."""
        with self._lock:
            alive = [w for w in self.workers if w.alive()]
            taken, self.workers = alive[:size], alive[size:]
        return taken + [_Proc() for _ in range(size - len(taken))]

    def give(self, workers: list[_Proc]) -> None:
        """A run's workers back, idle (each has answered every job it was sent); beyond cores() idle, ended."""
        with self._lock:
            kept = [w for w in workers if w.alive()][:max(0, cores() - len(self.workers))]
            self.workers = kept + self.workers
        for w in workers:
            if w not in kept:
                w.kill()


def _replace(procs: list[_Proc], i: int) -> None:
    procs[i].kill()
    procs[i] = _Proc()


POOL = _Pool()


def warm(n_projects: int, workers: int | None) -> None:
    """Start the worker processes now, so their start-up overlaps the parent's own work."""
    if workers != 0 and n_projects >= 2:
        POOL.ensure(min(cores() if workers is None else workers, n_projects))


def _allot(job: Job, now: float, deadline: float, width: int, pending_weight: float, busy_until: list[float],
           overhead: float = 0.0) -> float:
    """A job's time: its weight's share of the core-seconds left, less what running jobs still hold
    and the per-job overhead of those still to run; 0 (the LP-guided start only, no MILP) when that
    share is under MIN_MIP."""
    left = max(0.0, deadline - now)
    capacity = width * left - sum(max(0.0, b - now) for b in busy_until) - overhead
    share = capacity * job.weight / pending_weight if pending_weight > 0 else left
    share = min(left, share)
    return share if share >= MIN_MIP else 0.0


def _kill_at(entry: tuple, solving_since: float, deadline: float) -> float:
    """When a worker in its solver is presumed stuck: its time limit counts from dispatch (the
    worker gives the solver what is left of it), plus GRACE, but never later than END_GRACE past
    the deadline of the whole run (the plan is due then; the part keeps its start)."""
    _, started, limit = entry
    return min(max(started + limit, solving_since + 0.5) + GRACE, deadline + END_GRACE)


def run(jobs: list[Job], deadline: float, workers: int | None) -> list[Job]:
    """Solve the jobs (heaviest first) before `deadline` (a perf_counter time); workers=0 solves them
    here, one after another, without a watchdog. A job left without a result has result None."""
    from quota.planning import milp
    order = sorted(jobs, key=lambda j: (-j.weight, j.key))
    width = min(cores() if workers is None else workers, len(order))
    if width <= 0:
        for i, job in enumerate(order):
            now = time.perf_counter()
            job.limit = _allot(job, now, deadline, 1, sum(j.weight for j in order[i:]), [])
            job.result = milp.solve_part(*job.payload, time_limit=job.limit, threads=None)
            job.start = job.result.get("funded")
            job.seconds = time.perf_counter() - now
        return jobs
    threads = max(1, cores() // width)  # one hard part alone gets HiGHS's own parallel search
    procs = POOL.take(width)
    try:
        _dispatch(order, deadline, width, threads, procs)
    except BaseException:  # a worker may still be solving for this run: none of them goes back idle
        for w in procs:
            w.kill()
        raise
    POOL.give(procs)
    return jobs


def _dispatch(order: list[Job], deadline: float, width: int, threads: int, procs: list[_Proc]) -> None:
    """run's loop: the jobs on this run's own workers `procs`, the watchdog, the results."""
    pending = list(order)
    running: dict[int, tuple[Job, float, float]] = {}  # worker index -> (job, started, time limit)
    solving: dict[int, float] = {}  # worker index -> when its solver started (the watchdog's clock)
    free = list(range(width))
    overheads = [0.05]  # seconds a job takes beyond its solver time (model build, start, transfer)
    while pending or running:
        while pending and free:
            now = time.perf_counter()
            job = pending.pop(0)
            busy = [s + lim for s, lim in ((st, li) for _, st, li in running.values())]
            ov = sum(overheads[-20:]) / len(overheads[-20:])
            job.limit = _allot(job, now, deadline, width, job.weight + sum(j.weight for j in pending), busy,
                               ov * (len(pending) + 1))
            i = free.pop(0)
            if procs[i].threads not in (None, threads):
                _replace(procs, i)
            procs[i].threads = threads
            procs[i].send_conn.send((job.key, job.limit, threads, job.payload, time.time()))
            running[i] = (job, now, job.limit)
        conns = {procs[i].conn: i for i in running}
        watch = [_kill_at(running[i], solving[i], deadline) for i in running if i in solving]
        ready = wait(list(conns), timeout=max(0.0, min(watch) - time.perf_counter()) if watch else None)
        for conn in ready:
            i = conns[conn]
            job, started, _ = running[i]
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the worker died
                msg = (job.key, None)
                _replace(procs, i)
            if msg[0] == "start":  # the solver starts now; the start is kept in case it then overruns
                job.start = msg[2]
                solving[i] = time.perf_counter()
                continue
            running.pop(i)
            solving.pop(i, None)
            job.result = msg[1]
            job.seconds = time.perf_counter() - started
            if job.limit > 0:
                overheads.append(max(0.0, job.seconds - job.limit))
            free.append(i)
        now = time.perf_counter()
        for i, (job, started, limit) in list(running.items()):
            if i in solving and now > _kill_at((job, started, limit), solving[i], deadline):  # stuck: kill, use its start
                running.pop(i)
                solving.pop(i)
                _replace(procs, i)
                job.result, job.seconds = None, now - started
                free.append(i)
        free.sort()


if __name__ == "__main__":  # pragma: no cover - a worker process (see _Proc)
    _worker(_Duplex(int(sys.argv[1]), int(sys.argv[2])))
