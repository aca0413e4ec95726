"""The tower registry (models/registry.py): kinds found by scanning their packages, cores without torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from audiosearch.models import ModelLoadError, load_encoder
from audiosearch.models.registry import core_builder, known_kinds
from audiosearch.models.towers.cores.baseline import save_baseline
from tests.conftest import REPO


def _run(script: str) -> dict:
    """A fresh interpreter (a registry that has discovered nothing yet), its last stdout line as JSON."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_new_module_in_the_package_is_found_without_any_list(tmp_path: Path) -> None:
    """A tower is one new file: a module on models.towers.cores' path makes its kinds known, nothing else named."""
    (tmp_path / "drop_in.py").write_text(
        "from audiosearch.models.registry import audio_core\n\n"
        "@audio_core('drop_in_kind')\n"
        "def build(**options):\n"
        "    return ('built', options)\n"
    )
    got = _run(f"""
        import json, audiosearch.models.towers.cores
        audiosearch.models.towers.cores.__path__.append({str(tmp_path)!r})
        from audiosearch.models.registry import core_builder, known_kinds
        print(json.dumps({{"built": core_builder("audio", "drop_in_kind")(size=3),
                          "audio": known_kinds("audio", with_modules=False),
                          "text": known_kinds("text", with_modules=False)}}))
    """)
    assert got["built"] == ["built", {"size": 3}]
    assert {"drop_in_kind", "logmel_projection", "yamnet", "yamnet_bridge", "yamnet_fusion"} <= set(got["audio"])
    assert {"hashed_words", "minilm", "roberta"} <= set(got["text"])


def test_runtime_cores_load_and_encode_without_the_full_extra(tmp_path: Path) -> None:
    directory = save_baseline(tmp_path / "baseline")
    got = _run(f"""
        import json, sys
        import numpy as np
        from audiosearch.models import load_encoder
        m = load_encoder({str(directory)!r})
        a = m.encode_audio(np.random.default_rng(0).standard_normal((2, 16000)).astype("float32"), 16000)
        t = m.encode_text(["a dog barking"])
        full = ("torch", "transformers", "librosa", "sklearn")  # the `full` extra's: absent from the base install
        print(json.dumps({{"backend": type(m).__name__, "rows": len(a) + len(t),
                          "full": sorted(n for n in sys.modules if n.split(".")[0] in full)}}))
    """)
    assert got == {"backend": "SlimEncoder", "rows": 3, "full": []}


def test_an_unknown_kind_names_the_known_ones(tmp_path: Path) -> None:
    directory = save_baseline(tmp_path / "m")
    config = json.loads((directory / "config.json").read_text())
    config["audio"] = {"kind": "no_such_tower", "options": {}}
    (directory / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as err:
        load_encoder(directory)
    message = str(err.value)
    assert message.startswith("unknown audio tower kind 'no_such_tower'; known: ")
    for kind in ["aisfx", "logmel_projection", "passt", "yamnet", "yamnet_bridge", "yamnet_fusion"]:
        assert kind in message


def test_cores_and_modules_are_looked_up_by_side() -> None:
    assert core_builder("audio", "logmel_projection") is not None
    assert core_builder("text", "logmel_projection") is None  # an audio kind is not a text kind
    assert core_builder("audio", "passt") is None  # a torch module only: no numpy core
    assert "hashed_words" in known_kinds("text", with_modules=False)
