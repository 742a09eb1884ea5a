"""Run the README's example commands in the order shown and rewrite (or check) the output under each.

    .venv/bin/python -m scripts.readme            # check: exit 1 and print a diff when a block is stale
    .venv/bin/python -m scripts.readme --write    # rewrite the blocks in README.md from what the commands print

A block to run is a fenced block on the line after `<!-- readme-run: NAME -->`. Its lines that start with `$ `
are the commands; the lines after a command, up to the next command, are what that command printed (stdout and
stderr together, as a terminal shows them). All blocks run in README order, as one session, in a fresh
temporary folder holding a copy of `data/`, with no `QUOTA_*` variable from the caller's environment except
those of `ENV` (the pinned day, the terminal width, the actor): no `QUOTA_DB`, so the database is
`sqlite:///quota.db` in that folder. A command is split as a shell would split it, `# comments` dropped; only
the programs in `PROGRAMS` run, and no shell does.

Where a block shows less than everything, a command-line option does it (`--zone`, `--pollutant`), never an
edit. Two things change on every run and are compared masked (`MASKS`): the chain's head hash (each
transaction's booking time is hashed) and the solver's seconds. `--write` keeps a block as it is when it differs
from the new output only there, so regenerating does not churn the README.
"""
from __future__ import annotations

import difflib
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARK = re.compile(r"^<!-- readme-run: ([a-z0-9-]+) -->$")
# The environment the README states (section "A session"): the day the sample data suits, a terminal 100
# columns wide, the clerk's name on every transaction.
ENV = {"QUOTA_TODAY": "2026-11-30", "COLUMNS": "100", "QUOTA_ACTOR": "clerk"}
PROGRAMS = ("quota", "bean-check")
MASKS = [(re.compile(r"\b[0-9a-f]{64}\b"), "<hash>"),
         (re.compile(r"\b(highs|cbc) in [0-9]+(\.[0-9]+)? s\b"), r"\1 in <seconds> s")]
TIMEOUT_S = 300


@dataclass
class Block:
    name: str
    first: int                 # index of the block's first line inside the fence
    last: int                  # index of the closing fence
    commands: list[str]        # the `$ ` lines, without the `$ `
    old: str                   # the block's text as the README has it
    new: str = ""              # the block's text from the commands' output


def blocks(text: str) -> list[Block]:
    """Every marked block of the README text, in order."""
    lines = text.split("\n")
    found, names = [], set()
    for i, line in enumerate(lines):
        m = MARK.match(line.strip())
        if not m:
            continue
        name = m.group(1)
        if name in names:
            raise ValueError(f"README: two blocks are named {name!r}")
        names.add(name)
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            raise ValueError(f"README: the mark {name!r} is not followed by a fenced block")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise ValueError(f"README: block {name!r} is not closed")
        body = lines[i + 2:end]
        commands = [l[2:] for l in body if l.startswith("$ ")]
        if not commands:
            raise ValueError(f"README: block {name!r} has no `$ ` command")
        found.append(Block(name, i + 2, end, commands, "\n".join(body)))
    return found


def _program(name: str) -> str:
    """The program beside this Python (the project's virtualenv) when there is one, else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if not found:
        raise RuntimeError(f"{name} is not installed (install the project with its test extras)")
    return found


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUOTA_")}
    env.update(ENV)
    env["PYTHONUNBUFFERED"] = "1"  # stdout and stderr interleave as they were written
    return env


def run_command(line: str, cwd: Path, env: dict[str, str]) -> str:
    args = shlex.split(line, comments=True)
    if not args or args[0] not in PROGRAMS:
        raise ValueError(f"README runs only {', '.join(PROGRAMS)}: {line!r}")
    done = subprocess.run([_program(args[0]), *args[1:]], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    out = done.stdout.decode("utf-8", errors="replace")
    return "\n".join(l.rstrip() for l in out.rstrip().split("\n")) if out.strip() else ""


def render(commands: list[str], outputs: list[str]) -> str:
    """`$ command` then its output; a blank line after each command that printed something."""
    parts = []
    for i, (command, output) in enumerate(zip(commands, outputs)):
        parts.append(f"$ {command}")
        if output:
            parts.append(output)
            if i < len(commands) - 1:
                parts.append("")
    return "\n".join(parts)


def run(text: str, progress=None) -> list[Block]:
    """Run every marked block's commands, in README order, in one fresh folder; fill in each block's `new`."""
    found = blocks(text)
    env = environment()
    with tempfile.TemporaryDirectory(prefix="quota-readme-") as tmp:
        cwd = Path(tmp)
        shutil.copytree(ROOT / "data", cwd / "data")
        for block in found:
            outputs = []
            for command in block.commands:
                if progress:
                    progress(f"$ {command}")
                outputs.append(run_command(command, cwd, env))
            block.new = render(block.commands, outputs)
    return found


def masked(text: str) -> str:
    for pattern, replacement in MASKS:
        text = pattern.sub(replacement, text)
    return text


def stale(found: list[Block]) -> list[Block]:
    """The blocks whose text differs from what their commands printed (volatile parts masked)."""
    return [b for b in found if masked(b.old) != masked(b.new)]


def diff(block: Block) -> str:
    return "".join(difflib.unified_diff(block.old.splitlines(True), block.new.splitlines(True),
                                        f"README ({block.name})", f"printed ({block.name})"))


def rewrite(text: str, found: list[Block]) -> str:
    """The README with every stale block replaced by what its commands printed."""
    lines = text.split("\n")
    for block in sorted(stale(found), key=lambda b: b.first, reverse=True):
        lines[block.first:block.last] = block.new.split("\n")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    text = README.read_text(encoding="utf-8")
    found = run(text, progress=lambda line: print(line, file=sys.stderr))
    bad = stale(found)
    if "--write" in argv:
        README.write_text(rewrite(text, found), encoding="utf-8")
        print(f"README: {len(found)} block(s) run, {len(bad)} rewritten", file=sys.stderr)
        return 0
    for block in bad:
        sys.stdout.write(diff(block))
    print(f"README: {len(found)} block(s) run, {len(bad)} stale" +
          (" (run `.venv/bin/python -m scripts.readme --write`)" if bad else ""), file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
