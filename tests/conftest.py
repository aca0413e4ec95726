"""Shared fixtures: where the real test audio lives, and small models built without any network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (CI has it), or $AUDIOSEARCH_DATA."""
    return Path(os.environ.get("AUDIOSEARCH_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "esc10" / "captions.csv").is_file():
        pytest.skip(f"real test audio not found at {root} (set AUDIOSEARCH_DATA or provide ../shared/data)")
    return root


@pytest.fixture(scope="session")
def lite_model():
    from models import load_model

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
