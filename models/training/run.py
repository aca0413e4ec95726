"""A training run from a config file: stages in order, each starting from the previous stage's weights.

The paper's recipe is two stages (pre-train on several caption sets, fine-tune on one with augmented
captions). Only projections of frozen towers train here (cached features, models.training.trainer);
a model with trainable towers (the `paper` profile) is refused as not supported yet.

Layout of `output`: `<stage>/` checkpoint after each stage, `state.json` (finished stages, per-epoch
history), `model/` the final model. Resume is per stage: a rerun skips finished stages and starts
from the last finished stage's checkpoint; an interrupted stage restarts from its first epoch.

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
"""

from __future__ import annotations

import csv
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

from models.checkpoint import load_model, save_model
from models.config import ModelConfig
from models.dual_encoder import DualEncoder
from models.errors import InvalidInputError, ModelLoadError
from models.training.augment import augment_rows, load_extra_captions
from models.training.data import CaptionRow, DatasetError, load_caption_csv
from models.training.features import require_frozen
from models.training.trainer import (
    EvalSet,
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

Progress = Callable[[dict[str, Any]], None]


@dataclass
class DataSpec:
    csv: Path
    audio_root: Path | None = None  # default: the CSV's folder
    caption_column: str = "caption"


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
    top = p.mapping(data, "", {"model", "output", "stages", "seed", "reset_projections", "cache_dir"})
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
    )


def parse_data_specs(
    data: Any, base_dir: str | Path, source: str = "request", read_root: Path | None = None
) -> list[DataSpec]:
    """A list of {csv, audio_root?, caption_column?} checked like a stage's `data` (for evaluation)."""
    return _Parser(source, Path(base_dir), read_root, None).specs(data, "data", required=True)


