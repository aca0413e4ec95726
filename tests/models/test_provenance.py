"""Never silently untrained: where each part's weights came from is recorded (model directory, index manifest),
and index, search and serve refuse random parts unless told --allow-untrained."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from audiosearch.app.cli import main as cli
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.models import DualEncoder, ModelLoadError, load_encoder, save_model
from audiosearch.models.embedder import embed_files
from audiosearch.models.model_dir import resolve
from audiosearch.models.provenance import SIDECAR, of_source, require_trained
from tests.models.tiny import tiny_paper_config


@pytest.fixture(scope="module")
def random_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model saved straight after construction: random PaSST, RoBERTa and projections."""
    return save_model(DualEncoder(tiny_paper_config()), tmp_path_factory.mktemp("random") / "model")


@pytest.mark.parametrize("name", ["lite", "fusion", "bridge", "aisfx"])
def test_shipped_models_need_no_flag(name: str) -> None:
    require_trained(name)  # trained projections, or the bridge's tied identity: nothing random
    projections = of_source(resolve(name))["projections"]["from"]
    assert projections == ("identity" if name == "bridge" else "trained")


def test_the_bare_paper_profile_is_refused_before_anything_loads(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    for args in (
        ["index", str(tmp_path), "--index", str(tmp_path / "i")],
        ["search", "a dog", "--index", "x"],
        ["serve", "--index", "x"],
    ):
        assert cli([*args, "--model", "paper"]) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("audiosearch: error: model paper: never trained or loaded: projections (never trained)")
        assert "audiosearch import-checkpoint" in line and "--allow-untrained" in line


def test_a_random_model_directory_is_refused_and_allowed_with_the_flag(
    random_dir: Path,
    shared_data: Path,
    tmp_path: Path,
    capsys,  # noqa: ANN001
) -> None:
    sidecar = json.loads((random_dir / SIDECAR).read_text())
    assert {p: v["from"] for p, v in sidecar.items()} == {
        "audio_tower": "random",
        "text_tower": "random",
        "projections": "random",
        "temperature": "initial",
    }
    library = shared_data / "animals_cc0" / "animals"
    args = [
        "index",
        str(library),
        "--index",
        str(tmp_path / "idx"),
        "--model",
        str(random_dir),
        "--workers",
        "0",
        "--quiet",
    ]
    assert cli(args) == 1
    assert (
        "audio tower (passt without a checkpoint), text tower (roberta built from a config)" in capsys.readouterr().err
    )
    assert cli([*args, "--allow-untrained"]) == 0
    manifest = json.loads(next((tmp_path / "idx" / "snapshots").glob("*/manifest.json")).read_text())
    assert manifest["model"]["provenance"]["projections"] == {"from": "random", "detail": "never trained"}


def test_a_directory_without_the_sidecar_counts_as_trained(random_dir: Path, tmp_path: Path) -> None:
    legacy = Path(shutil.copytree(random_dir, tmp_path / "legacy"))
    (legacy / SIDECAR).unlink()  # saved before provenance was recorded: its stored weights came from training
    require_trained(legacy)
    assert load_encoder(str(legacy)).provenance["projections"]["from"] == "stored"


def test_the_service_reports_why_it_is_not_ready(random_dir: Path, tmp_path: Path) -> None:
    app = create_app(Settings(index_dir=tmp_path, model=str(random_dir)))
    with TestClient(app) as client:
        r = client.get("/readyz")
    assert r.status_code == 503
    assert "never trained or loaded" in r.json()["detail"]
    with pytest.raises(ModelLoadError, match="AUDIOSEARCH_ALLOW_UNTRAINED"):
        require_trained(random_dir)


def test_an_aggregating_model_indexes_a_clip_as_one_vector(random_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    """aggregate "mean": files up to 30 s are one vector over [0, duration] (as `audiosearch eval` embeds them);
    longer recordings stay one vector per 10 s window, every started window counted."""
    amb = shared_data / "0ad" / "ambient"
    library = tmp_path / "lib"
    library.mkdir()
    for src in (amb / "building" / "amb_trade_11.ogg", amb / "dayscape" / "day_tropical_10.ogg"):  # 20.09 s, 31.27 s
        shutil.copy(src, library / src.name)
    config = json.loads((random_dir / "config.json").read_text())
    config["aggregate"] = "mean"
    model_dir = Path(shutil.copytree(random_dir, tmp_path / "mean"))
    (model_dir / "config.json").write_text(json.dumps(config))
    args = ["index", str(library), "--index", str(tmp_path / "idx"), "--model", str(model_dir), "--workers", "0"]
    assert cli([*args, "--quiet", "--allow-untrained"]) == 0
    snapshot = next((tmp_path / "idx" / "snapshots").glob("*"))
    with sqlite3.connect(snapshot / "meta.sqlite") as db:
        rows = db.execute(
            'SELECT path, start, "end" FROM windows JOIN files ON files.id = file_id ORDER BY path, start'
        )
        windows = [(p, s, round(e, 2)) for p, s, e in rows]
        (clip_id,) = db.execute(
            "SELECT windows.id FROM windows JOIN files ON files.id = file_id WHERE path LIKE 'amb%'"
        )
    assert windows == [
        ("amb_trade_11.ogg", 0.0, 20.09),
        ("day_tropical_10.ogg", 0.0, 10.0),
        ("day_tropical_10.ogg", 10.0, 20.0),
        ("day_tropical_10.ogg", 20.0, 30.0),
        ("day_tropical_10.ogg", 30.0, 31.27),
    ]
    # the indexed vector of the 20 s clip is what evaluation and query by example compute for it
    import faiss

    index = faiss.read_index(str(snapshot / "vectors.faiss"))
    (clip,) = [e.vectors for e in embed_files(load_encoder(str(model_dir)), [library / "amb_trade_11.ogg"])]
    np.testing.assert_allclose(index.reconstruct(clip_id[0]), clip[0], atol=1e-5)
