"""Run configs: the dataclasses a training run is made of, and the parser that checks a YAML/JSON file
against them (every error names the key path, e.g. `stages[0].data[1].csv`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from models.config import ModelConfig
from models.errors import InvalidInputError, ModelLoadError
from training.data import DatasetError
from training.datasets import FORMATS, REQUIRED_COLUMNS, read_header

FINAL = "model"  # the output subfolder of the final model, so no stage may take that name
SPEC_KEYS = {"csv", "file", "format", "audio_root", "caption_column", "audio_pattern", "skip_missing"}

Progress = Callable[[dict[str, Any]], None]


@dataclass
class DataSpec:
    csv: Path  # the caption file, whatever its format (`file:` or `csv:` in a config)
    audio_root: Path | None = None  # default: the file's folder
    caption_column: str = "caption"  # format csv only
    format: str = "csv"  # training.datasets.FORMATS
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
    augment: bool = False  # built-in caption templates (training.augment)
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
) -> str:
    """A profile name or a confined model directory (every model trains: frozen towers as projections on
    cached features, the others end to end)."""
    if not isinstance(name, str) or not name:
        raise DatasetError(f"{source}: model: must be a profile name or a model directory")
    return _Parser(source, Path(base_dir), read_root, write_root).model(name)


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
            # null is what RunConfig.to_dict writes for "the tower's own sizes" (job configs are re-parsed)
            patchout=self.patchout(raw["patchout"], _join(where, "patchout")) if raw.get("patchout") else None,
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

    def model(self, name: str) -> str:
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


def check_model_config(model: str) -> None:
    """Read the model's config alone (loading PaSST + RoBERTa to find a typo would take minutes)."""
    from models.profiles import PROFILES

    try:
        if model not in PROFILES:
            ModelConfig.from_dict(json.loads((Path(model) / "config.json").read_text()))
    except (OSError, ValueError, ModelLoadError) as err:
        raise DatasetError(f"model: cannot read {model}/config.json ({err})") from None
