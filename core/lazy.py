"""Lazy package exports (PEP 562): `from pkg import name` imports the defining module on first use.

Decode worker processes import `models.audio` and `indexer.decode` only; eager package `__init__`s would
make each of them import torch, transformers and FAISS (about 2 s of CPU per worker on a small machine).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, exports: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module `__getattr__` resolving `exports` (name -> defining module) and caching it in `namespace`."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    return __getattr__
