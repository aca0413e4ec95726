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
