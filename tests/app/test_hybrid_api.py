"""Search modes, evidence and the "no close match" flag over real HTTP (uvicorn), on a real index of real clips
whose names are partly descriptive, partly hashes, one of them tagged."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import httpx
import pytest
from mutagen.oggvorbis import OggVorbis

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import copy_clips
from tests.indexer.snapshots import strip_words

MODES_MESSAGE = "'hybrid', 'audio' or 'text'"


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory, lite_model) -> Path:
    root = tmp_path_factory.mktemp("hybrid-api")
    lib = root / "lib"
    clips = copy_clips(shared_data, lib, {"dog_bark": 3, "rooster": 3, "rain": 3})
    for clip in clips[6:]:  # the rain clips lose their names
        clip.rename(lib / (hashlib.sha1(clip.read_bytes()).hexdigest() + ".ogg"))
    shutil.rmtree(lib / "rain")
    tags = OggVorbis(clips[3])
    tags["DESCRIPTION"] = "cockerel at sunrise on the farm"
    tags.save()
    build_index(lib, root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    return root


@pytest.fixture(scope="module")
def client(built, lite_model):
    app = create_app(Settings(index_dir=built / "idx"), model=lite_model)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def test_modes_end_to_end(client) -> None:
    hybrid = client.get("/search", params={"q": "a rooster crowing", "k": 9}).json()
    assert hybrid["mode"] == "hybrid" and hybrid["total"] == 9  # the default
    assert [h["path"].split("/")[0] for h in hybrid["results"][:3]] == ["rooster"] * 3
    ev = hybrid["results"][0]["evidence"]
    # BM25 gives no weight to a word that half the files share (FTS5's idf), the text vector still does
    assert ev["words"] == ["rooster"] and 0 <= ev["lexical"] < 0.01 and ev["text"] > 0.4
    assert hybrid["results"][0]["score"] == pytest.approx(
        ev["audio"] + 0.8 * (ev["text"] - 0.35) / 0.65 + 0.1 * ev["lexical"], abs=1e-4
    )
    audio = client.get("/search", params={"q": "a rooster crowing", "k": 9, "mode": "audio"}).json()
    assert audio["mode"] == "audio"
    assert [h["score"] for h in audio["results"]] == [h["evidence"]["audio"] for h in audio["results"]]
    assert sorted(h["id"] for h in audio["results"]) == sorted(h["id"] for h in hybrid["results"])
    text = client.post("/search", json={"query": "a rooster crowing", "k": 9, "mode": "text"}).json()
    assert text["mode"] == "text" and text["total"] == 6  # the hashed rain clips have no words
    assert all("/" in h["path"] for h in text["results"])
    tagged = client.get("/search", params={"q": "cockerel at sunrise", "mode": "text", "k": 1}).json()["results"][0]
    assert tagged["evidence"]["words"] == ["cockerel", "sunrise"] and tagged["evidence"]["lexical"] > 0.5
    batch = client.post("/search/batch", json={"queries": ["rain", "a dog barking"], "k": 3, "mode": "audio"}).json()
    assert [r["mode"] for r in batch["responses"]] == ["audio", "audio"]
    single = client.get("/search", params={"q": "rain", "k": 3, "mode": "audio"}).json()
    assert [h["id"] for h in batch["responses"][0]["results"]] == [h["id"] for h in single["results"]]


@pytest.mark.parametrize(
    ("method", "url", "kw"),
    [
        ("GET", "/search", {"params": {"q": "rain", "mode": "fuzzy"}}),
        ("POST", "/search", {"json": {"query": "rain", "mode": "semantic"}}),
        ("POST", "/search/batch", {"json": {"queries": ["rain"], "mode": ""}}),
    ],
)
def test_an_unknown_mode_is_a_422_naming_the_modes(client, method, url, kw) -> None:
    r = client.request(method, url, **kw)
    assert r.status_code == 422 and MODES_MESSAGE in r.json()["detail"] and "mode" in r.json()["detail"]


def test_no_close_match_and_min_score(client) -> None:
    absent = client.get("/search", params={"q": "a door knocking"}).json()
    assert absent["no_close_match"] is True and len(absent["results"]) == 9  # the nearest are still there
    assert absent["results"][0]["score"] < absent["min_score"]
    present = client.get("/search", params={"q": "a dog barking"}).json()
    assert present["no_close_match"] is False and present["results"][0]["path"].startswith("dog_bark/")
    lowered = client.get("/search", params={"q": "a door knocking", "min_score": -1}).json()
    assert lowered["no_close_match"] is False and lowered["min_score"] == -1
    r = client.get("/search", params={"q": "rain", "min_score": "high"})
    assert r.status_code == 422 and "min_score" in r.json()["detail"]
    r = client.post("/search", json={"query": "rain", "min_score": 1e9})
    assert r.status_code == 422 and "min_score" in r.json()["detail"]


def test_clip_shows_its_words(client) -> None:
    hits = client.get("/search", params={"q": "cockerel", "mode": "text", "k": 9}).json()["results"]
    info = client.get(f"/clips/{hits[0]['id']}").json()
    assert info["words"] == {
        "path": ["rooster"],
        "tags": ["cockerel", "sunrise", "farm"],
        "fields": {"description": "cockerel at sunrise on the farm"},
    }
    hashed = next(
        h for h in client.get("/search", params={"q": "rain", "k": 9}).json()["results"] if "/" not in h["path"]
    )
    assert client.get(f"/clips/{hashed['id']}").json()["words"] == {"path": [], "tags": [], "fields": {}}


def test_an_index_from_before_words(built, tmp_path, lite_model) -> None:
    idx = tmp_path / "idx"
    shutil.copytree(built / "idx", idx)
    strip_words(idx)
    with live_server(create_app(Settings(index_dir=idx), model=lite_model)) as url, httpx.Client(base_url=url) as c:
        r = c.get("/search", params={"q": "a rooster crowing"})
        assert r.status_code == 200 and r.json()["mode"] == "audio"
        assert all(
            h["evidence"] == {"audio": h["score"], "text": 0.0, "lexical": 0.0, "words": []}
            for h in r.json()["results"]
        )
        r = c.get("/search", params={"q": "a rooster crowing", "mode": "text"})
        assert r.status_code == 409 and "rerun `audiosearch index`" in r.json()["detail"]
        assert c.get("/clips/1").json()["words"] is None
