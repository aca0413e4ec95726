"""The `audiosearch` command line as a user runs it: exit codes, one-line reasons, JSON output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, copy_clips


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def indexed(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    copy_clips(shared_data, root / "lib", {"rooster": 2, "rain": 2})
    (root / "lib" / "broken.wav").write_bytes(b"RIFF....WAVE")
    r = run("index", str(root / "lib"), "--index", str(root / "idx"), "--quiet", "--workers", "0")
    assert r.returncode == 0, r.stderr
    assert "indexed 4 files (4 windows): 4 embedded" in r.stdout and "1 skipped" in r.stdout
    assert "skipped broken.wav" in r.stderr
    return root


def test_search_prints_ranked_json(indexed: Path) -> None:
    r = run("search", "--index", str(indexed / "idx"), "a rooster", "-k", "3", "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["query"] == "a rooster" and len(out["results"]) == 3
    assert {"path", "score", "start", "end"} <= set(out["results"][0])


def test_search_modes(indexed: Path) -> None:
    r = run("search", "--index", str(indexed / "idx"), "a rooster crowing", "-k", "4", "--quiet", "--mode", "text")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["mode"] == "text" and out["no_close_match"] is False
    assert [h["path"].split("/")[0] for h in out["results"][:2]] == ["rooster", "rooster"]
    assert out["results"][0]["evidence"]["words"] == ["rooster"]
    r = run("search", "--index", str(indexed / "idx"), "a door knocking", "--quiet", "--min-score", "0.9")
    assert json.loads(r.stdout)["no_close_match"] is True and json.loads(r.stdout)["mode"] == "hybrid"
    r = run("search", "--index", str(indexed / "idx"), "rain", "--mode", "fuzzy")
    last = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 2 and "invalid choice" in last and all(m in last for m in ("hybrid", "audio", "text"))


def test_strict_fails_on_skipped_files(indexed: Path) -> None:
    r = run("index", str(indexed / "lib"), "--index", str(indexed / "idx"), "--quiet", "--strict", "--workers", "0")
    assert r.returncode == 1
    assert r.stderr.strip().splitlines()[-1].startswith("audiosearch: error: --strict")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("index", "/no/such/dir", "--index", "/tmp/x-idx"), "not a directory"),
        (("search", "--index", "/no/such/index", "dog"), "no such index directory"),
        (("index", ".", "--index", "/tmp/x-idx", "--model", "nope"), "unknown model"),
        (("index", ".", "--index", "/tmp/x-idx", "--batch-size", "0"), "--batch-size must be positive"),
        (("search", "--index", "/tmp", "dog", "-k", "0"), "-k must be between"),
    ],
)
def test_bad_input_is_one_line_and_nonzero(args: tuple[str, ...], message: str) -> None:
    r = run(*args)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("audiosearch: error:") and message in last


def test_demo_builds_the_bundled_sample(tmp_path) -> None:
    r = run("demo", "--index", str(tmp_path / "demo"), "--no-serve")
    assert r.returncode == 0, r.stderr
    assert "demo: indexed" in r.stdout and "0 skipped" in r.stdout
    manifest = next((tmp_path / "demo" / "snapshots").iterdir()) / "manifest.json"
    assert json.loads(manifest.read_text())["counts"]["files"] >= 30
