"""`quota serve --workers N`: uvicorn's workers, each listening on a socket of its own.

uvicorn's own `--workers` has every worker accept from one shared listening socket, and the worker that wakes
first takes a whole burst of new connections (its event loop accepts until none is left): under the load
bench every client's keep-alive connection was served by one of the two workers, which ran on one core while
the other idled (docs/performance.md, "Web workspace"). Here each worker gets its own socket, all bound to
the same address with SO_REUSEPORT, and the kernel spreads new connections over them by their addresses.
uvicorn's supervisor still starts, watches, restarts and stops the workers: it is given one worker and that
worker's socket at a time. Without SO_REUSEPORT (not Linux or BSD): uvicorn's shared socket, as before.
"""
from __future__ import annotations

import logging
import socket
import sys

import uvicorn
from uvicorn.supervisors.multiprocess import Multiprocess, Process

STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot start (uvicorn.main.STARTUP_FAILURE)
log = logging.getLogger("uvicorn.error")


def listening_sockets(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` TCP sockets bound to (host, port) with SO_REUSEPORT (port 0: the port the first was given)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sockets: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family=family)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
            port = sock.getsockname()[1]
            sock.set_inheritable(True)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class SpreadWorkers(Multiprocess):
    """uvicorn's supervisor over workers that each have their own listening socket: the supervisor's loops
    (keep alive, restart on SIGHUP) run over one worker at a time, with that worker's socket, so a worker
    restarted after a crash takes the socket of the one it replaces."""

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]):
        super().__init__(config, sockets=[])
        self.own = sockets

    def init_processes(self) -> None:
        for sock in self.own:
            process = Process(self.config, [sock])
            process.start()
            self.processes.append(process)

    def _each(self, step) -> None:
        everyone, self.processes = self.processes, []
        try:
            for i, sock in enumerate(self.own):
                self.processes, self.sockets = [everyone[i]], [sock]
                step()
                everyone[i] = self.processes[0]
        finally:
            self.processes, self.sockets = everyone, []

    def keep_subprocess_alive(self) -> None:
        self._each(super().keep_subprocess_alive)

    def restart_all(self) -> None:
        self._each(super().restart_all)

    def handle_ttin(self) -> None:  # a worker more or fewer would need a socket more or fewer: not offered
        log.info("Received SIGTTIN: the number of workers is fixed (quota serve --workers); restart to change it.")

    def handle_ttou(self) -> None:
        log.info("Received SIGTTOU: the number of workers is fixed (quota serve --workers); restart to change it.")


def run(app: str, *, host: str, port: int, workers: int, **options) -> None:
    """uvicorn.run(app, factory=True, ...), with one listening socket per worker when there are several."""
    if workers < 2 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(app, factory=True, host=host, port=port, workers=workers, **options)
        return
    config = uvicorn.Config(app, factory=True, host=host, port=port, workers=workers, **options)
    try:
        sockets = listening_sockets(host, port, workers)
    except OSError as exc:
        log.error(exc)
        sys.exit(STARTUP_FAILURE)
    log.info("Uvicorn running on http%s://%s:%d with %d workers, a listening socket each (Press CTRL+C to quit)",
             "s" if config.is_ssl else "", host, sockets[0].getsockname()[1], workers)
    try:
        SpreadWorkers(config, sockets).run()
    except KeyboardInterrupt:  # pragma: no cover - as uvicorn.run
        pass
