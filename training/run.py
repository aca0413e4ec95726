"""A training run from a config file: stages in order, each starting from the previous stage's weights.

The paper's recipe is two stages (pre-train on several caption sets, fine-tune on one with augmented
captions). A stage whose towers are both frozen (and still their source's weights) trains the projections
on cached tower features (audiosearch.training.trainer); a stage with `frozen: {audio: false}` and/or
`{text: false}` trains those towers end to end from raw audio (audiosearch.training.towers). By default a
tower is frozen when the model's config says so (`aisfx`, `lite`: both; `paper`: neither).

Layout of `output`: `<stage>/` checkpoint after each stage, `state.json` (finished stages, per-epoch
history), `model/` the final model, `steps/<stage>.pt` the running stage's step checkpoint (with
`checkpoint_every_steps`). Resume: a rerun skips finished stages, starts from the last finished stage's
checkpoint, and continues an interrupted stage from its last step checkpoint (else from its first epoch).

Example (YAML; paths relative to the config file):

    model: aisfx
    output: runs/esc
    seed: 0
    stages:
      - name: pretrain
        data: [{csv: data/0ad/captions.csv}, {csv: data/esc10/captions.csv}]
        epochs: 10
        lr: 1.0e-3
      - name: finetune
        data: [{csv: data/esc10/captions.csv}]
        val: [{csv: data/booth/labels.csv, caption_column: label}]
        epochs: 5
        lr: 2.0e-4
        augment: true
        extra_captions: data/esc10/llm_captions.csv
        checkpoint_every_steps: 100
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from audiosearch.core.atomic import atomic_write_json
from audiosearch.core.device import resolve_device
from audiosearch.core.errors import InvalidInputError, ModelLoadError
from audiosearch.models import provenance
from audiosearch.models.checkpoint import load_model, save_model
from audiosearch.models.dual_encoder import DualEncoder
from audiosearch.training.augment import augment_rows, load_extra_captions
from audiosearch.training.data import CaptionRow, DatasetError
from audiosearch.training.datasets import load_rows
from audiosearch.training.run_config import (  # noqa: F401  (re-exported: the config API lives beside the runner)
    FINAL,
    DataSpec,
    Patchout,
    Progress,
    RunConfig,
    StageConfig,
    check_model_config,
    load_run_config,
    parse_data_specs,
    parse_model,
    parse_run_config,
)
from audiosearch.training.towers import evaluate_rows_fast, set_frozen, train_towers, trainable_parts
from audiosearch.training.trainer import (
    EvalSet,
    StepCheckpoint,
    TrainConfig,
    eval_set_from_rows,
    evaluate,
    pairs_from_rows,
    reset_projections,
    train_projections,
)

log = logging.getLogger(__name__)
STATE = "state.json"
STEPS = "steps"
# ---------------------------------------------------------------- running


@dataclass
class RunResult:
    model_dir: Path
    state: dict[str, Any]


def run_training(cfg: RunConfig, progress: Progress | None = None, read_root: Path | None = None) -> RunResult:
    """Run (or resume) every stage; returns where the final model was saved and the run state.

    `progress` gets one event per epoch ({"stage", "epoch", "epochs", "step", "loss", "lr", "temperature",
    "metrics"}) and, with `checkpoint_every_steps`, one per step checkpoint ({..., "event": "checkpoint"},
    metrics of the last finished epoch); `read_root` additionally confines the audio files named inside
    the caption files."""
    cfg.output.mkdir(parents=True, exist_ok=True)
    state = _load_state(cfg)
    done = state["finished"]
    model = _start_model(cfg, done).to(resolve_device(cfg.device))
    cache = cfg.cache_dir or os.environ.get("AUDIOSEARCH_FEATURE_CACHE") or cfg.output / "features"
    for index, stage in enumerate(cfg.stages):
        if stage.name in done:
            log.info("stage %s: finished earlier, skipped (checkpoint %s)", stage.name, cfg.output / stage.name)
            _step_file(cfg, stage).unlink(missing_ok=True)  # left by a crash between save and clean-up
            continue
        current = state["current"] if (state["current"] or {}).get("stage") == stage.name else None
        state["current"] = current or {"stage": stage.name, "epoch": 0, "epochs": stage.epochs}
        _write_state(cfg.output, state)

        def on_event(event: dict[str, Any], stage: StageConfig = stage) -> None:
            # state.json tracks the running epoch (and step) too, so a reader sees progress without the log
            state["current"] = {
                "stage": stage.name,
                "epoch": event["epoch"],
                "epochs": stage.epochs,
                "step": event.get("step"),
                "loss": event.get("loss"),
                "metrics": event["metrics"],
            }
            _write_state(cfg.output, state)
            if progress is not None:
                progress(event)

        ckpt = _step_checkpoint(cfg, stage, cfg.seed + index)
        history = _run_stage(model, stage, cfg.seed + index, str(cache), on_event, read_root, ckpt)
        detail = f"audiosearch train {cfg.output}, stage {stage.name}"
        model.provenance = provenance.record_training(model.provenance, model, detail)  # saved beside the weights
        save_model(model, cfg.output / stage.name)
        state["stages"][stage.name] = {"history": history, "checkpoint": str(cfg.output / stage.name)}
        done.append(stage.name)
        state["current"] = None
        _write_state(cfg.output, state)
        _step_file(cfg, stage).unlink(missing_ok=True)
        log.info("stage %s: saved %s", stage.name, cfg.output / stage.name)
    final = save_model(model, cfg.output / FINAL)
    state["model"] = str(final)
    _write_state(cfg.output, state)
    return RunResult(final, state)


def _step_file(cfg: RunConfig, stage: StageConfig) -> Path:
    return cfg.output / STEPS / f"{stage.name}.pt"


def _step_checkpoint(cfg: RunConfig, stage: StageConfig, seed: int) -> StepCheckpoint | None:
    if not stage.checkpoint_every_steps:
        return None
    # What the steps depend on; a checkpoint written under another stage config is refused, not mixed in.
    spec = {"stage": stage.model_dump(), "seed": seed, "model": cfg.model, "reset": cfg.reset_projections}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return StepCheckpoint(_step_file(cfg, stage), stage.checkpoint_every_steps, key)


def _load_state(cfg: RunConfig) -> dict[str, Any]:
    path = cfg.output / STATE
    fresh: dict[str, Any] = {"finished": [], "stages": {}, "current": None, "model": None, "config": cfg.to_dict()}
    if not path.is_file():
        return fresh
    try:
        state = json.loads(path.read_text())
        done = list(state["finished"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: unreadable run state ({err}); remove it to start over") from None
    names = [s.name for s in cfg.stages]
    if done != names[: len(done)]:
        raise DatasetError(
            f"{path}: finished stages {done} are not a prefix of this config's stages {names}; "
            "use a new output folder for a different run"
        )
    state["config"] = cfg.to_dict()
    return state


def _start_model(cfg: RunConfig, done: Sequence[str]) -> DualEncoder:
    if done:
        log.info("resuming after stage %s", done[-1])
        return load_model(cfg.output / done[-1])
    check_model_config(cfg.model)
    try:
        model = load_model(cfg.model)
    except ModelLoadError as err:
        raise DatasetError(f"model: {err}") from None
    return reset_projections(model, cfg.seed) if cfg.reset_projections else model


def stage_rows(specs: Sequence[DataSpec], read_root: Path | None = None) -> list[CaptionRow]:
    """The rows of a stage's caption files; with `read_root`, audio paths inside them must stay in it
    (checked before any file is looked at: no file-existence oracle outside the root)."""
    confine = read_root.resolve() if read_root is not None else None
    rows: list[CaptionRow] = []
    for spec in specs:
        rows += load_rows(
            spec.csv,
            spec.format,
            spec.audio_root,
            spec.caption_column,
            spec.audio_pattern,
            spec.skip_missing,
            confine=confine,
        )
    return rows


def _run_stage(
    model: DualEncoder,
    stage: StageConfig,
    seed: int,
    cache: str,
    progress: Progress | None,
    read_root: Path | None,
    ckpt: StepCheckpoint | None,
) -> list[dict[str, float]]:
    rows = stage_rows(stage.data, read_root)
    if stage.extra_captions is not None:
        rows += load_extra_captions(stage.extra_captions, rows)
    if stage.augment:
        rows = augment_rows(rows, seed=seed)
    val_rows = [(_val_name(spec, i, stage.val), stage_rows([spec], read_root)) for i, spec in enumerate(stage.val)]
    cached = _prepare(model, stage)
    tc = TrainConfig(
        epochs=stage.epochs,
        batch_size=stage.batch_size,
        lr=stage.lr,
        weight_decay=stage.weight_decay,
        warmup_fraction=stage.warmup_fraction,
        seed=seed,
        accumulate_steps=stage.accumulate_steps,
        amp=stage.amp,
    )
    last: dict[str, Any] = {}

    def epoch_done(rec: dict[str, float]) -> None:
        last.update(rec)
        _report(progress, stage, rec)

    def step_saved(rec: dict[str, float]) -> None:
        metrics = {k: v for k, v in last.items() if "/" in k}
        _report(progress, stage, {**rec, **metrics}, event="checkpoint")

    if cached:
        pairs = pairs_from_rows(model, rows, cache)
        val: list[EvalSet] = [eval_set_from_rows(model, name, r, cache) for name, r in val_rows]
        start = _start(model, ckpt, lambda: _val_metrics(model, val), progress, stage)
        log.info(
            "stage %s: %d pairs (%d clips), %d epochs, projections on cached features",
            stage.name,
            len(pairs),
            len(pairs.audio),
            stage.epochs,
        )
        last.update(start)
        result = train_projections(model, pairs, val, tc, epoch_done, ckpt, step_saved)
    else:
        start = _start(
            model,
            ckpt,
            lambda: {f"{n}/{k}": v for n, r in val_rows for k, v in evaluate_rows_fast(model, r).items()},
            progress,
            stage,
        )
        log.info(
            "stage %s: %d rows, %d epochs, end to end (%s)",
            stage.name,
            len(rows),
            stage.epochs,
            ", ".join(trainable_parts(model)),
        )
        last.update(start)
        result = train_towers(model, rows, val_rows, tc, epoch_done, ckpt, step_saved)
    # Epoch 0 = the start weights: every history shows what the stage changed.
    return [start, *result.history]


def _prepare(model: DualEncoder, stage: StageConfig) -> bool:
    """Freeze / unfreeze towers and set patchout for the stage; True when it trains projections on cached
    features (both towers frozen and still their source's weights, so cached features stay valid)."""
    frozen = {side: stage.frozen.get(side, side in model.config.frozen_towers) for side in ("audio", "text")}
    set_frozen(model, frozen["audio"], frozen["text"])
    if stage.patchout is not None:
        if not hasattr(model.audio_tower, "set_patchout"):
            raise InvalidInputError(
                f"stage {stage.name}: patchout applies to PaSST audio towers only, not {model.config.audio.kind}"
            )
        model.audio_tower.set_patchout(stage.patchout.time, stage.patchout.frequency)
    return all(frozen.values()) and {"audio", "text"} <= set(model.config.frozen_towers)


def _start(
    model: DualEncoder,
    ckpt: StepCheckpoint | None,
    metrics: Callable[[], dict[str, float]],
    progress: Progress | None,
    stage: StageConfig,
) -> dict[str, float]:
    """The stage's epoch-0 record, reported. A stage resumed from a step checkpoint takes it from there
    (the weights in memory are no longer the stage's start) and does not report it again."""
    saved = ckpt.read() if ckpt is not None else None
    if saved is not None:
        return dict(saved["meta"]["start"])
    start = {"epoch": 0.0, **metrics()}
    if ckpt is not None:
        ckpt.meta = {"start": start}
    _report(progress, stage, start)
    return start


def _val_name(spec: DataSpec, index: int, specs: Sequence[DataSpec]) -> str:
    """Metric prefix: the CSV's name, or its folder's for the shared layout ('esc10/captions.csv' ->
    'esc10'); numbered when two val sets would share one."""

    def base(s: DataSpec) -> str:
        return s.csv.parent.name if s.csv.stem in ("captions", "labels") else s.csv.stem

    name = base(spec)
    return name if sum(base(s) == name for s in specs) == 1 else f"{name}{index}"


def _val_metrics(model: DualEncoder, val: Sequence[EvalSet]) -> dict[str, float]:
    return {f"{data.name}/{k}": v for data in val for k, v in evaluate(model, data).items()}


def _report(progress: Progress | None, stage: StageConfig, record: dict[str, float], event: str = "epoch") -> None:
    metrics = {k: v for k, v in record.items() if "/" in k}
    out = {
        "stage": stage.name,
        "epochs": stage.epochs,
        "time": time.time(),
        "metrics": metrics,
        **{k: v for k, v in record.items() if "/" not in k},
    }
    out["epoch"] = int(record["epoch"])
    if "step" in out:
        out["step"] = int(out["step"])
    if event != "epoch":
        out["event"] = event
    else:
        log.info(
            "stage %s epoch %d/%d: %s",
            stage.name,
            out["epoch"],
            stage.epochs,
            ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "step")),
        )
    if progress is not None:
        progress(out)


def _write_state(output: Path, state: dict[str, Any]) -> None:
    atomic_write_json(output / STATE, state)
