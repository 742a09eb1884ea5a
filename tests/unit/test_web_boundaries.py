"""The web front end adds no business logic and touches no database directly: no SQL in web/, no sqlalchemy,
sqlmodel or driver imports, no private names of the library; and the library never imports the web."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL = re.compile(r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+TABLE)\b", re.I | re.S)
FORBIDDEN = ("sqlalchemy", "sqlmodel", "psycopg", "sqlite3", "quota.store.driver", "alembic")


def sources(folder: str):
    return sorted((ROOT / folder).rglob("*.py"))


def test_the_web_contains_no_sql_and_imports_no_database_layer():
    assert sources("web"), "web/ not found"
    for path in sources("web"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                assert not SQL.search(node.value), f"{path.name}: SQL in a front end: {node.value[:60]!r}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert not name.startswith(FORBIDDEN), f"{path.name} imports {name}"
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("quota"):
                    private = [a.name for a in node.names if a.name.startswith("_")]
                    assert not private, f"{path.name} imports private {private} from {node.module}"
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
                base = node.value
                if isinstance(base, ast.Name) and base.id in {"accounts", "audit", "quota_ops", "plans", "projects",
                                                              "report", "db", "migrate", "i18n"}:
                    raise AssertionError(f"{path.name} uses the library's private {base.id}.{node.attr}")
    for path in (ROOT / "web" / "templates").glob("*.html"):
        assert not SQL.search(path.read_text(encoding="utf-8")), path.name


def test_the_library_never_imports_the_web_or_its_framework():
    for path in sources("quota"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for name in names:
                    assert not name.startswith(("web", "fastapi", "starlette", "uvicorn", "jinja2")), \
                        f"{path.relative_to(ROOT)} imports {name}"


def test_templates_are_served_from_the_package_with_no_network_resource():
    for path in list((ROOT / "web" / "templates").glob("*.html")) + list((ROOT / "web" / "static").glob("*")):
        body = path.read_text(encoding="utf-8")
        assert "http://" not in body and "https://" not in body and "//cdn" not in body, path.name
        assert "<script" not in body, path.name  # pages work without JavaScript
