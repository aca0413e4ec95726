"""The install adds one top-level package, `audiosearch`: the repository's folders are its subpackages, so an
environment with its own `app`, `models` or `core` package keeps both working."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

FOLDERS = ("app", "core", "indexer", "models", "training")


def test_own_app_and_models_packages_live_beside_ours(tmp_path: Path) -> None:
    for name in ("app", "models", "core"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"WHO = 'user {name}'\n")
    code = (
        "import app, models, core, json\n"
        "from audiosearch.app.cli import main\n"
        "from audiosearch.models import PROFILES\n"
        "import audiosearch.core.errors\n"
        "print(json.dumps([app.WHO, models.WHO, core.WHO, 'lite' in PROFILES, callable(main)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '["user app", "user models", "user core", true, true]'


@pytest.mark.slow
def test_the_wheel_holds_audiosearch_alone(tmp_path: Path) -> None:
    """Built as users install it (pip wheel): every module under audiosearch/, the package data beside them."""
    src = tmp_path / "src"  # a copy of the tracked files: setuptools writes build/ beside the sources
    for name in subprocess.run(
        ["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / name, src / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = tmp_path.glob("audiosearch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"audiosearch"}
    for folder in FOLDERS:
        assert f"audiosearch/{folder}/__init__.py" in names
    assert "audiosearch/models/towers/cores/yamnet.py" in names
    assert "audiosearch/app/static/index.html" in names
    assert any(n.startswith("audiosearch/models/assets/yamnet/") for n in names)
    assert any(n.startswith("audiosearch/app/sample/") for n in names)
