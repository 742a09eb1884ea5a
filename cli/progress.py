"""Progress on stderr for long work, only when stderr is a terminal (so piped and --json output stay clean)."""
from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator, Optional

Callback = Callable[[str, int, Optional[int]], None]


@contextlib.contextmanager
def reporter() -> Iterator[Callback | None]:
    """Yield a callback(stage, done, total) drawing a rich progress bar, or None when not a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), transient=True)
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int | None) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress:
        yield update
