"""Run configs: the pydantic models a training run is made of, checked when a YAML/JSON file is read.

Relative paths start at the config file's folder; the service additionally confines data paths to a
read root and outputs to a write root (the validation context, `_Paths`). Every error is one line that
names the source and the key path, e.g. `run.yaml: stages[1].lr: must be a positive number, got 0`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
    with_config,
)
from typing_extensions import TypedDict  # pydantic needs this one, not typing's, before Python 3.12

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.config import ModelConfig
from audiosearch.training.config_errors import error_line
from audiosearch.training.data import DatasetError
from audiosearch.training.datasets import FORMATS, REQUIRED_COLUMNS, read_header

FINAL = "model"  # the output subfolder of the final model, so no stage may take that name
DEVICES = ("auto", "cpu", "cuda")
# Bounds on what a client of POST /train may ask for: far above any real run, low enough that a typo
# or a hostile request cannot ask for a run of centuries or a config that takes minutes to check.
MAX_EPOCHS, MAX_BATCH, MAX_ACCUMULATE, MAX_STEP_INTERVAL, MAX_LR = 10_000, 65_536, 1024, 10_000_000, 10.0
MAX_STAGES, MAX_SPECS, MAX_NAME = 100, 1000, 100  # MAX_NAME: a stage name is a file name too
# Seeds reach numpy's and torch's generators (numpy's legacy seeds stop at 2**32 - 1; a larger one failed hours
# later in the job); patchout counts patches, a few dozen at most.
MAX_SEED, MAX_PATCHOUT = 2**32 - 1 - MAX_STAGES, 10_000

Progress = Callable[[dict[str, Any]], None]


# ---------------------------------------------------------------- validation context: paths


@dataclass(frozen=True)
class _Paths:
    """Where relative paths start, and the folders data (read) and outputs (write) must stay in."""

    base: Path
    read_root: Path | None = None
    write_root: Path | None = None


def _paths(info: ValidationInfo) -> _Paths:
    return info.context if isinstance(info.context, _Paths) else _Paths(Path.cwd())


def _resolve(value: Path, base: Path) -> Path:
    # resolve() follows symlinks and folds '..', so a confinement check sees the real target.
    try:
        return (base / value.expanduser()).resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop, an unknown '~user'
        raise ValueError(f"cannot resolve {value} ({err})") from None


def _confined(value: Path, info: ValidationInfo, write: bool) -> Path:
    paths = _paths(info)
    path = _resolve(value, paths.base)
    root = paths.write_root if write else paths.read_root
    if root is not None and not path.is_relative_to(root):
        raise ValueError(f"{value} is outside the allowed {'output' if write else 'data'} folder")
    return path


def _not_empty(value: Any) -> Any:
    if value == "":  # Path("") would be the config's own folder
        raise ValueError("must be a path")
    return value


def _read_path(value: Path, info: ValidationInfo) -> Path:
    return _confined(value, info, write=False)


def _write_path(value: Path, info: ValidationInfo) -> Path:
    return _confined(value, info, write=True)


def _is(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except OSError:  # a name too long for the file system, say: not a file or folder we can use
        return False


def _existing_file(path: Path) -> Path:
    if not _is(path.is_file):
        raise ValueError(f"file {path} not found")
    return path


def _existing_dir(path: Path) -> Path:
    if not _is(path.is_dir):
        raise ValueError(f"{path} is not a directory")
    return path


# Paths arrive as strings from YAML/JSON, so they are the one lax type in otherwise strict models.
_Path = Annotated[Path, Strict(False), BeforeValidator(_not_empty)]
OutputPath = Annotated[_Path, AfterValidator(_write_path)]
DataFile = Annotated[_Path, AfterValidator(_read_path), AfterValidator(_existing_file)]
DataDir = Annotated[_Path, AfterValidator(_read_path), AfterValidator(_existing_dir)]


# ---------------------------------------------------------------- other field checks


def _one_of(choices: Sequence[str]) -> AfterValidator:
    def check(value: str) -> str:
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}, got {value!r}")
        return value

    return AfterValidator(check)


def _stage_name(name: str) -> str:
    # It names the stage's checkpoint folder and step file, so nothing that could walk out of `output`.
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"must be letters, digits, '-' or '_', got {name!r}")
    return name


def _file_pattern(pattern: str) -> str:
    if "{" not in pattern:
        raise ValueError(f"must be a file name pattern like '{{youtube_id}}.wav', got {pattern!r}")
    return pattern


def _blank_is(empty: Callable[[], Any]) -> BeforeValidator:
    """A YAML key left blank (`val:`) is None: read it as empty."""
    return BeforeValidator(lambda value: empty() if value is None else value)


def _model_name(name: str, info: ValidationInfo) -> str:
    """A profile name, or a model directory (shared data or an earlier job's output) made absolute."""
    from audiosearch.models.profiles import PROFILES

    if name not in PROFILES:
        paths = _paths(info)
        path = _resolve(Path(name), paths.base)
        roots = [r for r in (paths.read_root, paths.write_root) if r is not None]
        if roots and not any(path.is_relative_to(r) for r in roots):
            raise ValueError(f"{name} is outside the allowed data and output folders")
        if not _is((path / "config.json").is_file):
            raise ValueError(f"unknown model {name!r}: use one of {', '.join(PROFILES)} or a model directory")
        name = str(path)
    problem = _model_config_problem(name)
    if problem is not None:
        raise ValueError(problem)
    return name


ModelName = Annotated[str, Field(min_length=1), AfterValidator(_model_name)]


# ---------------------------------------------------------------- the config models


class _Strict(BaseModel):
    # strict: `epochs: "3"` or `augment: 1` is a mistake to report, not a value to coerce
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


@with_config(ConfigDict(extra="forbid", strict=True))
class Frozen(TypedDict, total=False):
    """Which towers stay frozen in a stage; a side left out follows the model config's frozen_towers."""

    audio: bool
    text: bool


class DataSpec(_Strict):
    """One caption file of a stage's `data` or `val` (`file:` or `csv:` in a config, whatever its format).

    Fields are declared in validation order: the caption file is checked last, against the format and
    caption column already read."""

    format: Annotated[str, _one_of(FORMATS)] = "csv"
    caption_column: str = Field("caption", min_length=1)  # format csv only
    audio_pattern: Annotated[str, AfterValidator(_file_pattern)] | None = None  # audiocaps / wavcaps
    audio_root: DataDir | None = None  # default: the file's folder
    skip_missing: bool = False  # drop rows whose audio file is absent instead of failing
    csv: DataFile = Field(validation_alias=AliasChoices("csv", "file"))

    @model_validator(mode="before")
    @classmethod
    def _one_caption_file(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("csv" in data) == ("file" in data):
            raise ValueError("needs exactly one of 'file' or 'csv' (the caption file)")
        return data

    @field_validator("csv")
    @classmethod
    def _header(cls, path: Path, info: ValidationInfo) -> Path:
        """Header check now, so a bad column fails at submit time rather than hours into stage 2."""
        fmt, column = info.data.get("format"), info.data.get("caption_column")
        if fmt is None or column is None:  # already reported
            return path
        needed = {"csv": ("path", column), **REQUIRED_COLUMNS}.get(fmt)
        if needed is not None:
            header = read_header(path)
            missing = [c for c in needed if c not in header]
            if missing:
                raise ValueError(f"{path} has no column(s) {missing}; found {header}")
        return path


class Patchout(_Strict):
    time: int = Field(15, ge=0, le=MAX_PATCHOUT)  # reference recipe (Primus et al. 2023; hear21passt s_patchout_t / _f)
    frequency: int = Field(2, ge=0, le=MAX_PATCHOUT)


DataSpecs = Annotated[list[DataSpec], Field(min_length=1, max_length=MAX_SPECS)]


class StageConfig(_Strict):
    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(_stage_name)]
    data: DataSpecs
    val: Annotated[list[DataSpec], _blank_is(list), Field(max_length=MAX_SPECS)] = []
    epochs: int = Field(10, ge=1, le=MAX_EPOCHS)
    lr: float = Field(1e-3, gt=0, le=MAX_LR)
    batch_size: int = Field(64, ge=2, le=MAX_BATCH)
    warmup_fraction: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    augment: bool = False  # built-in caption templates (audiosearch.training.augment)
    extra_captions: DataFile | None = None  # path,caption CSV merged as extra positives whenever given
    frozen: Annotated[Frozen, _blank_is(dict)] = Field(default_factory=dict)
    accumulate_steps: int = Field(1, ge=1, le=MAX_ACCUMULATE)  # micro-batches of batch_size per step
    amp: bool = False  # fp16 + loss scaling on CUDA, bf16 autocast on CPU
    checkpoint_every_steps: int = Field(0, ge=0, le=MAX_STEP_INTERVAL)  # 0: only the end-of-stage one
    # PaSST towers in training; None (also what to_dict writes for it) keeps the tower's own sizes
    patchout: Patchout | None = None


class RunConfig(_Strict):
    model: ModelName  # profile name or model directory to start from
    output: OutputPath
    stages: Annotated[list[StageConfig], Field(min_length=1, max_length=MAX_STAGES)]
    seed: int = Field(0, ge=0, le=MAX_SEED)
    # Re-draw the start model's projections from `seed`: measures what the run itself learns, and makes
    # the run reproducible from its config alone.
    reset_projections: bool = False
    cache_dir: OutputPath | None = None  # tower-feature cache; default $AUDIOSEARCH_FEATURE_CACHE or <output>/features
    device: Annotated[str, _one_of(DEVICES)] = "auto"  # auto: cuda when available, else cpu

    @field_validator("stages")
    @classmethod
    def _unique_names(cls, stages: list[StageConfig]) -> list[StageConfig]:
        names = [s.name for s in stages]
        bad = sorted({n for n in names if n == FINAL or names.count(n) > 1})
        if bad:
            raise ValueError(f"stage names must be unique and not {FINAL!r}, got {bad}")
        return stages

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with absolute paths: re-parsing it from any folder gives the same run."""
        return self.model_dump(mode="json")


_RUN = TypeAdapter(RunConfig)
_SPECS = TypeAdapter(DataSpecs)
_MODEL = TypeAdapter(ModelName)


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
    return _validate(_RUN, data, source, _context(base_dir, read_root, write_root))


def parse_data_specs(
    data: Any, base_dir: str | Path, source: str = "request", read_root: Path | None = None
) -> list[DataSpec]:
    """A list of {file|csv, format?, audio_root?, ...} checked like a stage's `data` (for evaluation)."""
    return _validate(_SPECS, data, source, _context(base_dir, read_root, None), where=("data",))


def parse_model(
    name: Any,
    base_dir: str | Path,
    source: str = "request",
    read_root: Path | None = None,
    write_root: Path | None = None,
) -> str:
    """A profile name or a confined model directory (every model trains: frozen towers as projections on
    cached features, the others end to end)."""
    return _validate(_MODEL, name, source, _context(base_dir, read_root, write_root), where=("model",))


def _context(base_dir: str | Path, read_root: Path | None, write_root: Path | None) -> _Paths:
    return _Paths(
        Path(base_dir),
        read_root.resolve() if read_root else None,
        write_root.resolve() if write_root else None,
    )


def _validate(adapter: TypeAdapter[Any], data: Any, source: str, paths: _Paths, where: tuple[str, ...] = ()) -> Any:
    try:
        return adapter.validate_python(data, context=paths)
    except ValidationError as err:
        raise DatasetError(error_line(err, source, where)) from None


def check_model_config(model: str) -> None:
    """Read the model's config alone (loading PaSST + RoBERTa to find a typo would take minutes)."""
    problem = _model_config_problem(model)
    if problem is not None:
        raise DatasetError(f"model: {problem}")


def _model_config_problem(model: str) -> str | None:
    from audiosearch.models.profiles import PROFILES

    try:
        if model not in PROFILES:
            ModelConfig.from_dict(json.loads((Path(model) / "config.json").read_text()))
    except (OSError, ValueError, ModelLoadError) as err:
        return f"cannot read {model}/config.json ({err})"
    return None
