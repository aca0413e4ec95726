"""DCASE-style retrieval evaluation of a whole model on a caption file (what `audiosearch eval` runs).

Each distinct caption is a query ranked against the unique clips; a clip's score is its best vector's, as in
the search service: one per window, or one per clip for a model that embeds clips whole (audiosearch.models.aggregate:
the `paper` model, which then scores exactly as the reference code does).
Metrics: mAP@10, R@1, R@5, R@10 (audiosearch.training.metrics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from audiosearch.models.embedder import embed_files
from audiosearch.models.encoder import Encoder
from audiosearch.training.data import CaptionRow, DatasetError, query_relevance
from audiosearch.training.datasets import detect_format, load_rows
from audiosearch.training.metrics import chance_metrics, retrieval_metrics


def parse_data_spec(spec: str, audio_root: str | Path | None = None) -> list[CaptionRow]:
    """'captions.csv' or 'labels.csv:label' (the caption column after a colon); ClothoV2 and AudioCaps
    CSVs (by their header), WavCaps .json and .jsonl files are recognised (audiosearch.training.datasets)."""
    path, _, column = spec.partition(":")
    return load_rows(path, detect_format(path), audio_root, caption_column=column or "caption")


def clip_window_vectors(
    model: Encoder, paths: Sequence[Path], batch_size: int = 32, check: Callable[[], None] | None = None
) -> list[np.ndarray]:
    """Each clip's window vectors, through the one embedding pipeline (long clips stream); `check` is called
    before each clip and batch and raises to stop (the service's client went away)."""
    out = []
    for e in embed_files(model, paths, batch_size, check=check):
        if e.vectors is None:
            raise DatasetError(f"{e.key}: {e.error}")
        out.append(e.vectors)
    return out


def caption_clip_similarity(
    model: Encoder, rows: Sequence[CaptionRow], query_prefix: str = "", check: Callable[[], None] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(similarity, relevance), both (distinct captions, unique clips); a clip scores its best window."""
    paths, texts, relevance = query_relevance(rows)
    windows = clip_window_vectors(model, paths, check=check)
    queries = model.encode_text([query_prefix + t for t in texts])  # (Q, D)
    return np.stack([(queries @ w.T).max(axis=1) for w in windows], axis=1), relevance


def evaluate_rows(
    model: Encoder, rows: Sequence[CaptionRow], query_prefix: str = "", check: Callable[[], None] | None = None
) -> dict[str, float]:
    sim, relevance = caption_clip_similarity(model, rows, query_prefix, check)
    n_queries, n_clips = sim.shape
    metrics = retrieval_metrics(sim, relevance)
    chance = chance_metrics(relevance.sum(axis=1).tolist(), n_clips)
    return {**metrics, **{f"chance/{k}": v for k, v in chance.items()}, "queries": n_queries, "clips": n_clips}
