"""The architecture's boundaries, checked on the source tree (an `ast` walk) and at import time.

- the library (`quota`) never imports a front end (`cli`, `web`) nor typer or rich;
- only `quota.planning` imports pulp or highspy, and importing anything else (the report, the CLI) does not
  load them transitively;
- no module imports another module's `_private` name, neither `from m import _x` nor `m._x`;
- the front ends hold no SQL and use neither sqlalchemy nor the driver: they call library functions.

Each rule is a function from a tree of sources to a list of violations, so the tests below can also show that
each rule fails on a file that breaks it.
"""
from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY, FRONT_ENDS = "quota", ("cli", "web")
SOLVERS = ("pulp", "highspy")
DATABASE = ("sqlalchemy", "sqlmodel", "psycopg", "sqlite3", "quota.store.driver")
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.S)


def sources(root: Path = ROOT) -> dict[str, ast.Module]:
    """Every Python module of the library and the front ends, by dotted name."""
    out = {}
    for top in (LIBRARY, *FRONT_ENDS):
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def _imports(module: str, tree: ast.Module) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, names) for every import statement, relative ones resolved."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")[: -node.level] if not module.endswith("__init__") else module.split(".")
                base = ".".join(package + ([base] if base else []))
            out.append((node.lineno, base, [a.name for a in node.names]))
    return out


def _within(name: str, roots) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


def library_imports_front_end(trees: dict[str, ast.Module]) -> list[str]:
    return [f"{m}:{line} imports {target}" for m, t in trees.items() if _within(m, (LIBRARY,))
            for line, target, _ in _imports(m, t) if _within(target, (*FRONT_ENDS, "typer", "rich", "click"))]


def solver_outside_planning(trees: dict[str, ast.Module]) -> list[str]:
    return [f"{m}:{line} imports {target}" for m, t in trees.items() if not _within(m, ("quota.planning",))
            for line, target, _ in _imports(m, t) if _within(target, SOLVERS)]


def private_imports(trees: dict[str, ast.Module]) -> list[str]:
    """`from m import _x`, and `m._x` where m is a module of ours imported under that name."""
    ours = set(trees)
    bad = []
    for m, t in trees.items():
        local_modules = {}
        for line, target, names in _imports(m, t):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and (target in ours or f"{target}.{n}" in ours):
                    bad.append(f"{m}:{line} imports {target}.{n}")
                if f"{target}.{n}" in ours:
                    local_modules[n] = f"{target}.{n}"
        for node in ast.walk(t):
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if a.asname and a.name in local_modules:
                        local_modules[a.asname] = local_modules[a.name]
        for node in ast.walk(t):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in local_modules and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                bad.append(f"{m}:{node.lineno} uses {local_modules[node.value.id]}.{node.attr}")
    return bad


def front_end_touches_database(trees: dict[str, ast.Module]) -> list[str]:
    bad = []
    for m, t in trees.items():
        if not _within(m, FRONT_ENDS):
            continue
        bad += [f"{m}:{line} imports {target}" for line, target, names in _imports(m, t)
                if _within(target, DATABASE) or any(_within(f"{target}.{n}", DATABASE) for n in names)]
        bad += [f"{m}:{node.lineno} holds SQL {node.value[:40]!r}" for node in ast.walk(t)
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)]
    return bad


RULES = [library_imports_front_end, solver_outside_planning, private_imports, front_end_touches_database]


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_the_tree_keeps_the_boundary(rule):
    assert rule(sources()) == []


BREAKS = {
    library_imports_front_end: {"quota/ledger/bad.py": "from rich.console import Console\n"},
    solver_outside_planning: {"quota/report/bad.py": "def f():\n    import highspy\n"},
    private_imports: {"quota/audit/bad.py": "from quota.ledger import posting\nx = posting._load_pairs\n",
                      "cli/bad.py": "from quota.ledger.posting import _load_pairs\n"},
    front_end_touches_database: {"cli/bad.py": "from sqlalchemy import text\nQ = 'SELECT 1 FROM lot'\n"},
}


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.__name__)
def test_each_rule_fails_on_a_tree_that_breaks_it(rule, tmp_path):
    for top in (LIBRARY, *FRONT_ENDS):
        if (ROOT / top).is_dir():
            for path in (ROOT / top).rglob("*.py"):
                target = tmp_path / path.relative_to(ROOT)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    for rel, text in BREAKS[rule].items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    found = set(rule(sources(tmp_path))) - set(rule(sources()))
    assert len(found) >= len(BREAKS[rule]) and all(".bad:" in f for f in found), found


def test_importing_the_rest_does_not_load_the_solvers():
    """Transitively, at import time: every library module outside planning, and the CLI, load neither pulp
    nor highspy (the report imports stored plans; the solver is loaded when a plan is solved)."""
    names = sorted(m for m in sources() if not _within(m, ("quota.planning",))
                   and not _within(m, ("quota.store.migrations",)) and not m.endswith("__main__"))
    code = ("import importlib, sys\n"
            f"for m in {names!r}:\n    importlib.import_module(m)\n"
            f"print(sorted(s for s in sys.modules if s.split('.')[0] in {SOLVERS!r}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
