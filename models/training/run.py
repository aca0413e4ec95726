"""A training run from a config file: stages in order, each starting from the previous stage's weights.

The paper's recipe is two stages (pre-train on several caption sets, fine-tune on one with augmented
captions). A stage whose towers are both frozen (and still their source's weights) trains the projections
on cached tower features (models.training.trainer); a stage with `frozen: {audio: false}` and/or
`{text: false}` trains those towers end to end from raw audio (models.training.towers). By default a
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
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.checkpoint import load_model, save_model
from models.config import ModelConfig
from models.dual_encoder import DualEncoder
from models.errors import InvalidInputError, ModelLoadError
from models.training.augment import augment_rows, load_extra_captions
from models.training.data import CaptionRow, DatasetError
from models.training.datasets import FORMATS, REQUIRED_COLUMNS, load_rows, read_header
from models.training.towers import evaluate_rows_fast, set_frozen, train_towers, trainable_parts
from models.training.trainer import (
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
FINAL = "model"
STEPS = "steps"
SPEC_KEYS = {"csv", "file", "format", "audio_root", "caption_column", "audio_pattern", "skip_missing"}

Progress = Callable[[dict[str, Any]], None]


@dataclass
class DataSpec:
    csv: Path  # the caption file, whatever its format (`file:` or `csv:` in a config)
    audio_root: Path | None = None  # default: the file's folder
    caption_column: str = "caption"  # format csv only
    format: str = "csv"  # models.training.datasets.FORMATS
    audio_pattern: str | None = None  # audiocaps / wavcaps: audio file name from the row's fields
    skip_missing: bool = False  # drop rows whose audio file is absent instead of failing


@dataclass
class Patchout:
    time: int = 15  # reference recipe (Primus et al. 2023; hear21passt s_patchout_t / s_patchout_f)
    frequency: int = 2


@dataclass
class StageConfig:
    name: str
    data: list[DataSpec]
    val: list[DataSpec] = field(default_factory=list)
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 64
    warmup_fraction: float = 0.1
    weight_decay: float = 0.01
    augment: bool = False  # built-in caption templates (models.training.augment)
    extra_captions: Path | None = None  # path,caption CSV merged as extra positives whenever given
    # {audio: bool, text: bool}; a side left out follows the model config's frozen_towers
    frozen: dict[str, bool] = field(default_factory=dict)
    accumulate_steps: int = 1  # micro-batches of batch_size per optimizer step
    amp: bool = False  # fp16 + loss scaling on CUDA, bf16 autocast on CPU
    checkpoint_every_steps: int = 0  # 0: only the end-of-stage checkpoint
    patchout: Patchout | None = None  # PaSST towers in training; None keeps the tower's (reference) sizes


@dataclass
class RunConfig:
    model: str  # profile name or model directory to start from
    output: Path
    stages: list[StageConfig]
    seed: int = 0
    # Re-draw the start model's projections from `seed`: measures what the run itself learns, and makes
    # the run reproducible from its config alone.
    reset_projections: bool = False
    cache_dir: Path | None = None  # tower-feature cache; default $AUDIOSEARCH_FEATURE_CACHE or <output>/features
    device: str = "auto"  # auto: cuda when available, else cpu

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with absolute paths: re-parsing it from any folder gives the same run."""
        return json.loads(json.dumps(asdict(self), default=str))


# ---------------------------------------------------------------- parsing


