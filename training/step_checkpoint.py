"""Step-level checkpoints: a training run's full state every N optimizer steps, resumed exactly.

Weights of trainable parts, optimizer, schedule, loss scaler, data order, losses so far and every RNG
(torch, CUDA, numpy, python), so a resumed run continues the same sequence as an uninterrupted one.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.atomic import atomic_write
from models.dual_encoder import DualEncoder
from models.errors import InvalidInputError

if TYPE_CHECKING:
    from training.trainer import _Loop

log = logging.getLogger(__name__)


@dataclass
class StepPosition:
    """Where a run is: optimizer steps done, this epoch's data order and losses, finished epochs' records."""

    step: int = 0
    order: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    losses: list[float] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class StepCheckpoint:
    """Training state every `every` optimizer steps in one file, replaced atomically.

    `key` identifies what wrote it (the caller's stage config); a file with another key is refused
    rather than resumed into a different run. `meta` is stored alongside for the caller.
    """

    path: Path
    every: int
    key: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def read(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # a torn write cannot happen (os.replace); anything else is foreign
            raise InvalidInputError(
                f"{self.path}: unreadable step checkpoint ({err}); delete it to restart the stage"
            ) from None
        if state.get("key") != self.key:
            raise InvalidInputError(
                f"{self.path}: step checkpoint of a different configuration; delete it or use a new output folder"
            )
        return state

    def resume(self, loop: _Loop) -> StepPosition | None:
        state = self.read()
        if state is None:
            return None
        missing, unexpected = loop.model.load_state_dict(state["model"], strict=False)
        frozen = _frozen_prefixes(loop.model)
        if unexpected or [k for k in missing if not k.startswith(frozen)]:
            raise InvalidInputError(
                f"{self.path}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        loop.optimizer.load_state_dict(state["optimizer"])
        loop.schedule.load_state_dict(state["schedule"])
        loop.scaler.load_state_dict(state["scaler"])
        loop.gen.set_state(state["generator"])
        _set_rng(state["rng"])
        self.meta = state["meta"]
        log.info("resuming from %s at step %d", self.path, state["step"])
        return StepPosition(state["step"], state["order"], state["losses"], state["history"])

    def save(self, loop: _Loop, pos: StepPosition) -> None:
        frozen = _frozen_prefixes(loop.model)
        state = {
            "key": self.key,
            "meta": self.meta,
            "step": pos.step,
            "order": pos.order,
            "losses": pos.losses,
            "history": pos.history,
            # frozen towers cannot have changed: the run's start model has them
            "model": {k: v.detach().cpu() for k, v in loop.model.state_dict().items() if not k.startswith(frozen)},
            "optimizer": loop.optimizer.state_dict(),
            "schedule": loop.schedule.state_dict(),
            "scaler": loop.scaler.state_dict(),
            "generator": loop.gen.get_state(),
            "rng": _get_rng(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: torch.save(state, f))  # a crash mid-write keeps the previous one
        log.info("step %d: checkpoint %s", pos.step, self.path)


def _frozen_prefixes(model: DualEncoder) -> tuple[str, ...]:
    towers = {"audio_tower.": model.audio_tower, "text_tower.": model.text_tower}
    return tuple(k for k, t in towers.items() if not any(p.requires_grad for p in t.parameters()))


def _get_rng() -> dict[str, Any]:
    """Global RNG states (dropout, patchout, mel jitter draw from torch's), as plain data for weights_only."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": list(random.getstate()[1]),
    }


def _set_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate((3, tuple(state["python"]), None))
