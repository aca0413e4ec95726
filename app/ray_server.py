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

import logging
import os
import socket
import threading
import uuid

import ray

from audiosearch.app.main import create_app
from audiosearch.app.server import url
from audiosearch.app.settings import Settings
from audiosearch.core.errors import InvalidInputError
from audiosearch.indexer.search.ray_shards import RayShards

log = logging.getLogger(__name__)
# What a replica process reads (set by serve_on_ray before uvicorn starts its workers)
ENV_ADDRESS, ENV_NAMESPACE, ENV_SHARDS, ENV_SETTINGS = (
    "AUDIOSEARCH_RAY_ADDRESS",
    "AUDIOSEARCH_RAY_NAMESPACE",
    "AUDIOSEARCH_RAY_SHARDS",
    "AUDIOSEARCH_RAY_SETTINGS",
)


def connect(address: str | None, namespace: str) -> None:
    """Join the cluster at `address` (or $RAY_ADDRESS / a running local one with 'auto'), or start a local
    instance when none is given; failures are one line."""
    try:
        if address:
            ray.init(address=address, namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(namespace=namespace, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise InvalidInputError(f"--ray {address or '(local)'}: {str(err).splitlines()[0]}") from None


def serve_on_ray(settings: Settings, sock: socket.socket, address: str | None, replicas: int, shards: int) -> int:
    namespace = f"audiosearch-serve-{uuid.uuid4().hex[:8]}"
    connect(address, namespace)
    settings = settings.model_copy(update={"mmap": True})  # the ingress reads only its candidates' rows
    source = RayShards(shards, namespace)
    janitor = Janitor(source, settings)
    janitor.start()
    where = ray.get_runtime_context().gcs_address
    print(  # noqa: T201
        f"audiosearch: serving {settings.index_dir} at {url(sock)} on Ray {where}: {replicas} replica(s), "
        f"{shards} shard(s)  (API docs: /docs)",
        flush=True,
    )
    import uvicorn

    try:
        if replicas == 1:
            app = create_app(settings, shards=source)
            uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False)).run(sockets=[sock])
        else:
            from uvicorn.supervisors import Multiprocess

            os.environ.update({
                ENV_ADDRESS: where,
                ENV_NAMESPACE: namespace,
                ENV_SHARDS: str(shards),
                ENV_SETTINGS: settings.model_dump_json(),
            })  # fmt: skip
            config = uvicorn.Config(
                f"{__name__}:replica_app", factory=True, workers=replicas, log_level="info", access_log=False
            )
            Multiprocess(config, sockets=[sock]).run()
    finally:
        janitor.stop()
        source.retire(keep=set())
        ray.shutdown()
    return 0


def replica_app():  # noqa: ANN201 - a FastAPI app; uvicorn calls this in each worker process
    """One ingress replica (a uvicorn worker): joins the controller's Ray namespace, then the service's app."""
    namespace = os.environ[ENV_NAMESPACE]
    ray.init(address=os.environ[ENV_ADDRESS], namespace=namespace, logging_level=logging.WARNING, log_to_driver=False)
    settings = Settings.model_validate_json(os.environ[ENV_SETTINGS])
    return create_app(settings, shards=RayShards(int(os.environ[ENV_SHARDS]), namespace))


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
