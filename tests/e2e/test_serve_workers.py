"""`quota serve --workers N`: each worker listens on a socket of its own (SO_REUSEPORT), so a burst of new
connections is spread over the workers (with uvicorn's one shared socket, one worker took them all); a worker
killed is restarted by the supervisor on its socket. Linux only (reads /proc)."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import DATA, ROOT
from tests.e2e.test_web_browser import free_port
from web import serving

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists() or not hasattr(socket, "SO_REUSEPORT"),
                                reason="needs Linux's /proc and SO_REUSEPORT")


def test_the_listening_sockets_share_one_port():
    sockets = serving.listening_sockets("127.0.0.1", 0, 3)
    try:
        ports = {s.getsockname()[1] for s in sockets}
        assert len(ports) == 1 and len(sockets) == 3
        assert all(s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) for s in sockets)
    finally:
        for s in sockets:
            s.close()


def children(pid: int) -> list[int]:
    """The server's worker processes (not multiprocessing's resource tracker)."""
    kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sorted(int(k) for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes())


def established(pid: int, port: int) -> int:
    """TCP connections of process `pid` accepted on local `port` (IPv4), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "01" and int(local.split(":")[1], 16) == port and inode in inodes:
            n += 1
    return n


def listening_on(port: int) -> set[str]:
    """The addresses with a socket listening on `port` (IPv4 and IPv6), from /proc."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, _, hexport = fields[1].partition(":")
            if fields[3] == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def spread(port: int, workers: list[int], count: int = 16) -> dict[int, int]:
    """Open `count` keep-alive connections at once, make a request on each, and count them per worker."""
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(count)]
    try:
        for c in conns:
            c.connect()
        for c in conns:
            c.request("GET", "/login")
            assert c.getresponse().read()
        return {w: established(w, port) for w in workers}
    finally:
        for c in conns:
            c.close()


def shared(port: int, workers: list[int], tries: int = 3) -> dict[int, int]:
    """`spread` until all 16 connections are counted and each worker has some, at most `tries` times: on a slow,
    busy machine a first burst at a worker still starting may outlast uvicorn's keep-alive (5 s), and an idle
    connection closed before it is counted. With one worker taking every connection (uvicorn's shared socket),
    every try fails; by chance, 16 connections all land on one of two sockets once in 2**15 tries."""
    for _ in range(tries):
        counts = spread(port, workers)
        if sum(counts.values()) == 16 and min(counts.values()) >= 1:
            break
    return counts


def wait_for(predicate, seconds: float = 30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_two_workers_share_a_burst_of_connections_and_a_killed_one_comes_back(db_url):
    url = db_url
    assert CliRunner().invoke(app, ["--db", url, "init", "--rules", str(DATA / "rules.toml")]).exit_code == 0
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "cli", "--db", url, "serve", "--port", str(port), "--workers", "2"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        def answers():
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                c.request("GET", "/login")
                return c.getresponse().status == 200
            except OSError:
                return False
        wait_for(answers)
        assert listening_on(port) == {"0100007F"}  # no --host: 127.0.0.1 only (this machine), never 0.0.0.0
        workers = children(server.pid)
        assert len(workers) == 2
        counts = shared(port, workers)
        assert sum(counts.values()) == 16 and min(counts.values()) >= 1, counts  # both workers took some

        os.kill(workers[0], signal.SIGKILL)  # a worker dies: the supervisor starts another on its socket
        replaced = wait_for(lambda: (kids := children(server.pid)) and len(kids) == 2 and workers[0] not in kids
                            and kids)
        wait_for(answers)
        time.sleep(1.0)  # the new worker serving
        counts = shared(port, replaced)
        assert sum(counts.values()) == 16 and min(counts.values()) >= 1, counts
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
