"""Bounded work per request over real HTTP: upload bombs, body caps, concurrency limits (429 + Retry-After),
cancellation when the client leaves, and integers beyond 64 bits on every route."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi import HTTPException

from audiosearch.app.limits import Limit
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import copy_clips
from tests.indexer.test_long_files import real_recording
from tests.models.test_read_limit import silence

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, lite_model) -> Path:
    root = tmp_path_factory.mktemp("limits")
    copy_clips(shared_data, root / "lib", {"dog_bark": 2, "rain": 2})
    build_index(root / "lib", root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    return root / "idx"


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bombs")
    return {
        "opus": silence(root / "ten-minutes.opus", 600, fmt="OGG"),  # the issue's Ogg Opus of 48 kHz silence
        "flac": silence(root / "two-hours.flac", 2 * 3600),
    }


@pytest.fixture(scope="module")
def server(built, lite_model):
    with live_server(create_app(Settings(index_dir=built, admin_token=TOKEN), model=lite_model)) as url:
        yield url


def upload(url: str, path: Path, timeout: float = 120, **params: int) -> httpx.Response:
    files = {"file": (path.name, path.read_bytes(), "application/octet-stream")}
    return httpx.post(f"{url}/search/by-audio", files=files, params=params, timeout=timeout)


def gone(url: str, path: str, after_s: float, **kw: Any) -> None:
    """A client that gives up after `after_s` seconds (its connection closes)."""
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{url}{path}", timeout=after_s, **kw)


def metric(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    m = re.search(rf"^{name}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_until(cond: Any, timeout: float) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def cpu_seconds_over(seconds: float) -> float:
    """CPU this process (server threads included) uses in the next `seconds`: ~0 when no work is left."""
    t0 = time.process_time()
    time.sleep(seconds)
    return time.process_time() - t0


# -- the bomb -----------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["opus", "flac"])
def test_a_long_low_bitrate_upload_is_read_only_to_the_limit(server, bombs, kind: str) -> None:
    assert bombs[kind].stat().st_size < Settings().max_upload_bytes
    r = upload(server, bombs[kind], k=2)
    assert r.status_code == 200, r.text
    assert r.json()["audio"] == {"seconds": 30.0, "truncated": True, "max_seconds": 30.0}
    assert len(r.json()["results"]) == 2


def test_an_upload_bad_past_the_limit_is_never_decoded_there(server, built, shared_data, tmp_path, lite_model) -> None:
    """NaN 45 s into the upload: read to 30 s it answers; with the limit set to 60 s the read reaches it (422)."""
    path = real_recording(shared_data, 60.0, 16000, tmp_path / "nan.wav", subtype="FLOAT")
    wave, sr = sf.read(path, dtype="float32")
    wave[45 * sr] = np.nan
    sf.write(path, wave, sr, subtype="FLOAT")
    r = upload(server, path, k=1)
    assert r.status_code == 200 and r.json()["audio"]["truncated"], r.text
    with live_server(create_app(Settings(index_dir=built, max_query_seconds=60), model=lite_model)) as url:
        r = upload(url, path, k=1)
    assert r.status_code == 422 and "NaN" in r.json()["detail"] and "at 30 s" in r.json()["detail"]


# -- bodies ------------------------------------------------------------------------------------------------


def test_bodies_are_capped_and_uploads_hold_one_file(server, built) -> None:
    big = {"query": "dog", "filters": {"path_prefix": "x" * 1000}, "pad": "y" * (2 << 20)}
    r = httpx.post(f"{server}/search", json=big)
    assert r.status_code == 413 and r.json()["detail"], r.text
    clip = next((built.parent / "lib" / "rain").iterdir())
    two = [("file", (clip.name, clip.read_bytes(), "audio/ogg"))] * 2
    r = httpx.post(f"{server}/search/by-audio", files=two)
    assert r.status_code == 400 and "files" in r.json()["detail"].lower()
    many = [("file", (f"{i}.wav", b"RIFF", "audio/wav")) for i in range(500)]  # many tiny files in one form
    r = httpx.post(f"{server}/search/by-audio", files=many)
    assert r.status_code == 400 and "files" in r.json()["detail"].lower()
    nested = "[" * 200_000 + "]" * 200_000  # deeply nested JSON under the body cap
    for path in ("/search", "/search/batch"):
        r = httpx.post(f"{server}{path}", content=nested, headers={"content-type": "application/json"})
        assert 400 <= r.status_code < 500 and r.json()["detail"], (path, r.text)
    assert httpx.get(f"{server}/search", params={"q": "rain"}).status_code == 200


# -- concurrency limits and cancellation --------------------------------------------------------------------


def test_limit_admits_slots_plus_queue_then_429_with_retry_after() -> None:
    async def scenario() -> list[str]:
        limit, events = Limit("test", slots=1, queue=1, retry_after_s=7), []
        release = asyncio.Event()

        async def request(name: str) -> None:
            try:
                async with limit.hold():
                    events.append(f"{name} runs")
                    await release.wait()
            except HTTPException as err:
                events.append(f"{name} {err.status_code} Retry-After {err.headers['Retry-After']}")

        first, second = asyncio.create_task(request("a")), asyncio.create_task(request("b"))
        await asyncio.sleep(0.05)
        await request("c")  # a is running, b is waiting: c is refused at once
        release.set()
        await asyncio.gather(first, second)
        await request("d")  # all done: admitted again
        return events

    assert asyncio.run(scenario()) == ["a runs", "c 429 Retry-After 7", "b runs", "d runs"]


@pytest.mark.slow
def test_a_client_that_leaves_stops_the_work(built, bombs, lite_model) -> None:
    """One hour of audio would take the server tens of seconds; the client leaves after 2 s and the work stops
    at the next block: the handler records 499 only once its worker has stopped, and the process goes idle."""
    app = create_app(Settings(index_dir=built, max_query_seconds=3600), model=lite_model)
    with live_server(app) as url:
        files = {"file": ("bomb.flac", bombs["flac"].read_bytes(), "audio/flac")}
        gone(url, "/search/by-audio", 2.0, files=files)
        left = time.time()
        assert wait_until(
            lambda: (
                metric(url, "audiosearch_requests_total", method="POST", route="/search/by-audio", status="499") == 1
            ),
            timeout=10,
        )
        assert time.time() - left < 10
        assert metric(url, "audiosearch_work_in_flight", route="/search/by-audio") == 0
        assert cpu_seconds_over(1.0) < 0.5
        assert httpx.get(f"{url}/search", params={"q": "rain"}).status_code == 200


@pytest.mark.slow
def test_past_the_limit_by_audio_answers_429_and_nothing_is_left_running(built, bombs, lite_model) -> None:
    settings = Settings(index_dir=built, max_query_seconds=3600, concurrent_by_audio=1)  # 1 runs, 1 waits
    with live_server(create_app(settings, model=lite_model)) as url:
        files = {"file": ("bomb.flac", bombs["flac"].read_bytes(), "audio/flac")}
        clients = [
            threading.Thread(target=gone, args=(url, "/search/by-audio", 4.0), kwargs={"files": files})
            for _ in range(2)
        ]
        for c in clients:
            c.start()
        assert wait_until(lambda: metric(url, "audiosearch_work_in_flight", route="/search/by-audio") == 1, 10)
        r = httpx.post(f"{url}/search/by-audio", files=files, timeout=30)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2", r.text
        assert "query-by-example" in r.json()["detail"] and "1 run, 1 wait" in r.json()["detail"]
        for c in clients:
            c.join()
        assert wait_until(
            lambda: (
                metric(url, "audiosearch_requests_total", method="POST", route="/search/by-audio", status="499") == 2
            ),
            timeout=15,
        )
        assert metric(url, "audiosearch_work_in_flight", route="/search/by-audio") == 0
        assert cpu_seconds_over(1.0) < 0.5


def test_text_searches_past_their_limit_answer_429_and_free_their_slots(built, lite_model) -> None:
    settings = Settings(index_dir=built, concurrent_search=1, query_cache_size=0)  # no queue for text search
    with live_server(create_app(settings, model=lite_model)) as url:
        start = threading.Barrier(24, timeout=60)
        answers: list[httpx.Response] = []

        def one(i: int) -> None:
            with httpx.Client(base_url=url, timeout=60) as client:
                client.get("/healthz")  # connected before the burst, so the requests arrive together
                start.wait()
                answers.append(client.get("/search", params={"q": f"dog barking {i}", "k": 3}))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(24)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        after = httpx.post(f"{url}/search", json={"query": "rain", "k": 3}, timeout=60)
    statuses = sorted(r.status_code for r in answers)
    assert set(statuses) == {200, 429}, statuses
    shed = [r for r in answers if r.status_code == 429]
    assert all(r.headers["Retry-After"] == "1" and "text search" in r.json()["detail"] for r in shed)
    assert after.status_code == 200 and after.json()["results"]  # every slot was given back


@pytest.mark.slow
def test_evaluation_is_limited_and_stops_when_its_client_leaves(tmp_path, built, bombs, lite_model) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "long.flac").write_bytes(bombs["flac"].read_bytes())  # two hours: minutes of embedding
    (data / "captions.csv").write_text("path,caption\nlong.flac,silence\n")
    settings = Settings(index_dir=built, admin_token=TOKEN, train_data_root=data, jobs_dir=tmp_path / "jobs")
    body = {"model": "lite", "data": [{"csv": "captions.csv"}]}
    with live_server(create_app(settings, model=lite_model)) as url:
        first = threading.Thread(target=gone, args=(url, "/eval", 4.0), kwargs={"json": body, "headers": AUTH})
        first.start()
        assert wait_until(lambda: metric(url, "audiosearch_work_in_flight", route="/eval") == 1, 10)
        r = httpx.post(f"{url}/eval", json=body, headers=AUTH, timeout=30)
        assert r.status_code == 429 and r.headers["Retry-After"] == "30" and "evaluation" in r.json()["detail"]
        first.join()
        assert wait_until(
            lambda: metric(url, "audiosearch_requests_total", method="POST", route="/eval", status="499") == 1,
            timeout=30,
        )
        assert metric(url, "audiosearch_work_in_flight", route="/eval") == 0
        assert cpu_seconds_over(1.0) < 0.5


# -- integers beyond 64 bits on every route -----------------------------------------------------------------

HUGE = [2**63, 2**64, 1893638902116184726305443537294983168, -(2**64)]
ODD_FLOATS = ["1e400", "-1e400", "nan", "inf"]
VALID_PATH = {"clip_id": "1", "job_id": "abc123"}
VALID_QUERY = {"q": "dog"}
VALID_BODY = {
    "/search": {"query": "dog"},
    "/search/batch": {"queries": ["dog"]},
    "/admin/reload": {},
    "/train": {},
    "/eval": {"model": "lite", "data": []},
}


def _kind(schema: dict[str, Any]) -> str | None:
    kinds = {s.get("type") for s in schema.get("anyOf", [schema])} - {"null"}
    return next(iter(kinds)) if len(kinds) == 1 else None


def _call(client: httpx.Client, method: str, path: str, params: dict[str, Any], body: Any, upload: bytes) -> int:
    url = path.format(**{**VALID_PATH, **{k: v for k, v in params.items() if "{" + k + "}" in path}})
    query = {**VALID_QUERY, **{k: v for k, v in params.items() if "{" + k + "}" not in path}}
    if path == "/search/by-audio":
        return client.post(url, params=query, files={"file": ("a.ogg", upload, "audio/ogg")}).status_code
    return client.request(method, url, params=query, json=body).status_code


def test_integers_beyond_64_bits_and_odd_floats_never_give_a_500(server, built) -> None:
    clip = next((built.parent / "lib" / "rain").iterdir()).read_bytes()
    spec = httpx.get(f"{server}/openapi.json").json()
    checked = 0
    with httpx.Client(base_url=server, headers=AUTH, timeout=60) as c:
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                body = VALID_BODY.get(path) if method in ("post", "put") else None
                for p in op.get("parameters", []):
                    kind = _kind(p["schema"])
                    if kind == "integer":
                        assert "maximum" in p["schema"] and "minimum" in p["schema"], (path, p["name"])
                        for v in HUGE:
                            status = _call(c, method.upper(), path, {p["name"]: v}, body, clip)
                            assert status in (403, 404, 422), (method, path, p["name"], v, status)
                            checked += 1
                    elif kind == "number":
                        for v in ODD_FLOATS:
                            status = _call(c, method.upper(), path, {p["name"]: v}, body, clip)
                            assert status < 500, (method, path, p["name"], v, status)
        for path, body in VALID_BODY.items():
            for name, prop in _body_props(spec, path).items():
                if _kind(prop) == "integer":
                    assert "maximum" in prop and "minimum" in prop, (path, name)
                    for v in HUGE:
                        r = c.post(
                            path, content=json.dumps({**body, name: v}), headers={"content-type": "application/json"}
                        )
                        assert r.status_code == 422, (path, name, v, r.text)
                        checked += 1
    assert checked >= 30  # clip ids (2 routes), k and offset (3 routes), body k/offset


def _body_props(spec: dict[str, Any], path: str) -> dict[str, Any]:
    op = spec["paths"][path].get("post", {})
    schema = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    for s in schema.get("anyOf", [schema]):
        if "$ref" in s:
            return spec["components"]["schemas"][s["$ref"].rsplit("/", 1)[1]].get("properties", {})
    return {}
