"""/docs (Swagger UI) and /redoc load every asset from the app itself: they work with no network.

No model or index: the lifespan does not run, and the docs pages need neither.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from audiosearch.app.main import DOCS_ASSETS_URL, create_app
from audiosearch.app.settings import Settings


class _Assets(HTMLParser):
    """Every URL a page loads by itself: script src, link href, img src."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(("script", a["src"]))
        elif tag == "link" and a.get("href"):
            self.urls.append((f"link:{a.get('rel')}", a["href"]))
        elif tag == "img" and a.get("src"):
            self.urls.append(("img", a["src"]))


def assets(html: str) -> list[tuple[str, str]]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> TestClient:
    return TestClient(create_app(Settings(index_dir=tmp_path_factory.mktemp("docs") / "none")))


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        (
            "/docs",
            {
                ("script", f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js"),
                ("link:stylesheet", f"{DOCS_ASSETS_URL}/swagger-ui.css"),
                ("link:shortcut icon", f"{DOCS_ASSETS_URL}/favicon.png"),
            },
        ),
        (
            "/redoc",
            {
                ("script", f"{DOCS_ASSETS_URL}/redoc.standalone.js"),
                ("link:shortcut icon", f"{DOCS_ASSETS_URL}/favicon.png"),
            },
        ),
    ],
)
def test_docs_pages_load_only_local_assets(client, page, expected) -> None:
    r = client.get(page)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert set(assets(r.text)) == expected
    # nothing else in the page reaches out either (no Google fonts, no validator badge)
    assert not re.search(r"https?://", r.text), re.findall(r"https?://[^\s\"']+", r.text)
    assert "url: '/openapi.json'" in r.text or 'spec-url="/openapi.json"' in r.text


@pytest.mark.parametrize(
    ("name", "types", "marker"),
    [
        ("swagger-ui-bundle.js", ("text/javascript", "application/javascript"), "SwaggerUIBundle"),
        ("redoc.standalone.js", ("text/javascript", "application/javascript"), "Redoc"),
        ("swagger-ui.css", ("text/css",), ".swagger-ui"),
        ("favicon.png", ("image/png",), "PNG"),
    ],
)
def test_docs_assets_are_served(client, name, types, marker) -> None:
    r = client.get(f"{DOCS_ASSETS_URL}/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in types
    assert len(r.content) > 1000 and marker.encode() in r.content[:200_000]


def test_docs_pages_follow_the_root_path(tmp_path) -> None:
    """Behind a proxy that mounts the service under a prefix, the pages point at the prefixed assets."""
    app = create_app(Settings(index_dir=tmp_path / "none"))
    r = TestClient(app, root_path="/sounds").get("/docs")
    assert r.status_code == 200
    assert {url for _, url in assets(r.text)} == {
        f"/sounds{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
        f"/sounds{DOCS_ASSETS_URL}/swagger-ui.css",
        f"/sounds{DOCS_ASSETS_URL}/favicon.png",
    }


def test_docs_pages_are_not_in_the_schema(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths), sorted(paths)
