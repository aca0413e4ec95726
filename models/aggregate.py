"""A file embedded as a whole: its windows' vectors turned into what is indexed and compared (config.aggregate).

"none": one unit vector per window; search and evaluation score a file by its best window.
"mean": the reference's clip embedding (DCASE 2025 baseline, salsa). A file up to `aggregate_seconds` (30 s) is
one vector: the mean of its windows' projected vectors, normalised after averaging; since the projection is
affine this equals projecting the mean of the 768-d PaSST features, which is what the reference computes.
Every started window counts (the reference's rule: first segment up to 10 s, mean of the first two up to
20 s, of all three beyond), so such a model windows with no minimum tail. A longer file keeps one unit
vector per window: per-window search for long recordings (the reference instead crops a random 30 s).
"""

from __future__ import annotations

import numpy as np

from audiosearch.models.config import ModelConfig
from audiosearch.models.projection import unit_rows

MIN_TAIL_SECONDS = 0.5  # "none": a shorter tail is decoder rounding (10 s files decode to 10.02 s), not audio
# a file of exactly aggregate_seconds must not miss out by float rounding of its window ends
_SLACK_SECONDS = 1e-6


def min_tail_seconds(config: ModelConfig) -> float:
    """The shortest tail after the last full window that still gets a window of its own."""
    return 0.0 if config.aggregate == "mean" else MIN_TAIL_SECONDS


def normalizes_windows(config: ModelConfig) -> bool:
    """Whether the encoder's unit vectors per window are final (else `aggregate` needs them unnormalised)."""
    return config.aggregate == "none"


def aggregate(
    config: ModelConfig, vectors: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One file's window vectors (unnormalised unless `normalizes_windows`) -> its final vectors, starts, ends."""
    if config.aggregate == "none":
        return vectors, starts, ends
    duration = float(np.max(ends))
    if duration > config.aggregate_seconds + _SLACK_SECONDS:
        return unit_rows(vectors), starts, ends
    mean = np.asarray(vectors, dtype=np.float64).mean(axis=0, keepdims=True)
    return unit_rows(mean), np.zeros(1), np.array([duration])
