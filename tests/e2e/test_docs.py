"""The README stays true: its test command is CI's, and every command is documented with help."""
import re

import typer.main

from cli.main import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _commands():
    group = typer.main.get_command(app)
    for name, cmd in sorted(group.commands.items()):
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub_name, sub in sorted(subs.items()):
                yield f"{name} {sub_name}", sub
        else:
            yield name, cmd


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = [l for l in ci.splitlines() if l.startswith("python3 -m venv")][0]
    first_screen = "\n".join(README.splitlines()[:20])
    assert command.strip() in first_screen
    assert "quota demo" in first_screen


def test_every_command_has_help_and_is_in_the_readme():
    names = []
    for name, cmd in _commands():
        names.append(name)
        assert (cmd.help or "").strip(), f"quota {name} has no help"
        assert f"`quota {name}" in README, f"quota {name} is not documented in the README"
    assert len(names) >= 15


def test_readme_shows_only_real_commands():
    known = {name for name, _ in _commands()}
    for line in re.findall(r"^\$ quota (.+)$", README, flags=re.M):
        words = line.split()
        while words and words[0].startswith("--"):  # global options before the command
            words = words[2:]
        assert words[0] in known or " ".join(words[:2]) in known, line


def test_readme_command_reference_is_generated_from_the_cli():
    from cli import docs
    assert docs.START in README and docs.END in README, "README lacks the generated reference markers"
    assert docs.current_readme_block(README) == docs.reference(), \
        "README command reference is stale: run `.venv/bin/python -m cli.docs --write`"


def test_every_command_help_has_an_example():
    for name, cmd in _commands():
        assert "Example:" in (cmd.help or ""), f"quota {name} --help has no example"