def parse_model(
    name: Any, base_dir: str | Path, source: str = "request", read_root: Path | None = None,
    write_root: Path | None = None, trainable: bool = True,
) -> str:
    """A profile name or a confined model directory; `trainable` also refuses models with trainable towers."""
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
            weight_decay=self.number(raw.get("weight_decay", defaults.weight_decay), _join(where, "weight_decay"),
                                     allow_zero=True),
            augment=self.boolean(raw.get("augment", False), _join(where, "augment")),
            extra_captions=self.file(extra, _join(where, "extra_captions")) if extra is not None else None,
        )

    def specs(self, data: Any, where: str, required: bool) -> list[DataSpec]:
        if not isinstance(data, list) or (required and not data):
            raise self.error(where, "must be a non-empty list of {csv, audio_root?, caption_column?}")
        out = []
        for i, item in enumerate(data):
            at = f"{where}[{i}]"
            raw = self.mapping(item, at, {"csv", "audio_root", "caption_column"})
            column = raw.get("caption_column", "caption")
            if not isinstance(column, str) or not column:
                raise self.error(_join(at, "caption_column"), "must be a column name")
            root = raw.get("audio_root")
            root_path = self.path(root, _join(at, "audio_root")) if root is not None else None
            if root_path is not None and not root_path.is_dir():
                raise self.error(_join(at, "audio_root"), f"{root_path} is not a directory")
            csv_path = self.file(self.require(raw, "csv", at), _join(at, "csv"))
            self.columns(csv_path, ("path", column), at)
            out.append(DataSpec(csv_path, root_path, column))
        return out

    def columns(self, csv_path: Path, needed: Sequence[str], where: str) -> None:
        """Header check now, so a bad column fails at submit time rather than hours into stage 2."""
        try:
            with open(csv_path, newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
        except (OSError, UnicodeDecodeError) as err:
            raise self.error(_join(where, "csv"), f"cannot read {csv_path} ({err})") from None
        missing = [c for c in needed if c not in header]
        if missing:
            raise self.error(_join(where, "csv"), f"{csv_path} has no column(s) {missing}; found {header}")

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
                raise self.error("model", f"unknown model {name!r}: use one of {', '.join(PROFILES)} or a model "
                                          "directory")
            model = str(path)
        try:
            if trainable:
                check_trainable(model)
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


def run_training(
    cfg: RunConfig, progress: Progress | None = None, read_root: Path | None = None
) -> RunResult:
    """Run (or resume) every stage; returns where the final model was saved and the run state.

    `progress` gets one event per epoch ({"stage", "epoch", "epochs", "loss", "lr", "temperature",
    "metrics"}); `read_root` additionally confines the audio files named inside the CSVs."""
    cfg.output.mkdir(parents=True, exist_ok=True)
    state = _load_state(cfg)
    done = state["finished"]
    model = _start_model(cfg, done)
    cache = cfg.cache_dir or os.environ.get("AUDIOSEARCH_FEATURE_CACHE") or cfg.output / "features"
    for index, stage in enumerate(cfg.stages):
        if stage.name in done:
            log.info("stage %s: finished earlier, skipped (checkpoint %s)", stage.name, cfg.output / stage.name)
            continue
        state["current"] = {"stage": stage.name, "epoch": 0, "epochs": stage.epochs}
        _write_state(cfg.output, state)

        def on_epoch(event: dict[str, Any], stage: StageConfig = stage) -> None:
            # state.json tracks the running epoch too, so a reader sees progress without the log
            state["current"] = {"stage": stage.name, "epoch": event["epoch"], "epochs": stage.epochs,
                                "loss": event.get("loss"), "metrics": event["metrics"]}
            _write_state(cfg.output, state)
            if progress is not None:
                progress(event)

        history = _run_stage(model, stage, cfg.seed + index, str(cache), on_epoch, read_root)
        save_model(model, cfg.output / stage.name)
        state["stages"][stage.name] = {"history": history, "checkpoint": str(cfg.output / stage.name)}
        done.append(stage.name)
        state["current"] = None
        _write_state(cfg.output, state)
        log.info("stage %s: saved %s", stage.name, cfg.output / stage.name)
    final = save_model(model, cfg.output / FINAL)
    state["model"] = str(final)
    _write_state(cfg.output, state)
    return RunResult(final, state)


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
    check_trainable(cfg.model)
    try:
        model = load_model(cfg.model)
    except ModelLoadError as err:
        raise DatasetError(f"model: {err}") from None
    require_frozen(model)
    return reset_projections(model, cfg.seed) if cfg.reset_projections else model


def check_trainable(model: str) -> None:
    """Refuse models with trainable towers from their config alone (loading PaSST + RoBERTa to find
    out would take minutes and the network)."""
    from models.profiles import PROFILES

    try:
        config = PROFILES[model] if model in PROFILES else ModelConfig.from_dict(
            json.loads((Path(model) / "config.json").read_text()))
    except (OSError, ValueError, ModelLoadError) as err:
        raise DatasetError(f"model: cannot read {model}/config.json ({err})") from None
    if {"audio", "text"} - set(config.frozen_towers):
        raise InvalidInputError(
            f"model {model!r} has trainable towers; training towers (the paper profile's PaSST + RoBERTa) "
            "is not supported yet: only projections of frozen towers train (e.g. the aisfx or lite profile)"
        )


def stage_rows(specs: Sequence[DataSpec], read_root: Path | None = None) -> list[CaptionRow]:
    rows: list[CaptionRow] = []
    for spec in specs:
        loaded = load_caption_csv(spec.csv, audio_root=spec.audio_root, caption_column=spec.caption_column)
        if read_root is not None:
            root = read_root.resolve()
            outside = next((r for r in loaded if not r.path.is_relative_to(root)), None)
            if outside is not None:
                raise DatasetError(f"{spec.csv}: audio file {outside.clip_id} is outside the allowed data folder")
        rows += loaded
    return rows


def _run_stage(
    model: DualEncoder, stage: StageConfig, seed: int, cache: str, progress: Progress | None, read_root: Path | None
) -> list[dict[str, float]]:
    rows = stage_rows(stage.data, read_root)
    if stage.extra_captions is not None:
        rows += load_extra_captions(stage.extra_captions, rows)
    if stage.augment:
        rows = augment_rows(rows, seed=seed)
    pairs = pairs_from_rows(model, rows, cache)
    val = [
        eval_set_from_rows(model, _val_name(spec, i, stage.val), stage_rows([spec], read_root), cache)
        for i, spec in enumerate(stage.val)
    ]
    tc = TrainConfig(epochs=stage.epochs, batch_size=stage.batch_size, lr=stage.lr, weight_decay=stage.weight_decay,
                     warmup_fraction=stage.warmup_fraction, seed=seed)
    log.info("stage %s: %d pairs (%d clips), %d epochs", stage.name, len(pairs), len(pairs.audio), stage.epochs)
    # Epoch 0 = the start weights: every history shows what the stage changed.
    start = {"epoch": 0.0, **_val_metrics(model, val)}
    _report(progress, stage, start)
    history = [start]
    history += train_projections(model, pairs, val, tc, lambda rec: _report(progress, stage, rec)).history
    return history


def _val_name(spec: DataSpec, index: int, specs: Sequence[DataSpec]) -> str:
    """Metric prefix: the CSV's name, or its folder's for the shared layout ('esc10/captions.csv' ->
    'esc10'); numbered when two val sets would share one."""

    def base(s: DataSpec) -> str:
        return s.csv.parent.name if s.csv.stem in ("captions", "labels") else s.csv.stem

    name = base(spec)
    return name if sum(base(s) == name for s in specs) == 1 else f"{name}{index}"


def _val_metrics(model: DualEncoder, val: Sequence[EvalSet]) -> dict[str, float]:
    return {f"{data.name}/{k}": v for data in val for k, v in evaluate(model, data).items()}


def _report(progress: Progress | None, stage: StageConfig, record: dict[str, float]) -> None:
    metrics = {k: v for k, v in record.items() if "/" in k}
    event = {"stage": stage.name, "epochs": stage.epochs, "time": time.time(), "metrics": metrics,
             **{k: v for k, v in record.items() if "/" not in k}}
    event["epoch"] = int(record["epoch"])
    log.info("stage %s epoch %d/%d: %s", stage.name, event["epoch"], stage.epochs,
             ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in ("epoch", "step")))
    if progress is not None:
        progress(event)


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
