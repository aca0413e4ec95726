"""The slim runtime: `audiosearch serve` for lite never loads torch or transformers.

Observed from outside the serving process, with no hook in it: the interpreter's own import log
(`python -X importtime` reports every module the moment it is first imported, lazy imports during requests
included) and the shared objects mapped into the process (/proc/PID/maps). The test environment has torch and
transformers installed, so an import of either anywhere on the serve path would show.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from audiosearch.indexer import IndexOptions, Searcher, build_index
from tests.app.live import free_port
from tests.conftest import REPO

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")

SAMPLE = REPO / "app" / "sample"
FORBIDDEN = ("torch", "transformers", "torchaudio", "torchvision", "hear21passt", "librosa")
QUERY = "a dog barking"


@pytest.fixture(scope="module")
def small_index(lite_model, tmp_path_factory) -> Path:
    """A built lite index of part of the bundled sample. `lite_model` has made the session's ONNX text export,
    so the serving process finds it in $AUDIOSEARCH_ONNX_CACHE and has no reason to export (with torch)."""
    root = tmp_path_factory.mktemp("slim")
    shutil.copytree(SAMPLE / "animals", root / "lib" / "animals")
    shutil.copytree(SAMPLE / "esc10" / "dog_bark", root / "lib" / "dog_bark")
    report = build_index(root / "lib", root / "idx", lite_model, IndexOptions(workers=0, progress=False))
    assert report.files == 13
    return root / "idx"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _wait_ready(proc: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if _get(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    pytest.fail("serve was not ready after 120 s")


def _imported(log: str) -> set[str]:
    """Module names from `-X importtime` lines: 'import time: self | cumulative | <indent>name'."""
    return {line.rsplit("|", 1)[1].strip() for line in log.splitlines() if line.startswith("import time:")}


def test_lite_serve_loads_no_torch(small_index: Path, lite_model, tmp_path: Path) -> None:
    port, log = free_port(), tmp_path / "serve.log"
    cmd = [sys.executable, "-X", "importtime", "-m", "audiosearch.app.cli", "serve", "--index", str(small_index)]
    with log.open("w") as err:
        proc = subprocess.Popen([*cmd, "--port", str(port)], cwd=REPO, stdout=err, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, base, log)
        status, body = _get(f"{base}/search?" + urllib.parse.urlencode({"q": QUERY, "k": 5}))
        assert status == 200, body
        served = [(h["path"], round(h["score"], 4)) for h in json.loads(body)["results"]]
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    # The service answered as the in-process runtime does: same files, same scores, same order.
    page = Searcher(small_index).search(lite_model.encode_text([QUERY]), k=5, texts=[QUERY])[0]  # hybrid, as served
    assert served == [(h.path, round(h.score, 4)) for h in page.hits]
    assert served[0][0].startswith(("dog_bark/", "animals/dog")), served
    mapped = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    assert not [p for p in mapped if "torch" in p], "a torch library is mapped into the serving process"
    modules = _imported(log.read_text())
    # The observation itself works: the runtime's own libraries show in both.
    assert {"onnxruntime", "faiss", "tokenizers"} <= modules
    assert any("onnxruntime" in p for p in mapped)
    loaded = sorted(m for m in modules if m.split(".")[0] in FORBIDDEN)
    assert not loaded, f"the lite serve path imported {loaded[:10]}"


# The slim install as the default Docker image has it: torch cannot be imported (None in sys.modules).
WITHOUT_TORCH = (
    "import sys; sys.modules['torch'] = None; from audiosearch.app.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("search", "dog", "--model", "aisfx"), "model aisfx on cpu needs torch, which this install lacks"),
        # lite's text side alone exports without torch (tests/models/test_onnx_bert.py); the paper model's needs it
        (("export-onnx", "--model", "paper", "--out", "{tmp}/x"), "export-onnx needs torch, which this install lacks"),
    ],
)
def test_torch_work_without_torch_says_what_to_install(small_index: Path, tmp_path: Path, args, message) -> None:
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] == "search":
        args += ["--index", str(small_index)]
    r = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("audiosearch: error: ") and message in last and "audiosearch[full]" in last, last
    assert not (tmp_path / "x").exists()
