"""`audiosearch serve --ray [ADDRESS] --replicas N --shards M`: the service's own FastAPI app under uvicorn as the
ingress (N processes on one socket), the FAISS candidate searches on M shard actors on Ray.

Why not Ray Serve as the ingress: measured on this project's 2-core machine, a trivial FastAPI app behind Serve's
HTTP proxy answered 0.19x the requests per second of plain uvicorn, and one handle call to a second deployment
cost as much again (0.12x). The ingress here is the single-process service itself (same routes, limits, errors,
batcher, query cache, watcher), so a client cannot tell the two apart but by speed; the only remote calls are
one per shard and FAISS call, side by side (docs/serving-on-ray.md).

This process (the controller) connects to Ray or starts a local instance, serves (in-process for one replica,
else uvicorn's worker processes, each its own Ray driver), and retires the shards of snapshots no longer served
(keeping the live one and the one before, as the index keeps its snapshots); at exit it stops every shard.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import socket
import tempfile
import threading
import uuid
from pathlib import Path

import ray

from audiosearch.app.main import create_app
from audiosearch.app.server import url
from audiosearch.app.settings import Settings
from audiosearch.core.errors import InvalidInputError
from audiosearch.core.logs import name_logs
from audiosearch.indexer.search.ray_shards import RayShards

log = logging.getLogger(__name__)
# What a replica process reads (set by serve_on_ray before uvicorn starts its workers)
ENV_ADDRESS, ENV_NAMESPACE, ENV_SHARDS, ENV_SETTINGS, ENV_REPLICAS, ENV_SLOTS = (
    "AUDIOSEARCH_RAY_ADDRESS",
    "AUDIOSEARCH_RAY_NAMESPACE",
    "AUDIOSEARCH_RAY_SHARDS",
    "AUDIOSEARCH_RAY_SETTINGS",
    "AUDIOSEARCH_RAY_REPLICAS",
    "AUDIOSEARCH_RAY_SLOTS",
)
_SLOT_LOCKS: list[int] = []  # a replica's lock on its number, held for the life of the process


def connect(address: str | None, namespace: str) -> str:
    """Join the cluster at `address` (or $RAY_ADDRESS / a running local one with 'auto'), or start a local
    instance when none is given; failures are one line. Returns the Ray session's folder (its logs/ holds the
    shard actors' log files on each node)."""
    try:
        if address:
            ctx = ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ctx = ray.init(
                namespace=namespace, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
            )
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise InvalidInputError(f"--ray {address or '(local)'}: {str(err).splitlines()[0]}") from None
    return str(ctx.address_info.get("session_dir", "?"))


def serve_on_ray(settings: Settings, sock: socket.socket, address: str | None, replicas: int, shards: int) -> int:
    """Serve until SIGINT or SIGTERM (uvicorn's handlers: the replicas finish their requests and stop), then stop
    every shard actor of the run and the local Ray instance, if this process started one."""
    namespace = f"audiosearch-serve-{uuid.uuid4().hex[:8]}"
    name_logs("replica 1/1" if replicas == 1 else "controller")
    slots = Path(tempfile.mkdtemp(prefix="audiosearch-replicas-"))
    session = connect(address, namespace)
    settings = settings.model_copy(update={"mmap": True})  # the ingress reads only its candidates' rows
    source = RayShards(shards, namespace)
    janitor = Janitor(source, settings)
    try:  # from here on Ray's SIGTERM handler (SystemExit) and uvicorn's both end in the cleanup below
        janitor.start()
        where = ray.get_runtime_context().gcs_address
        print(  # noqa: T201
            f"audiosearch: serving {settings.index_dir} at {url(sock)} on Ray {where}: {replicas} replica(s), "
            f"{shards} shard(s)  (API docs: /docs)\naudiosearch: the shards log to {session}/logs/worker-*.err on "
            "their nodes",
            flush=True,
        )
        env = {ENV_ADDRESS: where, ENV_NAMESPACE: namespace, ENV_SHARDS: str(shards), ENV_REPLICAS: str(replicas)}
        os.environ.update({**env, ENV_SLOTS: str(slots), ENV_SETTINGS: settings.model_dump_json()})
        _run_replicas(settings, sock, source, replicas)
    finally:
        janitor.stop()
        stopped = source.retire(keep=set())
        ray.shutdown()
        shutil.rmtree(slots, ignore_errors=True)
        log.info("stopped %d shard actor(s)%s", len(stopped), "" if address else " and the local Ray instance")
    return 0


def _run_replicas(settings: Settings, sock: socket.socket, source: RayShards, replicas: int) -> None:
    """One replica: the app in this process; more: uvicorn's worker processes, each running replica_app. uvicorn
    leaves logging alone (log_config=None), so its lines go through name_logs' format too."""
    import uvicorn

    if replicas == 1:
        app = create_app(settings, shards=source)
        app.state.replica = "1/1"
        uvicorn.Server(uvicorn.Config(app, log_level="info", log_config=None, access_log=False)).run(sockets=[sock])
        return
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        f"{__name__}:replica_app", factory=True, workers=replicas, log_level="info", log_config=None, access_log=False
    )
    Multiprocess(config, sockets=[sock]).run()


def replica_app():  # noqa: ANN201 - a FastAPI app; uvicorn calls this in each worker process
    """One ingress replica (a uvicorn worker): names its log lines, joins the controller's Ray namespace, then
    the service's app."""
    replicas = int(os.environ[ENV_REPLICAS])
    number = _claim_number(Path(os.environ[ENV_SLOTS]), replicas)
    replica = f"{number}/{replicas}" if number else f"pid {os.getpid()} of {replicas}"
    name_logs(f"replica {replica}")
    namespace = os.environ[ENV_NAMESPACE]
    sigterm = signal.getsignal(signal.SIGTERM)
    ray.init(address=os.environ[ENV_ADDRESS], namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
    signal.signal(signal.SIGTERM, sigterm)  # Ray's handler exits at once; uvicorn's lets requests finish
    settings = Settings.model_validate_json(os.environ[ENV_SETTINGS])
    app = create_app(settings, shards=RayShards(int(os.environ[ENV_SHARDS]), namespace))
    app.state.replica = replica
    return app


def _claim_number(folder: Path, replicas: int) -> int | None:
    """This replica's number, 1..N: the first of N lock files it can lock. The kernel drops a lock when its
    process ends, so a replica uvicorn starts in place of a dead one takes that one's number."""
    for i in range(1, replicas + 1):
        fd = os.open(folder / f"replica-{i}", os.O_CREAT | os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _SLOT_LOCKS.append(fd)
        return i
    return None  # all taken: a replica started before the one it replaces has stopped


class Janitor:
    """Stops the shards of snapshots no longer served: it follows the index's CURRENT as the replicas do and
    keeps the live snapshot's shards and the previous one's (a replica may still be switching)."""

    def __init__(self, source: RayShards, settings: Settings) -> None:
        self.source, self.current = source, settings.index_dir / "CURRENT"
        self.interval_s = settings.watch_index_s or 5.0
        self.seen: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shard-janitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll(self) -> None:
        try:
            live = self.current.read_text().strip()
        except OSError:
            return
        if live and (not self.seen or self.seen[-1] != live):
            self.seen = [*self.seen[-1:], live]
        stopped = self.source.retire(keep=set(self.seen))
        if stopped:
            log.info("stopped the shards of old snapshots: %s", ", ".join(stopped))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let it die: the next poll may succeed
                log.exception("shard janitor")
