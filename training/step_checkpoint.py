"""Step-level checkpoints: a training run's full state every N optimizer steps, resumed exactly.

The loop's own state through its `state_dict()` (weights of trainable parts, optimizer, schedule, loss
scaler, data generator), the position (step, data order, losses so far) and the global RNGs (torch,
CUDA, numpy, python), so a resumed run continues the same sequence as an uninterrupted one. The loop is
anything `Resumable`, so this module needs nothing from the trainer that uses it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from audiosearch.core.atomic import atomic_write
from audiosearch.core.errors import InvalidInputError


class Resumable(Protocol):
    """What a step checkpoint saves and restores: a training loop (audiosearch.training.trainer.TrainLoop)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


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

    def resume(self, loop: Resumable) -> StepPosition | None:
        state = self.read()
        if state is None:
            return None
        try:
            loop.load_state_dict(state)
        except InvalidInputError as err:
            raise InvalidInputError(f"{self.path}: {err}") from None
        _set_rng(state["rng"])
        self.meta = state["meta"]
        log.info("resuming from %s at step %d", self.path, state["step"])
        return StepPosition(state["step"], state["order"], state["losses"], state["history"])

    def save(self, loop: Resumable, pos: StepPosition) -> None:
        state = {
            # the loop's entries sit beside the position's: the layout earlier versions wrote, so
            # their step checkpoints still resume
            **loop.state_dict(),
            "key": self.key,
            "meta": self.meta,
            "step": pos.step,
            "order": pos.order,
            "losses": pos.losses,
            "history": pos.history,
            "rng": _get_rng(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, lambda f: torch.save(state, f))  # a crash mid-write keeps the previous one
        log.info("step %d: checkpoint %s", pos.step, self.path)


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
