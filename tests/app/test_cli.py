"""The `audiosearch` command line as a user runs it: exit codes, one-line reasons, JSON output."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import CLI, REPO, copy_clips


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=REPO, capture_output=True, text=True, timeout=600)


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


@pytest.mark.slow
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


@pytest.mark.slow
def test_demo_builds_the_bundled_sample(tmp_path) -> None:
    r = run("demo", "--index", str(tmp_path / "demo"), "--no-serve")
    assert r.returncode == 0, r.stderr
    assert "demo: indexed" in r.stdout and "0 skipped" in r.stdout
    manifest = next((tmp_path / "demo" / "snapshots").iterdir()) / "manifest.json"
    assert json.loads(manifest.read_text())["counts"]["files"] >= 30


# -- serve and demo: every argument checked before anything loads -------------------------------------------


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("audiosearch: error: "), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--port", "99999"), "--port must be between 1 and 65535, or 0 for a free port; got 99999"),
        (("--port", "65536"), "got 65536"),
        (("--port", "-1"), "got -1"),
        (("--host", "no-such-host.invalid"), "--host 'no-such-host.invalid' does not resolve"),
        (("--host", "192.0.2.1"), "--host 192.0.2.1 is not an address of this machine"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "demo"])
def test_bad_host_or_port_is_one_line_before_anything_loads(indexed: Path, command: str, args, message) -> None:
    where = ("--index", str(indexed / ("idx" if command == "serve" else "demo")))
    r = run(command, *where, *args)
    assert message in one_line_error(r)
    assert not (indexed / "demo").exists()  # demo checked its address before loading or building anything


def test_serve_needs_an_index(tmp_path: Path) -> None:
    assert "no such index directory" in one_line_error(run("serve", "--index", str(tmp_path / "none")))
    (tmp_path / "empty").mkdir()
    assert "no index yet" in one_line_error(run("serve", "--index", str(tmp_path / "empty")))


def test_a_port_in_use_names_the_port_and_the_option(indexed: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for command in (("serve", "--index", str(indexed / "idx")), ("demo", "--index", str(indexed / "demo"))):
            line = one_line_error(run(*command, "--port", str(port)))
            assert f"port {port} on 127.0.0.1 is already in use" in line and "--port" in line


def test_port_zero_picks_a_free_port_and_prints_it(indexed: Path) -> None:
    proc = subprocess.Popen(
        [*CLI, "serve", "--index", str(indexed / "idx"), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        first = proc.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/", first)
        assert m and int(m.group(1)) > 0, first
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{m.group(1)}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        r = httpx.get(f"http://127.0.0.1:{m.group(1)}/search", params={"q": "a rooster", "k": 1}, timeout=30)
        assert r.status_code == 200 and r.json()["results"][0]["path"].startswith("rooster/")
    finally:
        proc.terminate()
        proc.wait(30)


def test_demo_and_serve_help_describe_host_and_port() -> None:
    for command in ("serve", "demo"):
        out = run(command, "--help").stdout
        assert "--host HOST" in out and "0.0.0.0" in out and "--port PORT" in out and "0 picks a free port" in out
