"""Train a DualEncoder's projections (and temperature) on cached frozen-tower features.

The loop follows the reference recipe where it applies to projections alone: AdamW, linear warm-up
then cosine decay per step, in-batch symmetric NT-Xent where every caption of a clip is a positive.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from models.dual_encoder import DualEncoder
from models.errors import InvalidInputError
from models.training.data import CaptionRow, query_relevance
from models.training.features import (
    AudioFeatures,
    compute_audio_features,
    compute_text_features,
    project_audio,
    project_text,
    require_frozen,
)
from models.training.metrics import precision_at_k, retrieval_metrics

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3  # projections start from random init, so far above the 2e-5 used for towers
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1  # of all steps
    min_lr_ratio: float = 0.01  # cosine decays to lr * min_lr_ratio
    seed: int = 0


@dataclass
class PairSet:
    """Training pairs over cached features: pair p joins clip audio_index[p] and caption text_index[p]."""

    audio: AudioFeatures
    text: torch.Tensor  # (n_texts, text_tower_dim)
    audio_index: torch.Tensor  # (P,) int64
    text_index: torch.Tensor  # (P,) int64
    # (P,) int64: pairs sharing a group are positives of each other. Clips that share a caption are
    # merged too, since label-style captions ("a dog barks" on 40 clips) would otherwise be in-batch
    # negatives of themselves.
    groups: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        if len(self.audio_index) != len(self.text_index) or len(self.audio_index) == 0:
            raise InvalidInputError("a PairSet needs equally many (>0) audio and text indices")
        self.groups = positive_groups(self.audio_index, self.text_index)

    def __len__(self) -> int:
        return len(self.audio_index)


@dataclass
class EvalSet:
    """Queries against unique clips; relevance[q, n] says clip n answers query q."""

    name: str
    audio: AudioFeatures
    queries: torch.Tensor  # (Q, text_tower_dim)
    relevance: np.ndarray  # (Q, N) bool


@dataclass
class TrainResult:
    model: DualEncoder
    history: list[dict[str, float]]  # one entry per epoch: loss, lr, temperature, "<set>/<metric>"


def positive_groups(audio_index: torch.Tensor, text_index: torch.Tensor) -> torch.Tensor:
    """Connected components of the clip-caption graph, numbered 0.. in order of first appearance."""
    parent = list(range(int(audio_index.max()) + 1 + int(text_index.max()) + 1))
    offset = int(audio_index.max()) + 1

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, t in zip(audio_index.tolist(), text_index.tolist(), strict=True):
        parent[find(a)] = find(offset + t)
    roots = [find(a) for a in audio_index.tolist()]
    numbering: dict[int, int] = {}
    return torch.tensor([numbering.setdefault(r, len(numbering)) for r in roots], dtype=torch.int64)


def pairs_from_rows(model: DualEncoder, rows: Sequence[CaptionRow], cache_dir: str | None = None) -> PairSet:
    """Compute (or load cached) tower features for the rows' unique clips and captions."""
    clips = sorted({r.clip_id: r.path for r in rows}.items())
    texts = sorted({r.caption for r in rows})
    clip_pos = {cid: i for i, (cid, _) in enumerate(clips)}
    text_pos = {t: i for i, t in enumerate(texts)}
    return PairSet(
        audio=compute_audio_features(model, [p for _, p in clips], cache_dir),
        text=compute_text_features(model, texts),
        audio_index=torch.tensor([clip_pos[r.clip_id] for r in rows], dtype=torch.int64),
        text_index=torch.tensor([text_pos[r.caption] for r in rows], dtype=torch.int64),
    )


def eval_set_from_rows(
    model: DualEncoder, name: str, rows: Sequence[CaptionRow], cache_dir: str | None = None
) -> EvalSet:
    """Each distinct caption is a query; each unique clip a candidate; clips carrying it are relevant."""
    paths, texts, relevance = query_relevance(rows)
    audio = compute_audio_features(model, paths, cache_dir)
    return EvalSet(name, audio, compute_text_features(model, texts), relevance)


