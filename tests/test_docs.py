"""The documentation site builds with `mkdocs build --strict` (broken links and pages left out of the nav
fail it), its home page is the README, and no built page loads anything from another host."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytest.importorskip("mkdocs", reason="mkdocs-material is in the dev extra (pip install -e '.[dev]')")
pytest.importorskip("material", reason="mkdocs-material is in the dev extra (pip install -e '.[dev]')")

# a tag that makes the browser fetch: script src, link href (stylesheets, icons, preloads), img src
FETCHED = re.compile(r"<(?:script|link|img)\b[^>]*?\b(?:src|href)=\"([^\"]+)\"")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return out


def test_every_docs_page_is_built(site) -> None:
    pages = sorted(p.stem for p in (REPO / "docs").glob("*.md") if p.stem != "index")
    assert len(pages) >= 13
    for name in pages:
        assert (site / name / "index.html").is_file(), name
    assert (site / "img" / "search-page.png").is_file() and (site / "img" / "widget.png").is_file()


def test_home_page_is_the_readme(site) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "make demo" in html and "make test-all" in html and "AUDIOSEARCH_ADMIN_TOKEN" in html
    # the README's links into docs/ point at the built pages
    assert 'href="cli/"' in html and 'href="layout/"' in html and 'src="img/search-page.png"' in html
    assert 'href="docs/' not in html and 'src="docs/' not in html


def test_no_page_fetches_from_another_host(site) -> None:
    pages = list(site.rglob("*.html"))
    assert len(pages) >= 15
    for page in pages:
        html = page.read_text(encoding="utf-8")
        external = [u for u in FETCHED.findall(html) if re.match(r"(https?:)?//", u)]
        assert external == [], (page.relative_to(site), external)
        assert "fonts.googleapis.com" not in html and "fonts.gstatic.com" not in html
        assert 'class="mermaid"' not in html  # the theme would fetch mermaid.js from unpkg for it


def test_readme_is_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines < 250, lines
