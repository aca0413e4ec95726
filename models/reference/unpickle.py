"""Read a PyTorch Lightning checkpoint without running code from it.

torch's weights-only loader is tried first. A Lightning file also pickles its hyper-parameters, which may be
objects of the training code's classes (salsa's sacred config containers); the weights-only loader refuses
those, and a full unpickle would import and run whatever the file names. The fallback gives every class
outside torch's own allowlist an inert stand-in that only stores what it is given, so the tensors load and
nothing from the file executes. Hand-written because no library reads a pickle this way.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from audiosearch.core.errors import ModelLoadError


class Opaque(dict):
    """Stands in for a class the checkpoint names: holds the items, list entries and arguments it gets."""

    _name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Opaque:  # pickle may call __new__ alone (NEWOBJ)
        self = super().__new__(cls)
        self.args, self.items_, self.state = args, [], None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()

    def __call__(self, *args: Any, **kwargs: Any) -> Opaque:  # a stand-in function (getattr(...)(...)): inert too
        return Opaque(*args)

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def append(self, item: Any) -> None:
        self.items_.append(item)

    def extend(self, items: Any) -> None:
        self.items_.extend(items)

    def __repr__(self) -> str:
        return f"<{self._name} {dict(self) or list(self.items_) or self.args}>"


def _allowed() -> dict[str, Any]:
    from torch import _weights_only_unpickler  # torch's vetted rebuild functions, storages and dtypes

    return dict(_weights_only_unpickler._get_allowed_globals())


class _Unpickler(pickle.Unpickler):
    allowed: dict[str, Any] = {}
    stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full in self.allowed:
            return self.allowed[full]
        if full not in self.stubs:
            self.stubs[full] = type(name, (Opaque,), {"_name": full})
        return self.stubs[full]


class _InertPickle:
    """A pickle module for torch.load whose Unpickler never imports anything outside torch's allowlist."""

    Unpickler = _Unpickler
    load = pickle.load
    __name__ = "inert_pickle"


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, tensors memory-mapped (a 5 GB file with optimizer states costs no RAM)."""
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such checkpoint file")
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:
        _Unpickler.allowed, _Unpickler.stubs = _allowed(), {}
        try:
            data = torch.load(str(path), map_location="cpu", weights_only=False, mmap=True, pickle_module=_InertPickle)
        except Exception as err:
            raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise ModelLoadError(f"{path}: not a readable PyTorch checkpoint ({_first_line(err)})") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: holds a {type(data).__name__}, not a checkpoint dict")
    return data


def _first_line(err: Exception) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else type(err).__name__
