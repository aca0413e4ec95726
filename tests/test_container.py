"""The Docker image for real, with podman: build the default (slim) image, run the demo, health and readiness,
a search, a clip, the image's HEALTHCHECK, the non-root user, an offline run (weights baked in), and the slim
runtime's promises: no torch or transformers in the image, the service runs lite on onnxruntime with no torch
library mapped, and the image is under 1.5 GB.

Opt-in: `pytest -m container tests/test_container.py` (or `make container-test`). Skips when podman or the
base image is unavailable (on this project's machines: `bash ../shared/tools/container-env` sets both up).
The first build downloads the slim runtime's dependencies (no torch: the export stage writes MiniLM's text export
from its weights; about 3 minutes here); later builds reuse the layers.
Only loopback addresses are used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
IMAGE = os.environ.get("AUDIOSEARCH_TEST_IMAGE", "localhost/audiosearch:test")
BASE_IMAGE = "docker.io/library/python:3.11-slim"
BUILD_TIMEOUT_S = 3600
START_TIMEOUT_S = 240
MAX_IMAGE_BYTES = 1.5e9  # the slim runtime's target (README, Docker)
TORCH_SIDE = ("torch", "transformers", "torchaudio", "torchvision", "hear21passt", "librosa", "onnxscript")


def _podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 30) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read(), r.headers.get("content-type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("content-type", "")


@pytest.fixture(scope="module")
def image() -> str:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed (on this project's machines: bash ../shared/tools/container-env)")
    info = subprocess.run(["podman", "info"], capture_output=True, text=True, timeout=60)
    if info.returncode != 0:
        pytest.skip(f"podman does not work here: {info.stderr.strip()[-300:]}")
    if _podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pulled = subprocess.run(["podman", "pull", BASE_IMAGE], capture_output=True, text=True, timeout=600)
        if pulled.returncode != 0:
            pytest.skip(
                f"base image {BASE_IMAGE} is not available and cannot be pulled "
                "(on this project's machines: bash ../shared/tools/container-env)"
            )
    t0 = time.monotonic()
    _podman("build", "--format", "docker", "-t", IMAGE, str(ROOT), timeout=BUILD_TIMEOUT_S)
    print(f"image built in {time.monotonic() - t0:.0f} s")  # noqa: T201 - shown with -s
    return IMAGE


@pytest.fixture(scope="module")
def service(image: str):
    name = f"audiosearch-test-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    _podman("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8000", image)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            state = _podman("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                logs = _podman("logs", name, check=False)
                pytest.fail(
                    f"container stopped ({state}) before /healthz answered:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}"
                )
            try:
                if _get(f"{base}/healthz", timeout=5)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = _podman("logs", name, check=False)
                pytest.fail(f"/healthz not up after {START_TIMEOUT_S} s:\n{logs.stderr[-3000:]}")
            time.sleep(2)
        yield name, base
    finally:
        _podman("rm", "-f", "-t", "5", name, check=False)


def test_health_and_ready(service) -> None:
    _, base = service
    status, body, ctype = _get(f"{base}/healthz")
    assert status == 200 and "json" in ctype
    json.loads(body)
    status, body, _ = _get(f"{base}/readyz")
    assert status == 200, body


def test_search_and_clip(service) -> None:
    _, base = service
    status, body, _ = _get(f"{base}/search?q=dog+barking&k=5")
    assert status == 200, body
    page = json.loads(body)
    assert page["query"] == "dog barking"
    hits = page["results"]
    assert 1 <= len(hits) <= 5
    assert all(h["path"].endswith(".ogg") for h in hits)
    # The bundled sample is what is indexed: its folder layout shows in the paths.
    assert {h["path"].split("/")[0] for h in hits} <= {"esc10", "animals", "sonicpi"}
    status, audio, ctype = _get(base + hits[0]["audio_url"])
    assert status == 200 and audio[:4] == b"OggS", (status, ctype)


def test_image_healthcheck_and_user(service) -> None:
    name, _ = service
    # The HEALTHCHECK survives only in docker-format images; `podman healthcheck run` exits 0 when healthy.
    assert _podman("healthcheck", "run", name, check=False).returncode == 0
    assert _podman("exec", name, "id", "-u").stdout.strip() != "0"


def test_runs_offline(image: str) -> None:
    """No network at all: the lite model's weights and the demo index are in the image."""
    cmd = ["audiosearch", "search", "rain falling", "--index", "demo-index", "-k", "3", "--quiet"]
    proc = _podman("run", "--rm", "--network", "none", "--no-healthcheck", image, *cmd, timeout=300)
    out = json.loads(proc.stdout)
    assert len(out["results"]) == 3


def test_default_image_has_no_torch(image: str) -> None:
    """The full extra's packages stay in the export stage and the `full` target."""
    probe = f"import importlib.util as u; print([m for m in {TORCH_SIDE!r} if u.find_spec(m)])"
    proc = _podman("run", "--rm", "--network", "none", "--no-healthcheck", image, "python", "-c", probe)
    assert proc.stdout.strip() == "[]"
    proc = _podman(
        "run", "--rm", "--network", "none", "--no-healthcheck", image, "python", "-c", "import torch", check=False
    )
    assert proc.returncode == 1 and "No module named 'torch'" in proc.stderr


def test_serves_lite_on_onnxruntime(service) -> None:
    """The demo's index is lite's (384-d, built by the slim runtime) and the serving process (PID 1) has
    onnxruntime mapped and no torch library."""
    name, base = service
    status, body, _ = _get(f"{base}/index")
    assert status == 200, body
    manifest = json.loads(body)["manifest"]
    assert manifest["model"]["dim"] == 384 and manifest["backend"] == "SlimEncoder", manifest
    maps = _podman("exec", name, "cat", "/proc/1/maps").stdout
    assert "audiosearch demo" in _podman("exec", name, "cat", "/proc/1/cmdline").stdout.replace("\0", " ")
    assert "onnxruntime" in maps
    assert "libtorch" not in maps


def test_image_size(image: str) -> None:
    size = int(_podman("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    print(f"image size {size / 1e6:.0f} MB")  # noqa: T201 - shown with -s
    assert size < MAX_IMAGE_BYTES, f"{size / 1e6:.0f} MB"


def test_torch_work_in_the_default_image_says_what_to_install(image: str) -> None:
    for cmd in (
        ["export-onnx", "--model", "lite", "--out", "/tmp/x"],
        ["search", "dog", "--index", "demo-index", "--model", "aisfx"],
    ):
        proc = _podman("run", "--rm", "--network", "none", "--no-healthcheck", image, "audiosearch", *cmd, check=False)
        last = proc.stderr.strip().splitlines()[-1]
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert last.startswith("audiosearch: error: ") and "needs torch" in last and "[full]" in last, last