def load_run_config(path: str | Path) -> RunConfig:
    """Read a YAML (.yaml/.yml) or JSON file; relative paths in it are relative to the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise DatasetError(f"{path}: cannot read ({err.strerror or err})") from None
    import yaml  # YAML is a superset of JSON, so one parser reads both

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DatasetError(f"{path}: not valid YAML/JSON ({str(err).splitlines()[0]})") from None
    return parse_run_config(data, path.resolve().parent, source=str(path))


def parse_run_config(
    data: Any,
    base_dir: str | Path,
    source: str = "run config",
    read_root: Path | None = None,
    write_root: Path | None = None,
) -> RunConfig:
    """Typed config from a mapping. `read_root` / `write_root` confine data and output paths (after
    resolving `..` and symlinks); the service passes them, the CLI does not."""
    p = _Parser(source, Path(base_dir), read_root, write_root)
    top = p.mapping(data, "", {"model", "output", "stages", "seed", "reset_projections", "cache_dir", "device"})
    stages_raw = p.require(top, "stages", "")
    if not isinstance(stages_raw, list) or not stages_raw:
        raise p.error("stages", "must be a non-empty list")
    stages = [p.stage(s, f"stages[{i}]") for i, s in enumerate(stages_raw)]
    names = [s.name for s in stages]
    if len(set(names)) != len(names) or FINAL in names:
        raise p.error("stages", f"stage names must be unique and not {FINAL!r}, got {names}")
    model = p.require(top, "model", "")
    if not isinstance(model, str) or not model:
        raise p.error("model", "must be a profile name or a model directory")
    return RunConfig(
        model=p.model(model),
        output=p.path(p.require(top, "output", ""), "output", write=True),
        stages=stages,
        seed=p.integer(top.get("seed", 0), "seed", minimum=0),
        reset_projections=p.boolean(top.get("reset_projections", False), "reset_projections"),
        cache_dir=p.path(top["cache_dir"], "cache_dir", write=True) if top.get("cache_dir") is not None else None,
        device=p.choice(top.get("device", "auto"), "device", ("auto", "cpu", "cuda")),
    )


def parse_data_specs(
    data: Any, base_dir: str | Path, source: str = "request", read_root: Path | None = None
) -> list[DataSpec]:
    """A list of {file|csv, format?, audio_root?, ...} checked like a stage's `data` (for evaluation)."""
    return _Parser(source, Path(base_dir), read_root, None).specs(data, "data", required=True)


