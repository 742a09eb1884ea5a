"""The README stays true: its test command is CI's, and every command is documented with help."""
import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

import pytest
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


# ------------------------------------------------------------ the README's output blocks (scripts/readme.py)

def _fences(text: str):
    """(line index of the opening fence, the line before it, the block's lines) for every fenced block."""
    lines, i = text.split("\n"), 0
    while i < len(lines):
        if lines[i].startswith("```"):
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            yield i, lines[i - 1] if i else "", lines[i + 1:end]
            i = end
        i += 1


def test_every_example_with_output_in_the_readme_is_a_checked_block():
    from scripts import readme
    marked = 0
    for i, before, body in _fences(README):
        if any(line.startswith("$ ") for line in body):
            assert readme.MARK.match(before.strip()), f"README line {i + 1}: a `$ ` example not marked readme-run"
            marked += 1
    assert marked == len(readme.blocks(README)) >= 8


@pytest.mark.slow
def test_readme_output_blocks_are_what_their_commands_print():
    """Runs every marked block's commands in order, once, in a fresh folder on the pinned day (about half a
    minute), and fails when a block differs from what they print; then shows that an edited block fails."""
    from scripts import readme
    found = readme.run(README)
    stale = readme.stale(found)
    assert not stale, "README output blocks are stale: run `.venv/bin/python -m scripts.readme --write`\n" + \
        "\n".join(readme.diff(b) for b in stale)
    # the check can fail: one changed figure in a block, or a line dropped from it, is found
    plan = next(b for b in found if b.name == "plan")
    edited = [dataclasses.replace(plan, old=re.sub(r"objective (\d+)", lambda m: f"objective {int(m[1]) + 1}",
                                                   plan.old, count=1)),
              dataclasses.replace(plan, old="\n".join(plan.old.split("\n")[:-3]))]
    assert readme.stale(edited) == edited
    # while what changes on every run (the head hash, the solver's seconds) is not a difference
    session = next(b for b in found if b.name == "session")
    other = dataclasses.replace(session, old=re.sub(r"[0-9a-f]{64}", "0" * 64, session.old))
    assert other.old != session.old and readme.stale([other]) == []


# ------------------------------------------------------------ docs cite only what is in the repository

DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::(\w+)")
CODE_PATH = re.compile(r"(?<![\w/.])((?:quota|cli|tests|bench|scripts|docs|data)/[\w/.-]*\w\.(?:py|md|toml|csv))\b")


def test_design_names_an_existing_test_for_every_invariant():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    section = design.split("## Invariants and the tests that check them", 1)[1].split("\n## ", 1)[0]
    rows = [l for l in section.splitlines() if re.match(r"^\| \d+ \|", l)]
    assert len(rows) >= 20
    for row in rows:
        assert TEST_REF.search(row), f"invariant without a test: {row[:80]}"
    for doc in DOCS:
        for path, name in TEST_REF.findall(doc.read_text(encoding="utf-8")):
            source = ROOT / path
            assert source.is_file(), f"{doc.name} names {path}, which does not exist"
            assert re.search(rf"^(async )?def {name}\(", source.read_text(encoding="utf-8"), re.M), \
                f"{doc.name} names {path}::{name}, which does not exist"


def _prose(path: Path) -> str:
    """A module's docstrings and comments: where it cites other files (its strings may name made-up ones)."""
    text = path.read_text(encoding="utf-8")
    nodes = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    docs = [ast.get_docstring(n) or "" for n in ast.walk(ast.parse(text)) if isinstance(n, nodes)]
    comments = [tok.string for tok in tokenize.generate_tokens(io.StringIO(text).readline)
                if tok.type == tokenize.COMMENT]
    return "\n".join(docs + comments)


def test_docs_and_code_cite_only_what_is_in_the_repository():
    """No citation of the design document outside the repository (DESIGN and a section number); every
    repository file a module, test or bench names exists (a test once cited a bench script never written),
    and so does every repository path the docs name in backticks."""
    sources = [p for top in ("quota", "cli", "tests", "bench", "scripts") for p in (ROOT / top).rglob("*.py")]
    for path in [*sources, *DOCS]:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bDESIGN \d", text), f"{path.relative_to(ROOT)} cites DESIGN, not in the repository"
        for cited in CODE_PATH.findall(_prose(path) if path.suffix == ".py" else text):
            assert (ROOT / cited).exists(), f"{path.relative_to(ROOT)} cites {cited}, which does not exist"
    tops = ("quota/", "cli/", "tests/", "bench/", "data/", "docs/", "scripts/", ".ci/")
    for doc in DOCS:
        assert not re.search(r"\b[Ii]ssue \d", doc.read_text(encoding="utf-8")), f"{doc.name} cites the issue tracker"
        for token in re.findall(r"`([^`\s]+)`", doc.read_text(encoding="utf-8")):
            path = token.split("::")[0]
            if path.startswith(tops) and not re.search(r"[<>*…{}]", path):
                assert (ROOT / path).exists(), f"{doc.name} cites {path}, which does not exist"


def _anchors(text: str) -> set[str]:
    """GitHub's anchors for the headings outside fenced blocks."""
    out, fenced = set(), False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return out


def test_links_between_the_docs_resolve():
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://")):
                continue
            path, _, anchor = target.partition("#")
            linked = (doc.parent / path).resolve() if path else doc
            assert linked.exists(), f"{doc.name} links to {target}, which does not exist"
            if anchor:
                assert anchor in _anchors(linked.read_text(encoding="utf-8")), \
                    f"{doc.name} links to {target}: no such heading"
