"""Decode workers are spawned processes: what they import is paid once per worker, per run."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_decode_workers_import_neither_torch_nor_faiss() -> None:
    code = (
        "import sys; import audiosearch.indexer.decode, audiosearch.models.audio_stream;"
        "print(sorted(m for m in ('torch', 'faiss', 'transformers', 'librosa') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_package_exports_still_resolve() -> None:
    from audiosearch import indexer, models

    for package in (models, indexer):
        for name in package.__all__:
            assert getattr(package, name) is not None, f"{package.__name__}.{name}"
    assert "lite" in models.PROFILES
