"""The HTTP API end to end: real uvicorn, real index from real audio, real lite model."""

from __future__ import annotations

import io
import os
import re
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import copy_clips

TOKEN = "test-token-0123456789"


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, lite_model) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("api")
    lib = root / "lib"
    copy_clips(shared_data, lib, {"dog_bark": 3, "rooster": 3, "rain": 3, "helicopter": 2})
    build_index(lib, root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    return lib, root / "idx"


@pytest.fixture(scope="module")
def server(built, lite_model):
    app = create_app(Settings(index_dir=built[1], admin_token=TOKEN), model=lite_model)
    with live_server(app) as url:
        yield url


@pytest.fixture()
def client(server):
    with httpx.Client(base_url=server, timeout=30) as c:
        yield c


def test_get_and_post_search(client) -> None:
    r = client.get("/search", params={"q": "a dog barking", "k": 4})
    assert r.status_code == 200
    body = r.json()
    assert body["query"] == "a dog barking" and body["total"] == 11 and len(body["results"]) == 4
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert len({h["id"] for h in body["results"]}) == 4  # one per file
    hit = body["results"][0]
    assert hit["audio_url"] == f"/clips/{hit['id']}/audio" and hit["end"] > hit["start"] >= 0
    post = client.post("/search", json={"query": "a dog barking", "k": 4}).json()
    assert [h["id"] for h in post["results"]] == [h["id"] for h in body["results"]]
    page2 = client.get("/search", params={"q": "a dog barking", "k": 2, "offset": 2}).json()
    assert [h["id"] for h in page2["results"]] == [h["id"] for h in body["results"][2:4]]


def test_filters(client) -> None:
    r = client.post("/search", json={"query": "engine", "k": 10, "filters": {"path_prefix": "helicopter/"}})
    assert r.status_code == 200 and r.json()["total"] == 2
    assert all(h["path"].startswith("helicopter/") for h in r.json()["results"])
    r = client.get("/search", params={"q": "x", "min_duration": 7})
    assert r.json()["results"] == [] and r.json()["total"] == 0
    r = client.post("/search", json={"query": "x", "filters": {"min_duration": 5, "max_duration": 1}})
    assert r.status_code == 422 and "min_duration" in r.json()["detail"]


def test_batch_search_matches_single_queries(client) -> None:
    r = client.post("/search/batch", json={"queries": ["rain", "a rooster crowing"], "k": 3})
    assert r.status_code == 200
    responses = r.json()["responses"]
    single = client.get("/search", params={"q": "rain", "k": 3}).json()
    assert [h["id"] for h in responses[0]["results"]] == [h["id"] for h in single["results"]]
    assert responses[1]["query"] == "a rooster crowing"


def test_search_by_audio_finds_the_same_clip(client, built) -> None:
    lib, _ = built
    clip = sorted((lib / "rooster").iterdir())[0]
    r = client.post("/search/by-audio", params={"k": 1}, files={"file": (clip.name, clip.read_bytes(), "audio/ogg")})
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["path"] == f"rooster/{clip.name}"
    assert r.json()["results"][0]["score"] > 0.99


@pytest.mark.parametrize(
    ("files", "status", "detail"),
    [
        ({"file": ("x.txt", b"hello", "text/plain")}, 415, "unsupported file type"),
        ({"file": ("x.wav", b"", "audio/wav")}, 422, "empty"),
        ({"file": ("x.wav", os.urandom(4000), "audio/wav")}, 422, "decode"),
    ],
)
def test_bad_uploads(client, files, status: int, detail: str) -> None:
    r = client.post("/search/by-audio", files=files)
    assert r.status_code == status and detail in r.json()["detail"]


def test_upload_size_cap(built, lite_model) -> None:
    app = create_app(Settings(index_dir=built[1], max_upload_bytes=1000), model=lite_model)
    buf = io.BytesIO()
    sf.write(buf, np.zeros(16000, dtype="float32"), 16000, format="WAV")
    with live_server(app) as url:
        r = httpx.post(f"{url}/search/by-audio", files={"file": ("x.wav", buf.getvalue(), "audio/wav")})
    assert r.status_code == 413 and "larger than 1000" in r.json()["detail"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"q": ""}, "at least 1"),
        ({"q": "   "}, "empty"),
        ({"q": "dog\x00bark"}, "control"),
        ({"q": "x" * 1001}, "at most 1000"),
        ({"q": "dog", "k": 0}, "greater than or equal to 1"),
        ({"q": "dog", "k": -3}, "greater than or equal to 1"),
        ({"q": "dog", "k": 10**9}, "less than or equal to 100"),
        ({"q": "dog", "k": "many"}, "integer"),
        ({"q": "dog", "offset": -1}, "greater than or equal to 0"),
        ({}, "Field required"),
    ],
)
def test_bad_queries_get_422_with_a_message(client, params, fragment: str) -> None:
    r = client.get("/search", params=params)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_odd_but_valid_queries(client) -> None:
    for q in ["狗在叫", "🐕 woof", "a" * 1000, "ä\tb"]:
        assert client.get("/search", params={"q": q, "k": 1}).status_code == 200
    assert client.get("/search", params={"q": "dog", "offset": 500}).json()["results"] == []


