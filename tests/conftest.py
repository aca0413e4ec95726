"""Shared fixtures: where the real test audio lives, and small models built without any network."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "audiosearch.app.cli"]  # the command line as a subprocess, as users run it


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (CI has it), or $AUDIOSEARCH_DATA."""
    return Path(os.environ.get("AUDIOSEARCH_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "esc10" / "captions.csv").is_file():
        pytest.skip(f"real test audio not found at {root} (set AUDIOSEARCH_DATA or provide ../shared/data)")
    return root


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Text exports made during the tests go to a folder of the session, not the user's cache."""
    path = tmp_path_factory.mktemp("onnx-cache")
    os.environ["AUDIOSEARCH_ONNX_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def lite_model():
    """The default model as the indexer and the service load it (the slim runtime: numpy + onnxruntime)."""
    from audiosearch.models import load_encoder

    return load_encoder("lite")


@pytest.fixture(scope="session")
def lite_torch():
    """The same model as the torch DualEncoder (training, exports)."""
    from audiosearch.models import load_model

    return load_model("lite")


def copy_clips(shared: Path, dest: Path, per_class: dict[str, int]) -> list[Path]:
    """Copy the first n ESC-10 clips of each named class into dest/<class>/ (a small real library)."""
    import shutil

    out = []
    for label, n in per_class.items():
        (dest / label).mkdir(parents=True, exist_ok=True)
        for src in sorted((shared / "esc10" / label).glob("*.ogg"))[:n]:
            out.append(Path(shutil.copy(src, dest / label / src.name)))
    return out


@pytest.fixture()
def indexed(shared_data: Path, tmp_path: Path, lite_model) -> tuple[Path, Path]:
    """A fresh (library, index) of four real clips, two dog barks and two rain, built with `lite`; each test
    may change or rebuild it."""
    from audiosearch.indexer import IndexOptions, build_index

    lib, idx = tmp_path / "lib", tmp_path / "idx"
    copy_clips(shared_data, lib, {"dog_bark": 2, "rain": 2})
    build_index(lib, idx, lite_model, IndexOptions(workers=0, progress=False))
    return lib, idx


@pytest.fixture(scope="session")
def baseline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model directory of the chance-level baseline towers (models/towers/cores/baseline.py), 2 s windows."""
    from audiosearch.models.towers.cores.baseline import baseline_config, save_baseline

    return save_baseline(tmp_path_factory.mktemp("models") / "baseline", baseline_config(window_seconds=2.0))


@pytest.fixture(scope="session")
def baseline_model(baseline_dir: Path):
    """The baseline as the indexer and the service load it: a SlimEncoder that loads in a second."""
    from audiosearch.models import load_encoder

    return load_encoder(baseline_dir)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray of 2 CPUs for one test module (the Ray modules skip without Ray before asking for it)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()
