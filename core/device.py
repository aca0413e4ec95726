"""The one device resolver: 'auto', 'cpu' or 'cuda' -> what the model runs on, checked before anything loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from audiosearch.core.errors import InvalidInputError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> str:
    """'auto' is 'cuda' where torch sees a GPU, else 'cpu'; 'cuda' without one is a clear error.

    torch is imported only to answer 'auto' or 'cuda', and only when it is installed: a slim runtime
    (no torch) runs on the CPU.
    """
    if name not in DEVICES:
        raise InvalidInputError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    if name == "cpu":
        return "cpu"
    available = cuda_available()
    if name == "cuda" and not available:
        raise InvalidInputError("device cuda: no CUDA device is available (torch sees none, or torch is not installed)")
    return "cuda" if available else "cpu"


def cuda_available() -> bool:
    # No NVIDIA driver node, no CUDA: answered without importing torch (2 s and ~300 MB for a lite service).
    if not any(Path(p).exists() for p in ("/dev/nvidiactl", "/proc/driver/nvidia/version")):
        return False
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
