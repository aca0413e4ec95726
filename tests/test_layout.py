"""The packages depend one way (docs/layout.md): core <- models <- indexer <- app, and training uses models.
Read from every import statement, lazy ones inside functions included."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import REPO

ALLOWED = {  # package -> the packages it may import
    "core": set(),
    "models": {"core"},
    "indexer": {"core", "models"},
    "training": {"core", "models"},
    "app": {"core", "models", "indexer", "training"},
}


def _imports(path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
        names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
        found |= {n.split(".")[1] for n in names if n.startswith("audiosearch.") and n.count(".") >= 1}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_go_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)} imports audiosearch.{other}"
        for path in (REPO / package).rglob("*.py")
        for other in _imports(path) - ALLOWED[package] - {package}
    }
    assert not wrong, sorted(wrong)
