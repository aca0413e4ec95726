"""Soak test (not CI): mixed real and hostile load on a real `audiosearch serve` process, one index rebuild and
/admin/reload in the middle; reports requests, 5xx (must be 0), p50/p99 and the server's RSS (must be flat).

Usage: .venv-dev/bin/python -m bench.soak [--minutes 10] [--concurrency 32] [--warmup 30]

The service runs as its own process, started as users start it (`audiosearch serve --port 0`, an admin token,
the index watcher on), over the bundled sample library with one clip held out. `concurrency` asyncio clients
send a weighted mix: text search (GET, POST with filters), batch search, query by example with real clips and
with hostile uploads (an Ogg Opus and a FLAC of hours of silence, random bytes, a truncated file, NaN samples
past the read limit, two files in one form, a wrong type, 21 MB over the cap), clip metadata, clip range
requests, and ids and integers beyond 64 bits. Halfway, the held-out clip is added, the index rebuilt by the
CLI, and /admin/reload called. 429s are counted as shed load, not failures. RSS is the server's, read from
/proc at the end of the warm-up (start) and at the end. Prints a self-contained report and appends it to
bench/results/soak.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf

from bench.common import CLI, append_csv, load_avg, machine, rss_mb
from bench.query import queries

TOKEN = "soak-test-token-0123456789"
WEIGHTS = {
    "text": 30,
    "text_post": 10,
    "batch": 8,
    "by_audio": 10,
    "hostile": 10,
    "clip": 5,
    "range": 17,
    "junk": 5,
    "meta": 5,
}


def hostile_uploads(tmp: Path, clip: Path) -> list[list[tuple[str, tuple[str, bytes, str]]]]:
    """Multipart forms a hostile or careless client sends to /search/by-audio."""

    def silence(name: str, seconds: int, sr: int, fmt: str, subtype: str) -> bytes:
        with sf.SoundFile(str(tmp / name), "w", sr, 1, format=fmt, subtype=subtype) as f:
            for _ in range(seconds // 60):
                f.write(np.zeros(sr * 60, dtype=np.float32))
        return (tmp / name).read_bytes()

    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(16000 * 40) * 0.1).astype(np.float32)
    noise[35 * 16000] = np.nan  # past the 30 s the service reads
    sf.write(tmp / "nan.wav", noise, 16000, subtype="FLOAT")
    real = clip.read_bytes()
    one = [
        ("bomb.opus", silence("bomb.opus", 600, 48000, "OGG", "OPUS")),  # 10 min of 48 kHz in ~140 kB
        ("bomb.flac", silence("bomb.flac", 3600, 48000, "FLAC", "PCM_16")),  # 1 h of 48 kHz in ~550 kB
        ("noise.ogg", rng.bytes(50_000)),
        ("truncated.ogg", real[: len(real) // 3]),
        ("nan.wav", (tmp / "nan.wav").read_bytes()),
        ("empty.wav", b""),
        ("notes.txt", b"not audio"),
    ]
    forms = [[("file", (name, data, "application/octet-stream"))] for name, data in one]
    forms.append([("file", ("a.ogg", real, "audio/ogg")), ("file", ("b.ogg", real, "audio/ogg"))])
    forms.append([("file", ("huge.ogg", rng.bytes(21 * 2**20), "audio/ogg"))])  # over the 20 MB upload cap
    return forms


class Load:
    def __init__(self, url: str, clips: list[Path], ids: list[int], hostile: list, seed: int) -> None:
        self.url, self.clips, self.ids, self.hostile = url, [c.read_bytes() for c in clips], ids, hostile
        self.rng = np.random.default_rng(seed)
        self.texts = queries(5000, seed=seed)
        self.records: list[tuple[float, str, int, float]] = []  # (start time, kind, status or -1, seconds)
        self.errors: list[str] = []

    def pick(self) -> str:
        kinds = list(WEIGHTS)
        p = np.array([WEIGHTS[k] for k in kinds], dtype=float)
        return kinds[self.rng.choice(len(kinds), p=p / p.sum())]

    async def one(self, c: httpx.AsyncClient, kind: str) -> httpx.Response:
        q, cid = self.texts[self.rng.integers(len(self.texts))], int(self.rng.choice(self.ids))
        if kind == "text":
            return await c.get("/search", params={"q": q, "k": 10, "offset": int(self.rng.integers(0, 20))})
        if kind == "text_post":
            return await c.post("/search", json={"query": q, "k": 5, "filters": {"path_prefix": "esc10/"}})
        if kind == "batch":
            return await c.post("/search/batch", json={"queries": [f"{q} {i}" for i in range(8)], "k": 5})
        if kind == "by_audio":
            data = self.clips[self.rng.integers(len(self.clips))]
            return await c.post("/search/by-audio", files={"file": ("clip.ogg", data, "audio/ogg")})
        if kind == "hostile":
            return await c.post("/search/by-audio", files=self.hostile[self.rng.integers(len(self.hostile))])
        if kind == "clip":
            return await c.get(f"/clips/{cid}")
        if kind == "range":
            a = int(self.rng.integers(0, 4000))
            return await c.get(f"/clips/{cid}/audio", headers={"Range": f"bytes={a}-{a + 8191}"})
        if kind == "junk":
            return await c.get(
                self.rng.choice(
                    [
                        f"/clips/{2**64 + cid}",
                        f"/clips/{-(2**70)}/audio",
                        f"/search?q=x&k={10**30}",
                        f"/search?q=x&offset={2**63}",
                    ]
                )
            )
        return await c.get(self.rng.choice(["/healthz", "/readyz", "/index", "/metrics"]))

    async def worker(self, c: httpx.AsyncClient, until: float) -> None:
        while time.time() < until:
            kind, t = self.pick(), time.time()
            try:
                status = (await self.one(c, kind)).status_code
            except httpx.HTTPError as err:
                status = -1
                self.errors.append(f"{kind}: {err!r}"[:200])
            self.records.append((t, kind, status, time.time() - t))

    async def run(self, concurrency: int, until: float) -> None:
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as c:
            await asyncio.gather(*(self.worker(c, until) for _ in range(concurrency)))


def start_server(index: Path) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "AUDIOSEARCH_ADMIN_TOKEN": TOKEN}
    cmd = [*CLI, "serve", "--index", str(index), "--port", "0", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    port = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline()).group(1)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError("the server did not become ready")


def index(lib: Path, idx: Path) -> None:
    cmd = [*CLI, "index", str(lib), "--index", str(idx), "--workers", "0", "--quiet"]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def minutely(rss: list[tuple[float, float]]) -> list[float]:
    """The first RSS sample of each minute: shows a leak (steady climb) apart from a warm-up or a reload step."""
    seen: dict[int, float] = {}
    for t, m in rss:
        seen.setdefault(int(t // 60), m)
    return [seen[k] for k in sorted(seen)]


def percentiles(seconds: list[float]) -> tuple[float, float]:
    s = sorted(seconds)
    return round(statistics.median(s) * 1e3, 1), round(s[int(0.99 * (len(s) - 1))] * 1e3, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=30, help="seconds of load before RSS start and the stats")
    args = ap.parse_args()
    from audiosearch.app.demo import SAMPLE

    with tempfile.TemporaryDirectory() as tmp:
        lib, idx = Path(tmp) / "lib", Path(tmp) / "idx"
        shutil.copytree(SAMPLE, lib)
        clips = sorted(lib.rglob("*.ogg"))
        held = Path(tmp) / clips[-1].name
        shutil.move(clips[-1], held)  # indexed only by the rebuild halfway
        index(lib, idx)
        hostile = hostile_uploads(Path(tmp), clips[0])
        proc, url = start_server(idx)
        try:
            report = soak(url, proc.pid, lib, idx, held, clips[-1], clips[:-1], hostile, args)
        finally:
            proc.terminate()
            proc.wait(30)
    print(f"machine: {machine()}")
    print(", ".join(f"{k} {v}" for k, v in report.items()))
    append_csv("soak", [report])


def soak(
    url: str,
    pid: int,
    lib: Path,
    idx: Path,
    held: Path,
    back: Path,
    clips: list[Path],
    hostile: list,
    args: argparse.Namespace,
) -> dict:
    ids = [h["id"] for h in httpx.get(f"{url}/search", params={"q": "sound", "k": 100}).json()["results"]]
    load = Load(url, clips, ids, hostile, seed=0)
    t0, load_start = time.time(), load_avg(2)
    end = t0 + args.warmup + args.minutes * 60
    rss: list[tuple[float, float]] = []
    reload: dict = {}

    async def watch() -> None:
        while time.time() < end:
            rss.append((time.time() - t0, rss_mb(pid)))
            if not reload and time.time() > t0 + args.warmup + args.minutes * 30:
                files = httpx.get(f"{url}/index").json()["files"]
                shutil.move(held, back)
                await asyncio.to_thread(index, lib, idx)
                r = await asyncio.to_thread(
                    httpx.post, f"{url}/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
                )
                reload.update(status=r.status_code, files=f"{files}->{r.json().get('files')}")
            await asyncio.sleep(2)

    async def both() -> None:
        await asyncio.gather(load.run(args.concurrency, end), watch())

    asyncio.run(both())
    counted = [r for r in load.records if r[0] >= t0 + args.warmup]
    statuses = Counter(r[2] for r in counted)
    start_rss = next(m for t, m in rss if t >= args.warmup)
    end_rss = rss[-1][1]
    p50, p99 = percentiles([r[3] for r in counted])
    tp50, tp99 = percentiles([r[3] for r in counted if r[1] == "text"])
    server_errors = sum(n for s, n in statuses.items() if s >= 500)
    change = (end_rss - start_rss) / start_rss
    if load.errors:
        print("first client errors:", load.errors[:3])
    return {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": len(counted),
        "rps": round(len(counted) / (args.minutes * 60), 1),
        "5xx": server_errors,
        "client_errors": statuses[-1],
        "shed_429": statuses[429],
        "statuses": " ".join(f"{s}:{n}" for s, n in sorted(statuses.items())),
        "kinds": " ".join(f"{k}:{n}" for k, n in sorted(Counter(r[1] for r in counted).items())),
        "p50_ms": p50,
        "p99_ms": p99,
        "text_p50_ms": tp50,
        "text_p99_ms": tp99,
        "rss_start_mb": round(start_rss),
        "rss_end_mb": round(end_rss),
        "rss_max_mb": round(max(m for _, m in rss)),
        "rss_change_pct": round(100 * change, 1),
        "rss_by_minute": "/".join(str(round(m)) for m in minutely(rss)),
        "reload": f"{reload.get('status')} files {reload.get('files')}",
        "load_avg_start": load_start,
        "load_avg_end": load_avg(2),
        "pass": server_errors == 0 and statuses[-1] == 0 and abs(change) <= 0.10,
    }


if __name__ == "__main__":
    main()