def test_malformed_bodies(client) -> None:
    r = client.post("/search", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "detail" in r.json()
    r = client.post("/search", content=b"query=dog", headers={"content-type": "text/plain"})
    assert r.status_code == 422
    r = client.post("/search", json={"query": "dog", "unknown": 1})
    assert r.status_code == 422 and "unknown" in r.json()["detail"]
    r = client.post("/search/batch", json={"queries": []})
    assert r.status_code == 422


def test_clip_metadata_and_audio_with_ranges(client, built) -> None:
    hit = client.get("/search", params={"q": "rain", "k": 1}).json()["results"][0]
    meta = client.get(f"/clips/{hit['id']}").json()
    assert meta["path"] == hit["path"] and meta["windows"] == 1 and meta["sample_rate"] == 44100
    full = client.get(hit["audio_url"])
    assert full.status_code == 200 and full.headers["content-type"] == "audio/ogg"
    assert full.content == (built[0] / hit["path"]).read_bytes()
    part = client.get(hit["audio_url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == full.content[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(full.content)}"
    assert client.get(hit["audio_url"], headers={"Range": "bytes=999999999-"}).status_code == 416


@pytest.mark.parametrize("path", ["/clips/999999", "/clips/999999/audio"])
def test_unknown_clip_is_404(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and "999999" in r.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/clips/..%2F..%2Fetc%2Fpasswd/audio",
        "/clips/%2Fetc%2Fpasswd/audio",
        "/clips/../../etc/passwd",
        "/clips/1/../../../etc/passwd",
    ],
)
def test_paths_cannot_leave_the_library(client, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (404, 422)
    assert b"root:" not in r.content


def test_symlink_swapped_in_after_indexing_is_not_served(shared_data, tmp_path, lite_model) -> None:
    lib = tmp_path / "lib"
    copy_clips(shared_data, lib, {"rain": 2})
    outside = tmp_path / "secret.ogg"
    outside.write_bytes(b"secret")
    (lib / "escape.ogg").symlink_to(outside)  # never indexed: points outside the library
    build_index(lib, tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False))
    victim = sorted((lib / "rain").iterdir())[0]
    app = create_app(Settings(index_dir=tmp_path / "idx"), model=lite_model)
    with live_server(app) as url:
        hits = httpx.get(f"{url}/search", params={"q": "rain"}).json()["results"]
        assert {h["path"] for h in hits} == {f"rain/{p.name}" for p in (lib / "rain").iterdir()}
        victim.unlink()
        victim.symlink_to(outside)
        vid = next(h["id"] for h in hits if h["path"].endswith(victim.name))
        r = httpx.get(f"{url}/clips/{vid}/audio")
    assert r.status_code == 404 and b"secret" not in r.content


def test_health_ready_metrics_index(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.get("/search", params={"q": "rain"})
    m = client.get("/metrics").text
    assert 'audiosearch_requests_total{method="GET",route="/search",status="200"}' in m
    assert "audiosearch_index_files 11.0" in m and "audiosearch_request_seconds_bucket" in m
    info = client.get("/index").json()
    assert info["files"] == 11 and info["windows"] == 11
    assert info["manifest"]["model"]["name"] == "fusion"  # `lite` names the default profile's checkpoint


def _cache_counts(client: httpx.Client) -> tuple[float, float]:
    m = client.get("/metrics").text
    assert "# TYPE audiosearch_query_cache_hits_total counter" in m  # counts that only grow: counters, not gauges
    hits, misses = (re.search(rf"^audiosearch_query_cache_{n}_total (\S+)$", m, re.M) for n in ("hits", "misses"))
    return float(hits.group(1)), float(misses.group(1))


def test_query_cache_counts_are_counters(client) -> None:
    hits, misses = _cache_counts(client)
    for _ in range(2):  # a query never asked before: one miss, then one hit
        assert client.get("/search", params={"q": "a cache counter check"}).status_code == 200
    assert _cache_counts(client) == (hits + 1, misses + 1)


def test_openapi_documents_every_route(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for p in [
        "/search",
        "/search/batch",
        "/search/by-audio",
        "/clips/{clip_id}",
        "/clips/{clip_id}/audio",
        "/healthz",
        "/readyz",
        "/metrics",
        "/index",
        "/admin/reload",
    ]:
        assert p in paths
    assert client.get("/docs").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-000000000"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
    ],
)
def test_admin_needs_the_token(client, headers) -> None:
    r = client.post("/admin/reload", headers=headers)
    assert r.status_code == 401 and r.json()["detail"] == "missing or wrong bearer token"


def test_admin_disabled_without_a_token(built, lite_model) -> None:
    app = create_app(Settings(index_dir=built[1]), model=lite_model)
    with live_server(app) as url:
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 403 and "disabled" in r.json()["detail"]


def test_reload_while_requests_run(built, shared_data, lite_model, tmp_path) -> None:
    lib, idx = built
    app = create_app(Settings(index_dir=idx, admin_token=TOKEN), model=lite_model)
    statuses: list[int] = []
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                statuses.append(c.get("/search", params={"q": "rain", "k": 3}).status_code)

    with live_server(app) as url:
        threads = [threading.Thread(target=hammer, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        before = httpx.get(f"{url}/index").json()
        copy_clips(shared_data, lib, {"sea_waves": 1})
        build_index(lib, idx, lite_model, IndexOptions(workers=0, progress=False))
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        after = httpx.get(f"{url}/index").json()
        stop.set()
        for t in threads:
            t.join()
    assert r.status_code == 200 and after["files"] == before["files"] + 1
    assert after["snapshot"] != before["snapshot"]
    assert statuses and set(statuses) == {200}, f"{len(statuses)} requests"


def test_reload_to_a_broken_index_keeps_serving_the_old_one(client, tmp_path) -> None:
    (tmp_path / "CURRENT").write_text("nope")
    r = client.post("/admin/reload", json={"index_dir": str(tmp_path)}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 503 and "missing or incomplete" in r.json()["detail"]
    assert client.get("/search", params={"q": "rain"}).status_code == 200


def test_corrupt_index_at_start_is_not_ready_with_a_reason(tmp_path, lite_model) -> None:
    (tmp_path / "CURRENT").write_text("gone")
    app = create_app(Settings(index_dir=tmp_path), model=lite_model)
    with live_server(app) as url:
        assert httpx.get(f"{url}/healthz").status_code == 200
        r = httpx.get(f"{url}/readyz")
        assert r.status_code == 503 and "missing or incomplete" in r.json()["detail"]
        s = httpx.get(f"{url}/search", params={"q": "dog"})
        assert s.status_code == 503 and "not loaded" in s.json()["detail"]


def test_every_bad_audio_kind_uploaded_for_query_by_example(client, shared_data, tmp_path) -> None:
    """The indexer's bad-file matrix, uploaded instead: 422 with the reason, or results for odd but valid audio."""
    from tests.indexer.test_faults import INDEXED, MATRIX, bad_library

    lib = bad_library(shared_data, tmp_path)
    for name, outcome in MATRIX.items():
        path = lib / name
        if path.is_symlink():  # symlink cases: an upload is bytes, there is no path to follow
            continue
        r = client.post("/search/by-audio", files={"file": (name, path.read_bytes(), "application/octet-stream")})
        if outcome == INDEXED:
            assert r.status_code == 200 and r.json()["results"], (name, r.text)
        else:
            assert r.status_code == 422 and "Traceback" not in r.text, (name, r.text)
            assert r.json()["detail"], name


def test_huge_queries_and_every_unicode_plane(client, server) -> None:
    import http.client
    from urllib.parse import quote, urlsplit

    big = "dog " * 25_000  # 100 kB
    url = urlsplit(server)  # httpx refuses such a URL itself, so send it raw
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    conn.request("GET", "/search?q=" + quote(big))
    raw = conn.getresponse()
    assert 400 <= raw.status < 500 and b"Traceback" not in raw.read()
    conn.close()
    r = client.post("/search", json={"query": big})
    assert r.status_code == 422 and "at most 1000" in r.json()["detail"]
    # one assigned, printable character from each plane that has them (BMP, SMP, SIP, TIP, SSP)
    for ch in ["\u00e9", "\U0001f415", "\U00020000", "\U00030000", "\U000e0100"]:
        r = client.get("/search", params={"q": f"dog {ch}", "k": 1})
        assert r.status_code == 200, (hex(ord(ch)), r.text)
    for private in ["\U000f0000", "\U00100000"]:  # private-use planes: still just text
        assert client.post("/search", json={"query": f"dog {private}", "k": 1}).status_code == 200
    bad_utf8 = b'{"query": "dog \xed\xa0\x80"}'  # an encoded lone surrogate is not valid UTF-8
    r = client.post("/search", content=bad_utf8, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"], r.text
