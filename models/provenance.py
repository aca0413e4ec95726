"""Where each part of a model got its weights, and the refusal to serve parts that never got any.

A part (audio tower, text tower, projections, temperature) comes from a checkpoint file, a package, a hub
name or local directory, a training run, is the identity (a tied projection), or is random. A model directory
records this in provenance.json beside config.json (a sidecar, so it never changes the fingerprint);
`audiosearch.models.checkpoint.save_model` and `audiosearch import-checkpoint` write it. Bare profiles and directories
saved before the sidecar existed get it derived from their config, without loading anything, so
`audiosearch index|serve|search` can refuse an untrained model before spending minutes loading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from audiosearch.core.errors import ModelLoadError
from audiosearch.models.config import ModelConfig, TowerConfig
from audiosearch.models.model_dir import WEIGHTS, ModelSource, resolve

SIDECAR = "provenance.json"
PARTS = ("audio_tower", "text_tower", "projections", "temperature")
# Values of "from"; "random" is what index, serve and search refuse (the temperature only scales the
# training loss, so it never counts).
ORIGINS = ("checkpoint", "package", "hub", "directory", "trained", "identity", "stored", "initial", "random")
HOW_TO_FIX = (
    "import a published checkpoint (`audiosearch import-checkpoint`, README: Using the paper model) or train "
    "one (`audiosearch train`); --allow-untrained (AUDIOSEARCH_ALLOW_UNTRAINED=1 for the service) uses it anyway"
)

Provenance = dict[str, dict[str, str]]


def part(origin: str, detail: str) -> dict[str, str]:
    if origin not in ORIGINS:
        raise ValueError(f"unknown weight origin {origin!r}")
    return {"from": origin, "detail": detail}


def of_source(source: ModelSource) -> Provenance:
    """A model's provenance: its directory's sidecar, or derived from its config."""
    if source.directory is not None and (source.directory / SIDECAR).is_file():
        return read(source.directory)
    return derived(source.config, source.directory)


def read(directory: Path) -> Provenance:
    try:
        data = json.loads((directory / SIDECAR).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{directory / SIDECAR}: {err}") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(p), dict) for p in PARTS):
        raise ModelLoadError(f"{directory / SIDECAR}: needs an entry for each of {', '.join(PARTS)}")
    return {p: {"from": str(data[p].get("from")), "detail": str(data[p].get("detail", ""))} for p in PARTS}


def write(directory: Path, provenance: Provenance) -> None:
    (directory / SIDECAR).write_text(json.dumps(provenance, indent=2) + "\n")


def derived(config: ModelConfig, directory: Path | None) -> Provenance:
    """What a config implies: parts stored in `directory` are taken as trained (their origin unrecorded)."""
    stored = part("stored", f"{directory / WEIGHTS} (origin not recorded)") if directory is not None else None
    out: Provenance = {}
    for side in ("audio", "text"):
        tower = getattr(config, side)
        keeps_own = side in config.frozen_towers  # its weights come from its source, not the directory
        out[f"{side}_tower"] = tower_origin(tower) if keeps_own or stored is None else stored
    if stored is not None:
        out["projections"] = stored
        out["temperature"] = stored
    else:
        tied = config.projection == "tied"
        out["projections"] = part("identity", "tied identity map") if tied else part("random", "never trained")
        out["temperature"] = part("initial", f"the config's temperature_init {config.temperature_init}")
    return out


def tower_origin(tower: TowerConfig) -> dict[str, str]:
    """From a tower's options alone: a checkpoint file, pretrained package weights, a transformers config
    (random), a hub name or directory; towers without such options ship their weights in a package."""
    o = tower.options
    if o.get("checkpoint"):
        return part("checkpoint", str(o["checkpoint"]))
    if o.get("pretrained"):
        return part("package", f"{tower.kind}: the package's pretrained weights")
    if o.get("config") is not None:
        return part("random", f"{tower.kind} built from a config")
    if o.get("source"):
        source = str(o["source"])
        return part("directory" if Path(source).is_dir() else "hub", source)
    if tower.kind == "passt":  # PaSST without a checkpoint or its AudioSet weights is random
        return part("random", "passt without a checkpoint")
    return part("package", f"{tower.kind}: weights ship with its package")


def untrained(provenance: Provenance) -> list[str]:
    """The parts (temperature aside) whose weights are random."""
    return [p for p in PARTS if p != "temperature" and provenance.get(p, {}).get("from") == "random"]


def check_trained(name: str, provenance: Provenance) -> None:
    """A one-line ModelLoadError naming what was never trained or loaded."""
    missing = untrained(provenance)
    if missing:
        parts = ", ".join(f"{p.replace('_', ' ')} ({provenance[p]['detail']})" for p in missing)
        raise ModelLoadError(f"model {name}: never trained or loaded: {parts}; {HOW_TO_FIX}")


def require_trained(name_or_path: str | Path) -> None:
    """Refuse (one line) a model with random parts, from its config and sidecar alone: nothing is loaded."""
    source = resolve(name_or_path)
    check_trained(source.config.name, of_source(source))


def record_training(provenance: Provenance, model: Any, detail: str) -> Provenance:
    """After a training stage: every part with weights that trained now comes from that run."""
    out = dict(provenance)
    for side in ("audio", "text"):
        if any(p.requires_grad for p in getattr(model, f"{side}_tower").parameters()):
            out[f"{side}_tower"] = part("trained", detail)
    if any(p.requires_grad for m in (model.audio_proj, model.text_proj) for p in m.parameters()):
        out["projections"] = part("trained", detail)
    if model.log_temperature.requires_grad:
        out["temperature"] = part("trained", detail)
    return out
