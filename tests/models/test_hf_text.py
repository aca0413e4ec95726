"""The transformers text tower's tokenizer under the service's concurrent batches."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch

from audiosearch.models.towers.modules.hf_text import HFTextTower, minilm_path
from tests.models.tiny import TINY_ROBERTA


def test_concurrent_tokenize_matches_serial() -> None:
    tower = HFTextTower("roberta-tiny", config=TINY_ROBERTA, tokenizer=minilm_path(), max_tokens=16)
    # Batches of different sizes and lengths: each pads to its longest text, some truncated at 16 tokens.
    batches = [["dog " * (1 + i % 23), "rain on a tin roof"][: 1 + i % 2] for i in range(200)]
    serial = [tower.tokenize(b)["input_ids"] for b in batches]
    with ThreadPoolExecutor(8) as pool:
        threaded = list(pool.map(lambda b: tower.tokenize(b)["input_ids"], batches))
    assert {ids.shape[1] for ids in serial} == set(range(3, 17))
    assert all(torch.equal(a, b) for a, b in zip(serial, threaded, strict=True))