def parse_model(
    name: Any,
    base_dir: str | Path,
    source: str = "request",
    read_root: Path | None = None,
    write_root: Path | None = None,
    trainable: bool = True,
) -> str:
    """A profile name or a confined model directory. `trainable` is kept for callers; every model
    trains now (frozen towers as projections on cached features, the others end to end)."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{source}: model: must be a profile name or a model directory")
    return _Parser(source, Path(base_dir), read_root, write_root).model(name, trainable)


class _Parser:
    """Checks one field at a time so every error names the file and the field, e.g. stages[1].lr."""

    def __init__(self, source: str, base: Path, read_root: Path | None, write_root: Path | None) -> None:
        self.source, self.base = source, base
        self.read_root = read_root.resolve() if read_root else None
        self.write_root = write_root.resolve() if write_root else None

    def error(self, where: str, msg: str) -> DatasetError:
        return DatasetError(f"{self.source}: {where}: {msg}" if where else f"{self.source}: {msg}")

    def mapping(self, data: Any, where: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(data, Mapping):
            raise self.error(where, f"must be a mapping, got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - allowed)
        if unknown:
            raise self.error(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")
        return dict(data)

    def require(self, data: Mapping[str, Any], key: str, where: str) -> Any:
        if data.get(key) is None:
            raise self.error(_join(where, key), "is required")
        return data[key]

    def stage(self, data: Any, where: str) -> StageConfig:
        allowed = {f.name for f in fields(StageConfig)}
        raw = self.mapping(data, where, allowed)
        name = self.require(raw, "name", where)
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            raise self.error(_join(where, "name"), f"must be letters, digits, '-' or '_', got {name!r}")
        defaults = StageConfig(name, [])
        val = raw.get("val") or []
        extra = raw.get("extra_captions")
        return StageConfig(
            name=name,
            data=self.specs(self.require(raw, "data", where), _join(where, "data"), required=True),
            val=self.specs(val, _join(where, "val"), required=False),
            epochs=self.integer(raw.get("epochs", defaults.epochs), _join(where, "epochs"), minimum=1),
            lr=self.number(raw.get("lr", defaults.lr), _join(where, "lr")),
            batch_size=self.integer(raw.get("batch_size", defaults.batch_size), _join(where, "batch_size"), minimum=2),
            warmup_fraction=self.fraction(raw.get("warmup_fraction", defaults.warmup_fraction), where),
            weight_decay=self.number(
                raw.get("weight_decay", defaults.weight_decay), _join(where, "weight_decay"), allow_zero=True
            ),
            augment=self.boolean(raw.get("augment", False), _join(where, "augment")),
            extra_captions=self.file(extra, _join(where, "extra_captions")) if extra is not None else None,
            frozen=self.frozen(raw.get("frozen", {}), _join(where, "frozen")),
            accumulate_steps=self.integer(raw.get("accumulate_steps", 1), _join(where, "accumulate_steps"), minimum=1),
            amp=self.boolean(raw.get("amp", False), _join(where, "amp")),
            checkpoint_every_steps=self.integer(
                raw.get("checkpoint_every_steps", 0), _join(where, "checkpoint_every_steps"), minimum=0
            ),
            patchout=self.patchout(raw["patchout"], _join(where, "patchout")) if "patchout" in raw else None,
        )

    def frozen(self, data: Any, where: str) -> dict[str, bool]:
        raw = self.mapping(data if data is not None else {}, where, {"audio", "text"})
        return {side: self.boolean(v, _join(where, side)) for side, v in raw.items()}

    def patchout(self, data: Any, where: str) -> Patchout:
        raw = self.mapping(data, where, {"time", "frequency"})
        d = Patchout()
        return Patchout(
            self.integer(raw.get("time", d.time), _join(where, "time"), minimum=0),
            self.integer(raw.get("frequency", d.frequency), _join(where, "frequency"), minimum=0),
        )

    def choice(self, value: Any, where: str, allowed: Sequence[str]) -> str:
        if value not in allowed:
            raise self.error(where, f"must be one of {list(allowed)}, got {value!r}")
        return value

    def specs(self, data: Any, where: str, required: bool) -> list[DataSpec]:
        if not isinstance(data, list) or (required and not data):
            raise self.error(where, "must be a non-empty list of {file (or csv), format?, audio_root?, ...}")
        return [self.spec(item, f"{where}[{i}]") for i, item in enumerate(data)]

    def spec(self, item: Any, at: str) -> DataSpec:
        raw = self.mapping(item, at, SPEC_KEYS)
        fmt = self.choice(raw.get("format", "csv"), _join(at, "format"), FORMATS)
        column = raw.get("caption_column", "caption")
        if not isinstance(column, str) or not column:
            raise self.error(_join(at, "caption_column"), "must be a column name")
        pattern = raw.get("audio_pattern")
        if pattern is not None and (not isinstance(pattern, str) or "{" not in pattern):
            raise self.error(
                _join(at, "audio_pattern"), f"must be a file name pattern like '{{youtube_id}}.wav', got {pattern!r}"
            )
        root = raw.get("audio_root")
        root_path = self.path(root, _join(at, "audio_root")) if root is not None else None
        if root_path is not None and not root_path.is_dir():
            raise self.error(_join(at, "audio_root"), f"{root_path} is not a directory")
        if ("csv" in raw) == ("file" in raw):
            raise self.error(at, "needs exactly one of 'file' or 'csv' (the caption file)")
        key = "csv" if "csv" in raw else "file"
        path = self.file(raw[key], _join(at, key))
        needed = {"csv": ("path", column), **REQUIRED_COLUMNS}.get(fmt)
        if needed is not None:
            self.columns(path, needed, _join(at, key))
        return DataSpec(
            path,
            root_path,
            column,
            fmt,
            pattern,
            self.boolean(raw.get("skip_missing", False), _join(at, "skip_missing")),
        )

    def columns(self, csv_path: Path, needed: Sequence[str], where: str) -> None:
        """Header check now, so a bad column fails at submit time rather than hours into stage 2."""
        try:
            header = read_header(csv_path)
        except DatasetError as err:
            raise self.error(where, str(err)) from None
        missing = [c for c in needed if c not in header]
        if missing:
            raise self.error(where, f"{csv_path} has no column(s) {missing}; found {header}")

    def model(self, name: str, trainable: bool = True) -> str:
        from models.profiles import PROFILES

        if name in PROFILES:
            model = name
        else:
            # A model directory may be shared data or an earlier job's output.
            path = (self.base / Path(name).expanduser()).resolve()
            roots = [r for r in (self.read_root, self.write_root) if r is not None]
            if roots and not any(path.is_relative_to(r) for r in roots):
                raise self.error("model", f"{name} is outside the allowed data and output folders")
            if not (path / "config.json").is_file():
                raise self.error(
                    "model", f"unknown model {name!r}: use one of {', '.join(PROFILES)} or a model directory"
                )
            model = str(path)
        try:
            check_model_config(model)
        except InvalidInputError as err:
            raise self.error("model", str(err)) from None
        return model

    def path(self, value: Any, where: str, write: bool = False) -> Path:
        if not isinstance(value, str | Path) or not str(value):
            raise self.error(where, "must be a path")
        # resolve() follows symlinks and folds '..', so the confinement check sees the real target.
        path = (self.base / Path(value).expanduser()).resolve()
        root = self.write_root if write else self.read_root
        if root is not None and not path.is_relative_to(root):
            raise self.error(where, f"{value} is outside the allowed {'output' if write else 'data'} folder")
        return path

    def file(self, value: Any, where: str) -> Path:
        path = self.path(value, where)
        if not path.is_file():
            raise self.error(where, f"file {path} not found")
        return path

    def integer(self, value: Any, where: str, minimum: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(where, f"must be an integer >= {minimum}, got {value!r}")
        return value

    def number(self, value: Any, where: str, allow_zero: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)
        if not ok or value < 0 or (value == 0 and not allow_zero):
            raise self.error(where, f"must be a {'non-negative' if allow_zero else 'positive'} number, got {value!r}")
        return float(value)

    def fraction(self, value: Any, where: str) -> float:
        v = self.number(value, _join(where, "warmup_fraction"), allow_zero=True)
        if v >= 1:
            raise self.error(_join(where, "warmup_fraction"), f"must be in [0, 1), got {v}")
        return v

    def boolean(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, f"must be true or false, got {value!r}")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError("device: cuda was asked for but torch sees no CUDA device")
    return torch.device(name)


def _step_file(cfg: RunConfig, stage: StageConfig) -> Path:
    return cfg.output / STEPS / f"{stage.name}.pt"


def _step_checkpoint(cfg: RunConfig, stage: StageConfig, seed: int) -> StepCheckpoint | None:
    if not stage.checkpoint_every_steps:
        return None
    # What the steps depend on; a checkpoint written under another stage config is refused, not mixed in.
    spec = {"stage": asdict(stage), "seed": seed, "model": cfg.model, "reset": cfg.reset_projections}
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


def check_model_config(model: str) -> None:
    """Read the model's config alone (loading PaSST + RoBERTa to find a typo would take minutes)."""
    from models.profiles import PROFILES

    try:
        if model not in PROFILES:
            ModelConfig.from_dict(json.loads((Path(model) / "config.json").read_text()))
    except (OSError, ValueError, ModelLoadError) as err:
        raise DatasetError(f"model: cannot read {model}/config.json ({err})") from None


check_trainable = check_model_config  # the earlier name; every model trains now


def stage_rows(specs: Sequence[DataSpec], read_root: Path | None = None) -> list[CaptionRow]:
    rows: list[CaptionRow] = []
    for spec in specs:
        loaded = load_rows(
            spec.csv, spec.format, spec.audio_root, spec.caption_column, spec.audio_pattern, spec.skip_missing
        )
        if read_root is not None:
            root = read_root.resolve()
            outside = next((r for r in loaded if not r.path.is_relative_to(root)), None)
            if outside is not None:
                raise DatasetError(f"{spec.csv}: audio file {outside.clip_id} is outside the allowed data folder")
        rows += loaded
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
    write_json_atomic(output / STATE, state)


def write_json_atomic(path: Path, data: Any) -> None:
    """Temp file then os.replace: a reader (or a crash) never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
