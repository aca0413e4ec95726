"""The search page, the widget script and CORS over plain HTTP (no model or index needed: the lifespan does not run)."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from audiosearch.app.main import STATIC, create_app
from audiosearch.app.settings import Settings

ALLOWED = "https://partner.example"


@pytest.fixture()
def client(tmp_path) -> TestClient:
    # no `with`: the lifespan (model and index loading) does not run; the static routes need neither
    return TestClient(create_app(Settings(index_dir=tmp_path / "none", cors_origins=[ALLOWED, "http://localhost:9"])))


def test_page_has_an_accessible_search_box(client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    assert html.lstrip().lower().startswith("<!doctype html>") and '<html lang="en">' in html
    box = re.search(r"<input[^>]*\bid=\"q\"[^>]*>", html)
    assert box, "no search box"
    for attr in ('type="search"', 'name="q"', "autofocus"):
        assert attr in box.group(0)
    assert '<label for="q">' in html and 'role="search"' in html
    assert 'role="status"' in html and 'role="alert"' in html  # results and errors are announced
    assert '<audio preload="none">' in html  # played by the row's labelled button, Space, or a waveform click
    assert '<button class="play" type="button" data-role="play">' in html
    assert '<label for="example">' in html and 'id="example" name="example" type="file"' in html


@pytest.mark.parametrize("name", ["index.html", "widget.js"])
def test_static_files_work_offline_and_never_inject_html(name) -> None:
    text = (STATIC / name).read_text(encoding="utf-8")
    # no CDN or other external resource (https:// appears only in the widget's usage comment)
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", code), "external resource"
    assert "@import" not in code and "http://" not in code and "https://" not in code
    # results are rendered with textContent/attributes only
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code, sink


def test_widget_script(client) -> None:
    r = client.get("/widget.js")
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    js = r.text
    assert "AudioSearchWidget" in js and "document.currentScript" in js and "attachShadow" in js
    assert 'data-target="#' in js  # usage documented at the top
    assert js.lstrip().startswith("/*")


def test_cors_allows_only_configured_origins(client) -> None:
    ok = client.get("/healthz", headers={"Origin": ALLOWED})
    assert ok.status_code == 200 and ok.headers.get("access-control-allow-origin") == ALLOWED
    other = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert other.status_code == 200 and "access-control-allow-origin" not in other.headers
    # the widget's calls: a simple GET (no preflight); its audio is fetched by an <audio> element
    search = client.get("/search", params={"q": "rain"}, headers={"Origin": ALLOWED})
    assert search.headers.get("access-control-allow-origin") == ALLOWED  # even on an error (index not loaded)
    pre = client.options("/search", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 200 and pre.headers.get("access-control-allow-origin") == ALLOWED
    bad = client.options("/search", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert bad.status_code == 400 and "access-control-allow-origin" not in bad.headers


def test_no_cors_headers_without_configured_origins(tmp_path) -> None:
    client = TestClient(create_app(Settings(index_dir=tmp_path / "none")))
    r = client.get("/healthz", headers={"Origin": ALLOWED})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


def test_settings_read_comma_separated_origins(monkeypatch) -> None:
    monkeypatch.setenv("AUDIOSEARCH_CORS_ORIGINS", ALLOWED)
    assert Settings().cors_origins == [ALLOWED]
    monkeypatch.setenv("AUDIOSEARCH_CORS_ORIGINS", f"{ALLOWED}, http://localhost:8080")
    assert Settings().cors_origins == [ALLOWED, "http://localhost:8080"]
