"""More like this: GET /clips/{id}/similar and `audiosearch search --like`, and the CLI's agreement with HTTP
(one SearchResponse document, the same k limit, the same words for an empty query). Real uvicorn, a real index
of real audio, the real lite model; the CLI as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from audiosearch.app.main import create_app
from audiosearch.app.schemas import SearchResponse
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, Searcher, build_index
from tests.app.live import live_server
from tests.conftest import CLI, REPO, copy_clips


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, lite_model) -> tuple[Path, Path]:
    """Ten single-window clips and one longer file (several windows) made of some of them."""
    root = tmp_path_factory.mktemp("similar")
    lib = root / "lib"
    clips = copy_clips(shared_data, lib, {"dog_bark": 3, "rooster": 3, "rain": 2, "helicopter": 2})
    parts = [sf.read(p, dtype="float32", always_2d=True) for p in clips[::3]]
    rate = parts[0][1]
    (lib / "long").mkdir()
    sf.write(lib / "long" / "mix.wav", np.concatenate([a.mean(axis=1) for a, sr in parts if sr == rate]), rate)
    build_index(lib, root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    return lib, root / "idx"


@pytest.fixture(scope="module")
def searcher(built) -> Searcher:
    s = Searcher(built[1])
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(built, lite_model):
    with (
        live_server(create_app(Settings(index_dir=built[1]), model=lite_model)) as url,
        httpx.Client(base_url=url, timeout=30) as c,
    ):
        yield c


def ids_of(clip_path: str, searcher: Searcher) -> int:
    file_id = searcher.reader.file_id(clip_path)
    assert file_id is not None, clip_path
    return file_id


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "search", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_similar_lists_the_clip_first_then_the_closest_by_its_stored_vector(client, searcher) -> None:
    clip_id = min(i for i in _ids(searcher) if searcher.clip(i).path.startswith("rooster/"))
    r = client.get(f"/clips/{clip_id}/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    path = searcher.clip(clip_id).path
    assert body["query"] == f"<like:{path}>" and body["mode"] == "audio" and body["total"] == 11
    hits = body["results"]
    assert len(hits) == 5 and hits[0]["id"] == clip_id and hits[0]["path"] == path
    assert abs(hits[0]["score"] - 1.0) < 1e-5  # one window: the query is that window
    assert hits[0]["audio_url"] == f"/clips/{clip_id}/audio" and hits[0]["duration"] > 0
    assert len({h["id"] for h in hits}) == 5 and [h["score"] for h in hits] == sorted(h["score"] for h in hits)[::-1]
    # the values: each other file's score is its best window's cosine with the clip's stored vector
    q = searcher.window_vectors(clip_id)[0]
    for h in hits[1:]:
        assert abs(h["score"] - float((searcher.window_vectors(h["id"]) @ q).max())) < 1e-5, h
    # and no file outside the page scores higher than its last
    rest = [i for i in _ids(searcher) if i not in {h["id"] for h in hits}]
    assert max(float((searcher.window_vectors(i) @ q).max()) for i in rest) <= hits[-1]["score"] + 1e-5


def test_similar_pages_are_disjoint_and_make_the_whole_ranking(client, searcher) -> None:
    clip_id = _ids(searcher)[0]
    whole = [h["id"] for h in client.get(f"/clips/{clip_id}/similar", params={"k": 11}).json()["results"]]
    assert len(whole) == 11 and whole[0] == clip_id and sorted(whole) == sorted(_ids(searcher))
    pages = [
        [h["id"] for h in client.get(f"/clips/{clip_id}/similar", params={"k": 4, "offset": o}).json()["results"]]
        for o in (0, 4, 8)
    ]
    assert [len(p) for p in pages] == [4, 4, 3] and sum(pages, []) == whole
    assert client.get(f"/clips/{clip_id}/similar", params={"offset": 11}).json()["results"] == []


def test_similar_start_picks_a_window_of_a_longer_file(client, searcher) -> None:
    mix = ids_of("long/mix.wav", searcher)
    clip = searcher.clip(mix)
    windows = searcher.reader.file_windows([mix])[mix]
    assert clip.windows >= 2 and len(windows) == clip.windows
    for _, w_start, w_end in windows:
        first = client.get(f"/clips/{mix}/similar", params={"k": 2, "start": w_start + 0.01}).json()["results"][0]
        assert first["id"] == mix and abs(first["score"] - 1.0) < 1e-5
        assert (first["start"], first["end"]) == (w_start, w_end)  # the queried window is its own best
    whole = client.get(f"/clips/{mix}/similar", params={"k": 3}).json()["results"]
    assert whole[0]["id"] == mix and whole[0]["score"] < 1.0  # the mean of different windows: none is exactly it


@pytest.mark.parametrize(
    ("url", "status", "fragment"),
    [
        ("/clips/999999/similar", 404, "no clip with id 999999"),
        ("/clips/{id}/similar?start=-1", 422, "start must lie within the clip"),
        ("/clips/{id}/similar?start=1e6", 422, "start must lie within the clip"),
        ("/clips/{id}/similar?start=nan", 422, "start must lie within the clip"),
        ("/clips/{id}/similar?mode=hybrid", 422, "ranked by audio only"),
        ("/clips/{id}/similar?k=101", 422, "query.k: Input should be less than or equal to 100"),
        ("/clips/0/similar", 422, "clip_id"),
    ],
)
def test_similar_errors_are_json_with_a_reason(client, searcher, url: str, status: int, fragment: str) -> None:
    r = client.get(url.replace("{id}", str(_ids(searcher)[0])))
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and fragment in r.json()["detail"], r.json()


def test_similar_is_documented(client) -> None:
    doc = client.get("/openapi.json").json()["paths"]["/clips/{clip_id}/similar"]["get"]
    assert "audio only" in doc["description"] and "mean of the clip's windows" in doc["description"]


@pytest.mark.slow
def test_cli_like_by_id_and_by_path_ranks_as_http(client, searcher, built) -> None:
    clip_id = ids_of("long/mix.wav", searcher)
    http = client.get(f"/clips/{clip_id}/similar", params={"k": 6, "offset": 1}).json()
    by_id = cli("--like", str(clip_id), "--index", str(built[1]), "-k", "6", "--offset", "1", "--quiet")
    by_path = cli("--like", "long/mix.wav", "--index", str(built[1]), "-k", "6", "--offset", "1", "--quiet")
    by_abs = cli("--like", str(built[0] / "long" / "mix.wav"), "--index", str(built[1]), "-k", "6", "--offset", "1")
    for r in (by_id, by_path, by_abs):
        assert r.returncode == 0, r.stderr
        out = SearchResponse.model_validate_json(r.stdout).model_dump()
        assert out["query"] == http["query"] == "<like:long/mix.wav>" and out["total"] == http["total"]
        assert [h["id"] for h in out["results"]] == [h["id"] for h in http["results"]]
        assert [h["score"] for h in out["results"]] == [h["score"] for h in http["results"]]
    start = cli("--like", str(clip_id), "--start", "1e6", "--index", str(built[1]), "--quiet")
    assert start.returncode == 1 and "start must lie within the clip" in start.stderr.strip().splitlines()[-1]
    nope = cli("--like", "no/such.wav", "--index", str(built[1]), "--quiet")
    assert nope.returncode == 1 and nope.stderr.startswith("audiosearch: error: --like 'no/such.wav'")


def test_cli_text_search_prints_what_http_returns(client, built) -> None:
    r = cli("a rooster crowing", "--index", str(built[1]), "-k", "4", "--mode", "audio", "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    http = client.get("/search", params={"q": "a rooster crowing", "k": 4, "mode": "audio"}).json()
    assert set(out) == set(http) and set(out["results"][0]) == set(http["results"][0])
    keys = ("id", "path", "start", "end", "duration", "audio_url", "evidence")
    assert [{k: h[k] for k in keys} for h in out["results"]] == [{k: h[k] for k in keys} for h in http["results"]]
    assert np.allclose([h["score"] for h in out["results"]], [h["score"] for h in http["results"]], atol=1e-5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dog", "-k", "101"), "-k must be between 1 and 100, got 101"),
        (("dog", "-k", "0"), "-k must be between 1 and 100, got 0"),
        (("   ",), "query must not be empty"),
        ((), "give a text query, or --like PATH_OR_ID"),
        (("dog", "--like", "1"), "give a text query or --like, not both"),
        (("--like", "1", "--mode", "text"), "ranked by audio only"),
    ],
)
def test_cli_refuses_what_http_refuses_in_one_line(built, args: tuple[str, ...], message: str) -> None:
    r = cli(*args, "--index", str(built[1]))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and lines[0].startswith("audiosearch: error: "), r.stderr
    assert message in lines[0]


def test_http_says_the_same_about_an_empty_query(client) -> None:
    r = client.get("/search", params={"q": "   "})
    assert r.status_code == 422 and r.json()["detail"] == "query must not be empty"
    r = client.get("/search", params={"q": "dog", "k": 101})
    assert r.status_code == 422 and "less than or equal to 100" in r.json()["detail"]


def _ids(searcher: Searcher) -> list[int]:
    """Every file's id, in id order (an audio query ranks every file)."""
    (page,) = searcher.search(searcher.window_vectors(1), k=100, mode="audio")
    return sorted(h.file_id for h in page.hits)