def evaluate(model: DualEncoder, data: EvalSet) -> dict[str, float]:
    with torch.no_grad(), _one_thread():
        sim = project_text(model, data.queries) @ project_audio(model, data.audio).T  # (Q, N)
    out = retrieval_metrics(sim.cpu(), data.relevance)
    out["P@10"] = precision_at_k(sim.cpu(), data.relevance, 10)
    return out


def train_projections(
    model: DualEncoder,
    train: PairSet,
    val: Sequence[EvalSet] = (),
    config: TrainConfig | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train every trainable parameter outside the (frozen) towers; returns the model in eval mode.

    on_epoch gets each epoch's record (loss, lr, temperature, step, validation metrics) as it finishes,
    for progress reports (CLI, job status).
    """
    cfg = config or TrainConfig()
    require_frozen(model)
    with _one_thread():
        return _train(model, train, val, cfg, on_epoch)


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Projection-sized ops gain nothing from intra-op threads, and on a busy 2-core machine the
    thread hand-offs made a training run 15x slower (47 s vs 3 s measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(
    model: DualEncoder,
    train: PairSet,
    val: Sequence[EvalSet],
    cfg: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None,
) -> TrainResult:
    gen = torch.Generator().manual_seed(cfg.seed)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    optimizer = _optimizer(model, cfg)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(total, cfg))
    history = []
    log.info("training %d pairs, %d epochs x %d steps, config %s", len(train), cfg.epochs, steps_per_epoch, asdict(cfg))
    for epoch in range(1, cfg.epochs + 1):
        started = time.perf_counter()
        model.train()
        losses = [
            _step(model, train, batch, optimizer, schedule, gen)
            for batch in _batches(len(train), cfg.batch_size, steps_per_epoch, gen)
        ]
        model.eval()
        record = {
            "epoch": float(epoch),
            "step": float(epoch * steps_per_epoch),
            "loss": float(np.mean(losses)),
            "lr": schedule.get_last_lr()[0],
            "temperature": float(model.log_temperature.detach().exp()),
        }
        for data in val:
            record.update({f"{data.name}/{k}": v for k, v in evaluate(model, data).items()})
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        log.info(
            "epoch %d (%.2f s): %s",
            epoch,
            time.perf_counter() - started,
            ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )
    return TrainResult(model.eval(), history)


def _optimizer(model: DualEncoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not params:
        raise InvalidInputError("the model has no trainable parameters")
    # Decay weight matrices only: decaying biases or the log-temperature pulls them towards 0 for no gain.
    decay = [p for _, p in params if p.ndim >= 2]
    rest = [p for _, p in params if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}], lr=cfg.lr
    )


def _lr_lambda(total: int, cfg: TrainConfig) -> Callable[[int], float]:
    warmup = max(1, round(cfg.warmup_fraction * total))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _batches(n: int, size: int, steps: int, gen: torch.Generator) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=gen)
    return [order[i * size : (i + 1) * size] for i in range(steps)]


def _step(
    model: DualEncoder,
    data: PairSet,
    batch: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    gen: torch.Generator,
) -> float:
    audio = project_audio(model, _random_windows(data.audio, data.audio_index[batch], gen))  # (B, E)
    text = project_text(model, data.text[data.text_index[batch]])  # (B, E)
    loss = model.loss(audio, text, data.groups[batch].to(model.device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    schedule.step()
    return float(loss.detach())


def _random_windows(feats: AudioFeatures, clips: torch.Tensor, gen: torch.Generator) -> AudioFeatures:
    """One random 10 s window per clip: long ambiences give a different view each time they are drawn."""
    starts, counts = feats.offsets[clips], feats.offsets[clips + 1] - feats.offsets[clips]
    pick = starts + (torch.rand(len(clips), generator=gen) * counts).long()
    return AudioFeatures(feats.windows[pick], torch.arange(len(clips) + 1, dtype=torch.int64))


def reset_projections(model: DualEncoder, seed: int) -> DualEncoder:
    """Re-draw the projections from `seed` and reset the temperature, so a run is reproducible from its
    seed alone (the bare profile draws them from the global RNG at build time)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in (model.audio_proj, model.text_proj):
            for layer in module.modules():
                if isinstance(layer, nn.Linear):
                    layer.reset_parameters()
    with torch.no_grad():
        model.log_temperature.fill_(math.log(model.config.temperature_init))
    return model
