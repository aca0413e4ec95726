"""The HTTP API over a synthetic library and the baseline model: real uvicorn, indexer and FAISS, no shared
data, a few seconds. Query by example finds each file itself; clip metadata and readiness carry real values."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.synthetic import SR, sound, write_library

LAYOUT = {"birds": 4, "engines": 4}


@pytest.fixture(scope="module")
def library(tmp_path_factory, baseline_model) -> tuple[Path, Path, list[Path]]:
    root = tmp_path_factory.mktemp("api-baseline")
    paths = write_library(root / "lib", LAYOUT)
    long = root / "lib" / "long" / "walk.wav"  # 7 s: four 2 s windows, the last one second long
    long.parent.mkdir()
    sf.write(long, np.concatenate([sound(k, 1.0) for k in range(9, 16)]), SR)
    build_index(root / "lib", root / "idx", baseline_model, IndexOptions(workers=0, progress=False))
    return root / "lib", root / "idx", [*paths, long]


@pytest.fixture(scope="module")
def client(library, baseline_dir, baseline_model):
    app = create_app(Settings(index_dir=library[1], model=str(baseline_dir)), model=baseline_model)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


def _upload(client: httpx.Client, data: bytes, name: str = "q.wav", **params) -> httpx.Response:
    return client.post("/search/by-audio", params=params, files={"file": (name, data, "audio/wav")})


def test_ready_with_the_index_it_was_given(client, library, baseline_model) -> None:
    _, idx, paths = library
    ready = client.get("/readyz").json()
    assert ready == {"status": "ready", "snapshot": (idx / "CURRENT").read_text()}
    info = client.get("/index").json()
    assert (info["files"], info["windows"]) == (len(paths), 8 + 4)
    model = info["manifest"]["model"]
    provenance = model.pop("provenance")  # where each part's weights came from (a tower that learns nothing)
    assert model == {"name": "baseline", "fingerprint": baseline_model.fingerprint, "dim": 128, "sample_rate": SR}
    assert provenance["audio_tower"]["from"] == "package"
    assert info["manifest"]["window_seconds"] == 2.0
    # --faiss auto on 12 windows: Flat, read into RAM (no AUDIOSEARCH_MMAP), and /metrics says the same bytes
    assert info["faiss"] == info["manifest"]["faiss"] == "Flat"
    assert info["manifest"]["faiss_choice"]["auto"] is True and info["manifest"]["faiss_choice"]["windows"] == 12
    size = (idx / "snapshots" / ready["snapshot"] / "vectors.faiss").stat().st_size
    assert size > 12 * 128 * 4 and info["memory"] == {"ram_bytes": size, "mapped_bytes": 0}
    metrics = client.get("/metrics").text
    assert f'audiosearch_index_memory_bytes{{where="ram"}} {float(size)}' in metrics
    assert 'audiosearch_index_memory_bytes{where="mapped"} 0.0' in metrics


def test_query_by_example_finds_each_file_first(client, library) -> None:
    lib, _, paths = library
    for path in paths:
        r = _upload(client, path.read_bytes(), k=3)
        assert r.status_code == 200, r.text
        top, second = r.json()["results"][:2]
        assert top["path"] == path.relative_to(lib).as_posix()
        assert second["score"] < top["score"] - 0.05, (path.name, top, second)  # closest pair: 1.0 vs 0.89
        if path.name != "walk.wav":  # one window: the upload's vector is that window's
            assert top["score"] > 0.99, (path.name, top)


def test_query_by_example_at_another_rate_and_level(client, library) -> None:
    lib, _, paths = library
    wave, _ = sf.read(paths[5], dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, 0.5 * soxr.resample(wave, SR, 44100), 44100, format="WAV")
    top = _upload(client, buf.getvalue(), k=1).json()["results"][0]
    assert top["path"] == paths[5].relative_to(lib).as_posix() and top["score"] > 0.98


def test_clip_metadata_and_audio(client, library) -> None:
    lib, _, paths = library
    for path in (paths[0], paths[-1]):
        hit = _upload(client, path.read_bytes(), k=1).json()["results"][0]
        meta = client.get(f"/clips/{hit['id']}").json()
        words = meta.pop("words")  # what hybrid search knows of the file: its folder's and name's words
        assert words["tags"] == [] and set(words["path"]) <= set(path.relative_to(lib).with_suffix("").parts)
        data = path.read_bytes()
        assert meta == {
            "id": hit["id"],
            "path": path.relative_to(lib).as_posix(),
            "size": len(data),
            "duration": pytest.approx(7.0 if path.name == "walk.wav" else 1.0),
            "sample_rate": SR,
            "channels": 1,
            "sha1": hashlib.sha1(data).hexdigest(),
            "windows": 4 if path.name == "walk.wav" else 1,
            "audio_url": f"/clips/{hit['id']}/audio",
        }
        assert client.get(meta["audio_url"]).content == data


def test_text_search_ranks_files_once_each_with_filters_and_totals(client, library) -> None:
    body = client.get("/search", params={"q": "an engine idling", "k": 5}).json()
    assert body["total"] == 9 and len({h["id"] for h in body["results"]}) == 5
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    page = client.post("/search", json={"query": "x", "k": 9, "filters": {"path_prefix": "engines/"}}).json()
    assert page["total"] == 4 and sorted(h["path"] for h in page["results"]) == [
        f"engines/engines-{k}.wav" for k in range(4)
    ]


def test_silence_uploaded_is_a_clear_422(client) -> None:
    buf = io.BytesIO()
    sf.write(buf, np.zeros(SR, dtype="float32"), SR, format="WAV")
    r = _upload(client, buf.getvalue())
    assert r.status_code == 422 and r.json()["detail"] == "the uploaded audio gives no usable embedding"
