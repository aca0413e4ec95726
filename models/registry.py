"""Tower registry: a config's `kind` -> the builder that makes it, found without any list of kinds.

Two kinds of builders, each registered by its own module with a decorator:
- cores (`audio_core`, `text_core`): inference in numpy / onnxruntime, no torch, in `models/towers/`. The
  slim runtime (models.slim) runs them as they are; the torch model wraps them (models.towers.modules.base).
- modules (`audio_module`, `text_module`): torch `nn.Module` towers that can train, in `models/towers/modules/`.

Discovery imports every module of the package it looks in (pkgutil), once, so a new tower is one new file:
nothing else names it. Cores are looked up without importing torch; modules only when torch is wanted.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
from collections.abc import Callable
from typing import Any

from audiosearch.core.errors import ModelLoadError

log = logging.getLogger(__name__)

CORES = "audiosearch.models.towers.cores"
MODULES = "audiosearch.models.towers.modules"
SIDES = ("audio", "text")

Builder = Callable[..., Any]
_REGISTRY: dict[tuple[str, str, str], Builder] = {}  # (package, side, kind) -> builder
_DISCOVERED: dict[str, dict[str, str]] = {}  # package -> {module that failed to import: why}


def _register(package: str, side: str, kind: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        _REGISTRY[(package, side, kind)] = fn
        return fn

    return deco


def audio_core(kind: str) -> Callable[[Builder], Builder]:
    return _register(CORES, "audio", kind)


def text_core(kind: str) -> Callable[[Builder], Builder]:
    return _register(CORES, "text", kind)


def audio_module(kind: str) -> Callable[[Builder], Builder]:
    return _register(MODULES, "audio", kind)


def text_module(kind: str) -> Callable[[Builder], Builder]:
    return _register(MODULES, "text", kind)


def core_builder(side: str, kind: str) -> Builder | None:
    """The numpy builder of `kind`, or None when the kind has only a torch module."""
    _discover(CORES)
    return _REGISTRY.get((CORES, side, kind))


def module_builder(side: str, kind: str) -> Builder | None:
    """The torch builder of `kind`, or None when the kind has only a numpy core (imports torch)."""
    _discover(MODULES)
    return _REGISTRY.get((MODULES, side, kind))


def known_kinds(side: str, with_modules: bool = True) -> list[str]:
    _discover(CORES)
    if with_modules:
        _discover(MODULES)
    return sorted({k for (_, s, k) in _REGISTRY if s == side})


def unknown_kind(side: str, kind: str) -> ModelLoadError:
    failed = {name: why for pkg in _DISCOVERED.values() for name, why in pkg.items()}
    hint = f"; not importable: {', '.join(f'{m} ({w})' for m, w in failed.items())}" if failed else ""
    return ModelLoadError(f"unknown {side} tower kind {kind!r}; known: {', '.join(known_kinds(side))}{hint}")


def _discover(package: str) -> None:
    if package in _DISCOVERED:
        return
    failed: dict[str, str] = {}
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        try:
            importlib.import_module(f"{package}.{info.name}")
        except ImportError as err:  # e.g. torch towers in an install without torch: named in unknown_kind
            failed[info.name] = f"{type(err).__name__}: {err}"
            log.debug("tower module %s.%s not importable: %s", package, info.name, err)
    _DISCOVERED[package] = failed
