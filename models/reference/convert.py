"""A published checkpoint -> our model directory: config.json, model.safetensors, tokenizer/, provenance.json and
import.json (what was converted, what was left out and why).

Every tensor of the checkpoint's state dict is either converted or listed as ignored with its reason; a tensor
the layout does not know, a missing one or one of the wrong shape stops the import with one line naming it.
Names and shapes are checked against the DualEncoder the directory will load into (built on the meta device:
shapes only, no memory), so a directory that imports also loads.
"""

from __future__ import annotations

import copy
import fnmatch
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from audiosearch.core.atomic import atomic_directory
from audiosearch.core.errors import ModelLoadError
from audiosearch.models import provenance
from audiosearch.models.config import ModelConfig
from audiosearch.models.model_dir import CONFIG, WEIGHTS
from audiosearch.models.reference.layouts import COMPILED, LAYOUTS, TAU, TOP_LEVEL_IGNORED, Layout, import_config
from audiosearch.models.reference.unpickle import load_checkpoint

REPORT = "import.json"
TEMPERATURE = "log_temperature"


@dataclass
class ImportReport:
    directory: Path
    source: Path
    format: str
    converted: int
    ignored: list[tuple[str, str]] = field(default_factory=list)  # state-dict keys left out, with reasons
    other_entries: list[tuple[str, str]] = field(default_factory=list)  # top-level checkpoint entries
    compiled: bool = False  # keys carried torch.compile's _orig_mod.

    def summary(self) -> str:
        return (
            f"imported {self.source.name} ({self.format}) into {self.directory}: {self.converted} tensors converted, "
            f"{len(self.ignored)} ignored, {len(self.other_entries)} training entries left out (reasons in {REPORT})"
        )


def import_checkpoint(
    path: str | Path, fmt: str, out: str | Path, tokenizer: str = "roberta-large", config: ModelConfig | None = None
) -> ImportReport:
    """Convert `path` (a `fmt` checkpoint) into the model directory `out`, written whole or not at all.

    `tokenizer`: roberta-large's tokenizer, a hub name or a local folder; it is copied into the directory so
    the model loads offline. `config`: the architecture to check against (default: the paper model at full
    size; tests pass small ones).
    """
    if fmt not in LAYOUTS:
        raise ModelLoadError(f"unknown checkpoint format {fmt!r}; known: {', '.join(LAYOUTS)}")
    path, out = Path(path), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):  # never replace a model (or anything) there
        raise ModelLoadError(f"{out} already exists: import into a new directory")
    layout = LAYOUTS[fmt]
    checkpoint = load_checkpoint(path)
    state, other = _state_dict(path, checkpoint)
    cfg = copy.deepcopy(config) if config is not None else import_config(fmt)
    model = _shape_model(cfg, tokenizer)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    mapping, ignored = plan({k: tuple(v.shape) for k, v in state.items()}, layout, expected)
    _check_tokenizer(model.text_tower.tokenizer, tokenizer, expected, cfg)
    tensors = {ours: state[theirs].detach().to(torch.float32).contiguous() for ours, theirs in mapping.items()}
    tau = float(tensors[TEMPERATURE].reshape(()).abs())
    if not tau > 0 or not math.isfinite(tau):
        raise ModelLoadError(f"{mapping[TEMPERATURE]}: temperature {tau} is not positive")
    tensors[TEMPERATURE] = torch.tensor(math.log(tau), dtype=torch.float32)
    cfg.temperature_init = tau
    report = ImportReport(out, path, fmt, len(mapping), ignored, other, any(COMPILED in k for k in state))
    _write(out, cfg, tensors, model.text_tower.tokenizer, report, checkpoint.get("hyper_parameters"), layout)
    return report


