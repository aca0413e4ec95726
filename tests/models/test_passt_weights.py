"""PaSST's AudioSet weights through hear21passt's own loader: its cache (a local file), its download when
online, and offline a clear error naming the file to fetch. Full size: the weights fit PaSST-S only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.towers.modules.passt import PasstTower, audioset_weights

FILE = "passt-s-f128-p16-s16-ap.468.pt"


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # hear21passt (timm) caches under $TORCH_HOME/hub/checkpoints
    return tmp_path


@pytest.mark.slow
def test_offline_without_the_file_is_an_error_naming_it(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url, cached = audioset_weights("passt_s_p16_s16_128_ap468")
    assert cached == torch_home / "hub" / "checkpoints" / FILE and url.endswith("/" + FILE)
    with pytest.raises(ModelLoadError, match=f"PaSST AudioSet weights {FILE} are not cached") as err:
        PasstTower(pretrained=True)
    assert url in str(err.value) and str(cached) in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_the_cached_file_is_loaded(torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # found in the cache: no download attempted
    torch.manual_seed(1)
    published = PasstTower().net.state_dict()  # stands in for the AudioSet file: a random PaSST-S state dict
    cached = torch_home / "hub" / "checkpoints" / FILE
    cached.parent.mkdir(parents=True)
    torch.save(published, cached)
    tower = PasstTower(pretrained=True)
    for k, v in tower.net.state_dict().items():
        torch.testing.assert_close(v, published[k], rtol=0, atol=0, msg=k)
    with pytest.raises(ModelLoadError, match=f"{FILE} does not fit this PaSST tower"):
        PasstTower(pretrained=True, depth=2)
