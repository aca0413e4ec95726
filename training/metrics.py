"""Text-to-audio retrieval metrics as pure functions over a similarity matrix (queries x unique audios).

DCASE task 6b protocol: every caption is ranked against the unique audios, R@k is the share of
captions whose audio is in the top k, and mAP@10 is the mean of 1/rank (0 outside the top 10),
which equals AP@10 when each caption has exactly one relevant audio.

Label-style sets (ESC-10 classes, booth/ kinds) have several relevant clips per query; there the
rank of the *first* relevant clip is used, so mAP@10 becomes MRR@10 and R@k "any hit in the top k"
(the convention of docs/model-card.md, whose random baselines these numbers match).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from audiosearch.core.errors import InvalidInputError

KS = (1, 5, 10)
MAP_CUTOFF = 10

ArrayLike = np.ndarray | torch.Tensor | Sequence[int] | Sequence[Sequence[bool]]


def relevance_matrix(targets: ArrayLike, n_audio: int) -> np.ndarray:
    """(Q,) relevant-audio indices or a (Q, N) boolean matrix -> (Q, N) boolean matrix."""
    t = _numpy(targets)
    if t.ndim == 1:
        if len(t) and (t.min() < 0 or t.max() >= n_audio):
            raise InvalidInputError(f"targets must index the {n_audio} audios, got range {t.min()}..{t.max()}")
        rel = np.zeros((len(t), n_audio), dtype=bool)
        rel[np.arange(len(t)), t.astype(np.int64)] = True
        return rel
    if t.ndim == 2 and t.shape[1] == n_audio:
        return t.astype(bool)
    raise InvalidInputError(f"targets must be (queries,) indices or (queries, {n_audio}) booleans, got {t.shape}")


def first_relevant_rank(sim: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """1-based rank of the best-ranked relevant audio for each query.

    Ties count against the query (a relevant audio tied with k others ranks after all of them), so
    a constant similarity matrix cannot score well by accident of sort order.
    """
    s = _numpy(sim).astype(np.float64)
    if s.ndim != 2 or s.shape[0] == 0 or s.shape[1] == 0:
        raise InvalidInputError(f"sim must be a non-empty (queries, audios) matrix, got shape {s.shape}")
    rel = relevance_matrix(targets, s.shape[1])
    if rel.shape[0] != s.shape[0]:
        raise InvalidInputError(f"{rel.shape[0]} targets for {s.shape[0]} queries")
    if not rel.any(axis=1).all():
        raise InvalidInputError("every query needs at least one relevant audio")
    best = np.where(rel, s, -np.inf).max(axis=1)  # (Q,) score of the best relevant audio
    # Irrelevant audios scoring >= the best relevant one all rank above it.
    return 1 + ((s >= best[:, None]) & ~rel).sum(axis=1)


def retrieval_metrics(sim: ArrayLike, targets: ArrayLike) -> dict[str, float]:
    """mAP@10, R@1, R@5, R@10 over queries; see the module docstring for the multi-relevant case."""
    ranks = first_relevant_rank(sim, targets)
    out = {"mAP@10": float(np.where(ranks <= MAP_CUTOFF, 1.0 / ranks, 0.0).mean())}
    for k in KS:
        out[f"R@{k}"] = float((ranks <= k).mean())
    return out


def precision_at_k(sim: ArrayLike, targets: ArrayLike, k: int = 10) -> float:
    """Mean share of relevant audios among each query's top k: informative when queries have many
    relevant audios, where R@10 saturates (10 ESC-10 classes over 80 clips: chance R@10 is 0.68)."""
    s = _numpy(sim).astype(np.float64)
    rel = relevance_matrix(targets, s.shape[1])
    k = min(k, s.shape[1])
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return float(np.take_along_axis(rel, top, axis=1).mean())


def chance_metrics(relevant_counts: Sequence[int], n_audio: int) -> dict[str, float]:
    """Expected metrics of a random ranking, for queries with the given numbers of relevant audios."""
    counts = np.asarray(relevant_counts, dtype=np.int64)
    per_rank = np.stack([_first_hit_pmf(int(c), n_audio) for c in counts])  # (Q, MAP_CUTOFF)
    ranks = np.arange(1, MAP_CUTOFF + 1)
    out = {"mAP@10": float((per_rank / ranks).sum(axis=1).mean())}
    for k in KS:
        out[f"R@{k}"] = float(per_rank[:, :k].sum(axis=1).mean())
    return out


def _first_hit_pmf(relevant: int, n: int) -> np.ndarray:
    """P(first relevant audio at rank r), r = 1..MAP_CUTOFF, drawing without replacement."""
    pmf = np.zeros(MAP_CUTOFF)
    miss = 1.0  # P(no relevant audio in ranks 1..r-1)
    for r in range(1, MAP_CUTOFF + 1):
        left = n - (r - 1)
        if left <= 0:
            break
        hit = relevant / left
        pmf[r - 1] = miss * hit
        miss *= 1.0 - hit
    return pmf


def _numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)
