"""The PaSST tower's forward in a multi-threaded service: it leaves the process's stdout alone."""

from __future__ import annotations

import sys

import pytest
import torch

from audiosearch.models.towers.modules.passt import PasstTower


def test_forward_keeps_stdout_and_prints_nothing(capfd: pytest.CaptureFixture[str]) -> None:
    tower = PasstTower(input_tdim=100, depth=1, embed_dim=64, num_heads=2).eval()  # 1 s of audio
    before = sys.stdout
    seen: list[object] = []
    # stdout as the network sees it mid-forward: another request's thread writes through the same object
    tower.net.register_forward_pre_hook(lambda *_: seen.append(sys.stdout))
    with torch.no_grad():
        for _ in range(2):
            features = tower(torch.randn(2, 32000))  # (B, samples) at 32 kHz
    assert features.shape == (2, 64)
    assert seen == [before, before] and sys.stdout is before
    assert capfd.readouterr() == ("", "")
