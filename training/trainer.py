"""Train a DualEncoder's projections (and temperature) on cached frozen-tower features, and the loop
that tower training (audiosearch.training.towers) shares.

The loop follows the reference recipe: AdamW, linear warm-up then cosine decay per optimizer step,
in-batch symmetric NT-Xent where every caption of a clip is a positive; optional gradient accumulation,
mixed precision and step-level checkpoints (`StepCheckpoint`) that a rerun resumes exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from audiosearch.core.errors import InvalidInputError
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.training.data import CaptionRow, query_relevance
from audiosearch.training.features import (
    AudioFeatures,
    compute_audio_features,
    compute_text_features,
    project_audio,
    project_text,
    require_frozen,
)
from audiosearch.training.metrics import precision_at_k, retrieval_metrics
from audiosearch.training.step_checkpoint import StepCheckpoint, StepPosition

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
    accumulate_steps: int = 1  # micro-batches of batch_size per optimizer step
    amp: bool = False  # mixed precision: fp16 autocast + loss scaling on CUDA, bf16 autocast on CPU


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
    checkpoint: StepCheckpoint | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train every trainable parameter outside the (frozen) towers; returns the model in eval mode.

    on_epoch gets each epoch's record (loss, lr, temperature, step, validation metrics) as it finishes,
    for progress reports (CLI, job status). With `checkpoint`, training state is saved every
    `checkpoint.every` optimizer steps and a matching earlier checkpoint is resumed (on_step gets a
    record after each save).
    """
    cfg = config or TrainConfig()
    require_frozen(model)

    def loss(m: DualEncoder, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        audio = project_audio(m, _random_windows(train.audio, train.audio_index[batch], gen))  # (B, E)
        text = project_text(m, train.text[train.text_index[batch]])  # (B, E)
        return m.loss(audio.float(), text.float(), train.groups[batch].to(m.device))

    def metrics(m: DualEncoder) -> dict[str, float]:
        return {f"{data.name}/{k}": v for data in val for k, v in evaluate(m, data).items()}

    with _one_thread():
        return fit(model, len(train), loss, metrics, cfg, on_epoch, checkpoint, on_step)


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


LossFn = Callable[[DualEncoder, torch.Tensor, torch.Generator], torch.Tensor]
MetricsFn = Callable[[DualEncoder], dict[str, float]]


def fit(
    model: DualEncoder,
    n_items: int,
    loss_fn: LossFn,
    metrics_fn: MetricsFn,
    cfg: TrainConfig,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    checkpoint: StepCheckpoint | None = None,
    on_step: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """The loop shared by projection and tower training: `loss_fn(model, item indices, generator)` gives
    one micro-batch's loss; `accumulate_steps` micro-batches make one optimizer step. Every random draw
    of the data order and crops comes from one generator seeded by cfg.seed, so a run is reproducible
    and a resumed run continues the same sequence."""
    loop = TrainLoop(model, n_items, cfg)
    pos = checkpoint.resume(loop) if checkpoint is not None else None
    pos = pos or StepPosition()
    log.info(
        "training %d items, %d epochs x %d steps (from step %d), config %s",
        n_items,
        cfg.epochs,
        loop.steps_per_epoch,
        pos.step,
        asdict(cfg),
    )
    # A checkpoint taken on an epoch's last step precedes that epoch's record: redo only the record.
    for epoch in range(len(pos.history) + 1, cfg.epochs + 1):
        started = time.perf_counter()
        done = pos.step - (epoch - 1) * loop.steps_per_epoch  # steps of this epoch before a resume
        if done == 0:
            pos.order, pos.losses = torch.randperm(n_items, generator=loop.gen), []
        _train_mode(model)
        for s in range(done, loop.steps_per_epoch):
            pos.losses.append(loop.step(loss_fn, pos.order, s))
            pos.step += 1
            if checkpoint is not None and pos.step % checkpoint.every == 0:
                checkpoint.save(loop, pos)
                if on_step is not None:
                    on_step(
                        {
                            "epoch": float(epoch),
                            "step": float(pos.step),
                            "loss": float(np.mean(pos.losses)),
                            "lr": loop.schedule.get_last_lr()[0],
                        }
                    )
        model.eval()
        record = {
            "epoch": float(epoch),
            "step": float(pos.step),
            "loss": float(np.mean(pos.losses)),
            "lr": loop.schedule.get_last_lr()[0],
            "temperature": float(model.log_temperature.detach().exp()),
            **metrics_fn(model),
        }
        pos.history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        log.info(
            "epoch %d (%.2f s): %s",
            epoch,
            time.perf_counter() - started,
            ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )
    return TrainResult(model.eval(), pos.history)


def _train_mode(model: DualEncoder) -> None:
    """Train mode for what trains; a frozen tower stays in eval mode, so it is the fixed feature
    extractor it is at inference (no dropout, no patchout, no batch-norm statistics drifting)."""
    model.train()
    for tower in (model.audio_tower, model.text_tower):
        if not any(p.requires_grad for p in tower.parameters()):
            tower.eval()


class TrainLoop:
    """Optimizer, schedule, mixed precision and the data generator of one training run.

    `state_dict()` / `load_state_dict()` carry all of it with the trained weights (plain tensors and
    numbers, for `torch.load(weights_only=True)`): a step checkpoint saves and restores through them."""

    def __init__(self, model: DualEncoder, n_items: int, cfg: TrainConfig) -> None:
        if cfg.accumulate_steps < 1:
            raise InvalidInputError(f"accumulate_steps must be >= 1, got {cfg.accumulate_steps}")
        self.model, self.cfg = model, cfg
        self.gen = torch.Generator().manual_seed(cfg.seed)
        micro_batches = max(1, n_items // cfg.batch_size)
        self.steps_per_epoch = max(1, micro_batches // cfg.accumulate_steps)
        self.optimizer = _optimizer(model, cfg)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(cfg.epochs * self.steps_per_epoch, cfg)
        )
        cuda = model.device.type == "cuda"
        # fp16 needs loss scaling against gradient underflow; bf16 (CPU) has fp32's range and does not.
        self.amp_dtype = torch.float16 if cuda else torch.bfloat16
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg.amp and cuda)

    def step(self, loss_fn: LossFn, order: torch.Tensor, index: int) -> float:
        """One optimizer step over `accumulate_steps` micro-batches; returns their mean loss."""
        k, size = self.cfg.accumulate_steps, self.cfg.batch_size
        total = 0.0
        for j in range(k):
            first = (index * k + j) * size
            with torch.autocast(self.model.device.type, dtype=self.amp_dtype, enabled=self.cfg.amp):
                loss = loss_fn(self.model, order[first : first + size], self.gen) / k
            self.scaler.scale(loss).backward()
            total += float(loss.detach())
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.step()
        return total

    def state_dict(self) -> dict[str, Any]:
        frozen = _frozen_prefixes(self.model)
        return {
            # frozen towers cannot have changed: the run's start model has them
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items() if not k.startswith(frozen)},
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict(),
            "generator": self.gen.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what `state_dict()` gave (other entries of `state` are ignored); the model must be the
        one the state was taken from, frozen towers aside."""
        missing, unexpected = self.model.load_state_dict(state["model"], strict=False)
        frozen = _frozen_prefixes(self.model)
        if unexpected or [k for k in missing if not k.startswith(frozen)]:
            raise InvalidInputError(
                f"weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.scaler.load_state_dict(state["scaler"])
        self.gen.set_state(state["generator"])


def _frozen_prefixes(model: DualEncoder) -> tuple[str, ...]:
    towers = {"audio_tower.": model.audio_tower, "text_tower.": model.text_tower}
    return tuple(k for k, t in towers.items() if not any(p.requires_grad for p in t.parameters()))


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
