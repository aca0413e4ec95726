"""`serve --ray`: the service with its index split over shard actors on a real local Ray (2 CPUs), real audio and
the real lite model, against the single-process service over HTTP: the same JSON in every mode, on two pages,
with filters, ties and no_close_match; a snapshot switch loads every shard first; a killed shard is restarted and
requests keep working. The CLI's argument errors are one line, before Ray starts or anything loads."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from audiosearch.app.cli import main
from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import CLI, REPO, copy_clips
from tests.indexer.test_shards import InProcessShards, tied_library

FAST = IndexOptions(workers=0, progress=False)


# -- argument errors: fast, no Ray started -----------------------------------------------------------------


def one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_serve_ray_argument_errors_are_one_line(indexed, capsys, tmp_path) -> None:
    _, idx = indexed
    serve = ["serve", "--index", str(idx), "--port", "0"]
    assert "need --ray" in one_line_error(capsys, [*serve, "--shards", "2"])
    assert "need --ray" in one_line_error(capsys, [*serve, "--replicas", "2"])
    assert "--shards must be 1 or more, got 0" in one_line_error(capsys, [*serve, "--ray", "--shards", "0"])
    assert "--replicas must be 1 or more, got -1" in one_line_error(capsys, [*serve, "--ray", "--replicas", "-1"])
    err = one_line_error(capsys, [*serve, "--ray", "--shards", "100000"])
    assert "--shards 100000 is more than the index's" in err and "audio windows" in err
    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    err = one_line_error(capsys, [*serve, "--ray", f"127.0.0.1:{closed}"])
    assert err.startswith(f"audiosearch: error: --ray 127.0.0.1:{closed}: cannot reach a Ray cluster there"), err
    assert "bad" in one_line_error(capsys, [*serve, "--ray", "bad"])  # not HOST:PORT
    missing = one_line_error(capsys, ["serve", "--index", str(tmp_path / "none"), "--ray", "--shards", "2"])
    assert "no such index directory" in missing


def test_serve_ray_refuses_to_split_an_index_of_another_type(shared_data, lite_model, tmp_path, capsys) -> None:
    copy_clips(shared_data, tmp_path / "lib", {"dog_bark": 2})
    build_index(tmp_path / "lib", tmp_path / "idx", lite_model, IndexOptions(workers=0, progress=False,
                                                                             faiss_factory="HNSW32"))  # fmt: skip
    err = one_line_error(capsys, ["serve", "--index", str(tmp_path / "idx"), "--ray", "--shards", "2"])
    assert err.startswith("audiosearch: error: --shards 2: an HNSW graph ('HNSW32') cannot be split into shards"), err
    assert "--shards 1, or index it with --faiss auto" in err


def test_readyz_lists_the_shards_and_keeps_its_meaning_without_them(indexed, lite_model) -> None:
    """One process: /readyz as it always was. With shards (in-process here, as tests/indexer/test_shards.py runs
    them; on Ray below): each shard of the live snapshot, its rows and bytes, and ready."""
    _, idx = indexed
    settings = Settings(index_dir=idx, watch_index_s=0)
    with live_server(create_app(settings, model=lite_model)) as url:
        plain = httpx.get(f"{url}/readyz").json()
    snapshot = plain["snapshot"]
    assert plain == {"status": "ready", "snapshot": snapshot}
    sharded = create_app(settings.model_copy(update={"mmap": True}), model=lite_model, shards=InProcessShards(2))
    with live_server(sharded) as url:
        r = httpx.get(f"{url}/readyz")
    windows = sharded.state.service.searcher.index.ntotal
    assert r.status_code == 200 and r.json()["status"] == "ready" and "replica" not in r.json()
    shards = r.json()["shards"]
    assert [(s["snapshot"], s["shard"], s["shards"], s["windows"], s["ready"]) for s in shards] == [
        (snapshot, 0, 2, [0, windows // 2, windows], True),
        (snapshot, 1, 2, [windows // 2, windows, windows], True),
    ]
    assert [s["bytes"] for s in shards] == [(windows // 2) * 384 * 4, (windows - windows // 2) * 384 * 4]


def test_plain_serve_help_and_cli_stay_free_of_ray() -> None:
    code = "import sys, audiosearch.app.cli as c; c.build_parser(c.COMMANDS); assert 'ray' not in sys.modules"
    subprocess.run([*CLI[:1], "-c", code], cwd=REPO, check=True, timeout=120)


# -- on a local Ray --------------------------------------------------------------------------------------

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'audiosearch[ray]')")


@pytest.fixture(scope="module")
def served(shared_data, lite_model, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ray-serve")
    lib = tied_library(shared_data, root / "lib")
    build_index(lib, root / "idx", lite_model, FAST)
    return lib, root / "idx"


def ray_app(idx: Path, lite_model, shards: int, namespace: str | None = None):
    from audiosearch.indexer.search.ray_shards import RayShards

    source = RayShards(shards, namespace or f"test-{uuid.uuid4().hex[:8]}")
    settings = Settings(index_dir=idx, mmap=True, watch_index_s=0)
    return create_app(settings, model=lite_model, shards=source), source


def responses(c: httpx.Client, queries: list[dict]) -> list:
    out = []
    for params in queries:
        r = c.get("/search", params=params)
        body = r.json()
        body.pop("took_ms", None)
        out.append((r.status_code, body))
    return out


def assert_same_json(a: list, b: list) -> None:
    for (sa, ja), (sb, jb) in zip(a, b, strict=True):
        assert sa == sb, (ja, jb)
        sa_hits, sb_hits = ja.pop("results", []), jb.pop("results", [])
        assert ja == jb
        assert [{**h, "score": None} for h in sa_hits] == [{**h, "score": None} for h in sb_hits]
        assert [h["score"] for h in sa_hits] == pytest.approx([h["score"] for h in sb_hits], abs=1e-5)


QUERIES = [
    {"q": q, "mode": mode, "k": 4, "offset": offset, **extra}
    for q in ("a dog barking", "rain falling", "clock ticking", "a rooster crowing", "zither solo")
    for mode in ("hybrid", "audio", "text")
    for offset in (0, 4)
    for extra in ({}, {"path_prefix": "dog_bark/"}, {"min_duration": 4.9}, {"min_score": 0.99})
]


@pytest.mark.slow
def test_two_shards_on_ray_answer_as_the_single_process(local_ray, served, lite_model) -> None:
    _, idx = served
    single = create_app(Settings(index_dir=idx, watch_index_s=0), model=lite_model)
    app, source = ray_app(idx, lite_model, 2)
    with live_server(single) as u1, live_server(app) as u2, httpx.Client(base_url=u1, timeout=60) as c1, \
            httpx.Client(base_url=u2, timeout=60) as c2:  # fmt: skip
        assert_same_json(responses(c2, QUERIES), responses(c1, QUERIES))
        for clip in (1, 2):  # by example: a clip and its copy tie exactly
            a = c1.get(f"/clips/{clip}/similar", params={"k": 5}).json()
            b = c2.get(f"/clips/{clip}/similar", params={"k": 5}).json()
            a.pop("took_ms"), b.pop("took_ms")
            assert_same_json([(200, b)], [(200, a)])
        assert c2.get("/search", params={"q": "x", "mode": "nope"}).status_code == 422  # errors as well
        assert c2.get("/clips/99999/similar").status_code == 404
        names = source.names()
        snapshot = app.state.service.searcher.snapshot.name
        assert sorted(names) == [f"shard-{snapshot}-0-of-2", f"shard-{snapshot}-1-of-2"]
        infos = ray.get([ray.get_actor(n, namespace=source.namespace).info.remote() for n in names])
        windows = app.state.service.searcher.index.ntotal
        assert sorted(i["windows"][:2] for i in infos) == [[0, windows // 2], [windows // 2, windows]]
        ready = c2.get("/readyz")  # every shard: where it runs, what it holds
        assert ready.status_code == 200, ready.json()
        node = ray.util.get_node_ip_address()
        assert [(s["shard"], s["windows"], s["node"], s["ready"]) for s in ready.json()["shards"]] == [
            (0, [0, windows // 2, windows], node, True),
            (1, [windows // 2, windows, windows], node, True),
        ]
        assert {s["pid"] for s in ready.json()["shards"]} == {i["pid"] for i in infos}
        source.retire(keep=set())  # the shards gone: the replica is not ready, and says which
        assert source.names() == []
        down = c2.get("/readyz")
        assert down.status_code == 503 and down.json()["status"] == "shards not ready"
        assert [(s["shard"], s["ready"]) for s in down.json()["shards"]] == [(0, False), (1, False)]
        assert down.json()["detail"].startswith("shard 0/2: ") and "; shard 1/2: " in down.json()["detail"]


@pytest.mark.slow
def test_a_snapshot_switch_loads_every_shard_before_it_flips(local_ray, served, shared_data, lite_model, tmp_path):
    lib, idx0 = served
    idx = tmp_path / "idx"
    shutil.copytree(idx0, idx)
    app, source = ray_app(idx, lite_model, 2)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=60) as c:
        old = app.state.service.searcher.snapshot.name
        before = c.get("/search", params={"q": "a helicopter"}).json()
        copy_clips(shared_data, lib.parent / "lib2", {"helicopter": 2})
        shutil.copytree(lib, lib.parent / "lib2", dirs_exist_ok=True)
        build_index(lib.parent / "lib2", idx, lite_model, FAST)  # a new snapshot, with two more files
        service = app.state.service
        new = service.reload()
        assert new.sharded is not None and new.sharded.snapshot == new.snapshot.name != old
        shard_snaps = {n.split("-of-")[0].rsplit("-", 1)[0] for n in source.names()}
        assert shard_snaps == {f"shard-{old}", f"shard-{new.snapshot.name}"}  # both loaded; the old still serves
        after = c.get("/search", params={"q": "a helicopter"}).json()
        assert after["total"] == before["total"] + 2
        single = create_app(Settings(index_dir=idx, watch_index_s=0), model=lite_model)
        with live_server(single) as u1, httpx.Client(base_url=u1, timeout=60) as c1:
            assert_same_json(responses(c, QUERIES[:24]), responses(c1, QUERIES[:24]))
        assert source.retire(keep={new.snapshot.name}) and len(source.names()) == 2  # what the janitor does
        again = c.get("/search", params={"q": "a helicopter"}).json()
        assert again["results"] == after["results"]
    source.retire(keep=set())


@pytest.mark.slow
def test_a_killed_shard_is_restarted_and_requests_keep_working(local_ray, served, lite_model) -> None:
    _, idx = served
    app, source = ray_app(idx, lite_model, 2)
    failed, done, stop = [], [], threading.Event()

    def load(url: str) -> None:
        with httpx.Client(base_url=url, timeout=120) as c:
            i = 0
            while not stop.is_set():
                q = ("a dog barking", "rain falling", "clock ticking")[i % 3]
                r = c.get("/search", params={"q": q, "mode": ("hybrid", "audio", "text")[i % 3]})
                (done if r.status_code == 200 else failed).append(r.status_code)
                i += 1

    with live_server(app) as url:
        want = httpx.get(f"{url}/search", params={"q": "a dog barking"}, timeout=60).json()
        threads = [threading.Thread(target=load, args=(url,)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(2)
        for name in sorted(source.names()):  # each shard killed once, under load
            ray.kill(ray.get_actor(name, namespace=source.namespace), no_restart=False)
            time.sleep(4)
        stop.set()
        for t in threads:
            t.join(timeout=120)
        got = httpx.get(f"{url}/search", params={"q": "a dog barking"}, timeout=60).json()
    got.pop("took_ms"), want.pop("took_ms")
    assert got == want
    assert len(done) > 10
    assert len(failed) <= 2, failed  # bounded; the calls in flight are retried on the restarted actor
    source.retire(keep=set())


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_cli_serves_two_replicas_over_two_shards_and_stops_them(served, lite_model, stop) -> None:
    """The command as users run it: a local Ray instance of its own, 2 uvicorn replicas, 2 shards. Ctrl-C or a
    SIGTERM (what Kubernetes and systemd send) stops the replicas gracefully, the shards and Ray: no process it
    started is left. Each replica's log lines and /readyz name it; the shards' log lines name them."""
    _, idx = served
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen(
        [*CLI, "serve", "--index", str(idx), "--ray", "--replicas", "2", "--shards", "2", "--port", "0"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out, lines = "", []
    try:
        line = proc.stdout.readline()
        while line and "serving" not in line:
            line = proc.stdout.readline()
        url = re.search(r"at (http://\S+/) on Ray", line).group(1)
        assert "2 replica(s), 2 shard(s)" in line
        session = re.search(r"the shards log to (\S+)/logs/", proc.stdout.readline()).group(1)
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        deadline = time.time() + 240
        with httpx.Client(base_url=url, timeout=60) as c:
            while not _ready(c):
                assert time.time() < deadline and proc.poll() is None
                time.sleep(1)
            got = responses(c, QUERIES[:12])
            ready = [c.get("/readyz").json() for _ in range(6)]
        started = descendants(proc.pid)
        single = create_app(Settings(index_dir=idx, watch_index_s=0), model=lite_model)
        with live_server(single) as u1, httpx.Client(base_url=u1, timeout=60) as c1:
            assert_same_json(got, responses(c1, QUERIES[:12]))
    finally:
        proc.send_signal(stop)
        proc.wait(timeout=120)
    time.sleep(2)  # the reader thread takes the last lines
    out = "".join(lines)
    assert proc.returncode == 0, out[-3000:]
    assert {r["replica"] for r in ready} <= {"1/2", "2/2"} and all(len(r["shards"]) == 2 for r in ready)
    assert len([p for p in started if "ray::ShardActor" in p[1]]) == 2 and any("raylet" in p[1] for p in started)
    assert [p for p in started if alive(p)] == []  # replicas, shard actors, Ray's own processes: all gone
    for name in ("controller", "replica 1/2", "replica 2/2"):
        assert f"[{name}] " in out, out[-3000:]
    assert "[replica 1/2] uvicorn.error: Waiting for application shutdown." in out  # graceful, not killed
    assert "Traceback" not in out, out[-3000:]
    assert "[controller] audiosearch.app.ray_server: stopped 2 shard actor(s) and the local Ray instance" in out
    shard_logs = "".join(f.read_text(errors="replace") for f in Path(session, "logs").glob("worker-*.err"))
    for i in (0, 1):
        assert re.search(rf"\[shard {i}/2 of \S+\] audiosearch.indexer.search.ray_shards: loaded windows", shard_logs)


def descendants(pid: int) -> list[tuple[int, str, int]]:
    """(pid, command line, start time) of every process below `pid`, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat:
                children.setdefault(int(stat[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            stat = _stat(child)
            if stat:
                found.append((child, _cmdline(child), int(stat[19])))
            todo.append(child)
    return found


def alive(proc: tuple[int, str, int]) -> bool:
    """Whether that process (the same one: its start time too) still runs; a zombie does not."""
    stat = _stat(proc[0])
    return stat is not None and int(stat[19]) == proc[2] and stat[0] != "Z"


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """/proc/PID/stat's fields after the command name (state first, then ppid ...), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _ready(c: httpx.Client) -> bool:
    try:
        return c.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False