def plan(
    shapes: Mapping[str, tuple[int, ...]], layout: Layout, expected: Mapping[str, tuple[int, ...]]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """(our key -> checkpoint key for every tensor we need, [(checkpoint key, why ignored)]), or a one-line
    ModelLoadError naming the first tensor that is unknown, duplicated, misshaped or missing."""
    mapping: dict[str, str] = {}
    ignored: list[tuple[str, str]] = []
    for key in sorted(shapes):
        clean = ".".join(p for p in key.split(".") if p != COMPILED.rstrip("."))
        why = _ignored(clean, layout)
        if why is not None:
            ignored.append((key, why))
            continue
        ours = TEMPERATURE if clean == TAU else _ours(clean, layout)
        if ours is None or ours not in expected:
            raise ModelLoadError(
                f"{key}: not part of the {layout.name} layout (PaSST-S + RoBERTa-large + linear projections); "
                "a checkpoint of another architecture cannot be imported"
            )
        if ours in mapping:
            raise ModelLoadError(f"{key}: the checkpoint holds this tensor twice (also as {mapping[ours]})")
        shape, want = tuple(shapes[key]), tuple(expected[ours])
        if ours == TEMPERATURE:
            if math.prod(shape) != 1:
                raise ModelLoadError(f"{key}: shape {list(shape)}, the temperature is one number")
        elif shape != want:
            raise ModelLoadError(f"{key}: shape {list(shape)}, the paper model needs {list(want)}")
        mapping[ours] = key
    missing = [k for k in expected if k not in mapping]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise ModelLoadError(
            f"the checkpoint lacks {source_key(missing[0], layout)}{more}: not a {layout.name} checkpoint"
        )
    return mapping, ignored


def _ignored(key: str, layout: Layout) -> str | None:
    if key in layout.ignored:
        return layout.ignored[key]
    return next((why for pattern, why in layout.ignored_patterns.items() if fnmatch.fnmatchcase(key, pattern)), None)


def _ours(key: str, layout: Layout) -> str | None:
    return next((ours + key[len(theirs) :] for theirs, ours in layout.prefixes if key.startswith(theirs)), None)


def source_key(ours: str, layout: Layout) -> str:
    if ours == TEMPERATURE:
        return TAU
    return next((theirs + ours[len(o) :] for theirs, o in layout.prefixes if ours.startswith(o)), ours)


def _state_dict(path: Path, checkpoint: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[tuple[str, str]]]:
    """The model's tensors and the checkpoint's other top-level entries (with why they are left out)."""
    if "state_dict" in checkpoint:
        state = checkpoint["state_dict"]
        other = [(k, TOP_LEVEL_IGNORED.get(k, "not model weights")) for k in checkpoint if k != "state_dict"]
    else:  # a bare state dict
        state, other = checkpoint, []
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path}: no state dict of tensors (is it a Lightning .ckpt of the reference code?)")
    return dict(state), other


def _shape_model(cfg: ModelConfig, tokenizer: str) -> Any:
    """The DualEncoder the directory will load into, on the meta device: names and shapes, no weights."""
    from audiosearch.models.dual_encoder import DualEncoder

    build = copy.deepcopy(cfg)
    build.text.options["tokenizer"] = tokenizer
    with torch.device("meta"):
        return DualEncoder(build)


def _check_tokenizer(tok: Any, name: str, expected: Mapping[str, tuple[int, ...]], cfg: ModelConfig) -> None:
    rows = expected["text_tower.model.embeddings.word_embeddings.weight"][0]
    if len(tok) > rows:
        raise ModelLoadError(
            f"tokenizer {name} has {len(tok)} tokens, the checkpoint's text tower {rows}: not its tokenizer"
        )
    pad = (cfg.text.options.get("config") or {}).get("pad_token_id")
    if pad is not None and tok.pad_token_id != pad:
        raise ModelLoadError(
            f"tokenizer {name} pads with id {tok.pad_token_id}, the text tower with {pad}: not its tokenizer"
        )


def _write(
    out: Path,
    cfg: ModelConfig,
    tensors: dict[str, torch.Tensor],
    tok: Any,
    report: ImportReport,
    hparams: Any,
    layout: Layout,
) -> None:
    digest = _sha256(report.source)
    where = f"{report.source.resolve()} ({layout.name} checkpoint of {layout.source}, sha256 {digest[:16]})"
    origin = provenance.part("checkpoint", where)
    tokenizer_dir = str(cfg.text.options["tokenizer"])
    with atomic_directory(out) as tmp:
        (tmp / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2))
        save_file(tensors, str(tmp / WEIGHTS))
        tok.save_pretrained(str(tmp / tokenizer_dir))
        provenance.write(tmp, {p: origin for p in provenance.PARTS})
        details = {
            "source": str(report.source.resolve()),
            "sha256": digest,
            "format": layout.name,
            "reference_code": layout.source,
            "converted": report.converted,
            "compiled_keys": report.compiled,
            "ignored": [{"key": k, "reason": r} for k, r in report.ignored],
            "other_entries": [{"key": k, "reason": r} for k, r in report.other_entries],
            "hyper_parameters": hparams,
        }
        (tmp / REPORT).write_text(json.dumps(details, indent=2, default=repr) + "\n")


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
