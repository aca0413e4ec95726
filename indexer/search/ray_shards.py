"""The shards of a sharded index (audiosearch.indexer.search.shards) in Ray actors, for `serve --ray`.

One named, detached actor per (snapshot, shard): "shard-<snapshot id>-<i>-of-<M>" in the serve run's own
namespace. Every ingress replica asks for the actors of the snapshot it opens with get_if_exists, so replicas
share one set of shards per snapshot, and a replica that opens a new snapshot (a reload) waits until every one
of its shards has loaded it before its route flips (RayShards.open returns only then; the switch itself is
SearchService.reload's swap, so no request sees two snapshots). A killed or crashed actor is restarted by Ray
(max_restarts) and reloads its rows from the snapshot on shared storage; calls in flight are retried
(max_task_retries), so requests wait for it instead of failing. Ray is imported only here and in app.ray_server.
"""

from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import ray
from ray.exceptions import GetTimeoutError, RayError

from audiosearch.core.logs import name_logs
from audiosearch.indexer.errors import IndexCorruptError
from audiosearch.indexer.search.shards import ShardedCandidates

log = logging.getLogger(__name__)
NAME = re.compile(r"^shard-(?P<snapshot>.+)-(?P<shard>\d+)-of-(?P<shards>\d+)$")


def actor_name(snapshot: str, shard: int, shards: int) -> str:
    return f"shard-{snapshot}-{shard}-of-{shards}"


@ray.remote(max_restarts=-1, max_task_retries=-1, max_concurrency=4)
class ShardActor:
    """audiosearch.indexer.search.shards.ShardPart in an actor; FAISS releases the GIL, so a few calls at once."""

    def __init__(self, snapshot: str, shard: int, shards: int) -> None:
        import faiss

        from audiosearch.indexer.search.shards import ShardPart

        self.label = f"shard {shard}/{shards} of {Path(snapshot).name}"
        name_logs(self.label)
        faiss.omp_set_num_threads(1)  # as the service: concurrent calls, not OpenMP, use the cores
        self.part = ShardPart(Path(snapshot), shard, shards)
        self.where = {"node": ray.util.get_node_ip_address(), "pid": os.getpid()}
        lo, hi, n = self.part.info()["windows"]
        log.info("loaded windows [%d, %d) of %d (%.1f MB) on %s", lo, hi, n, self.part.nbytes / 1e6, self.where["node"])

    def __repr__(self) -> str:  # Ray names the actor's log lines by it
        return self.label

    def info(self) -> dict[str, Any]:
        return {**self.part.info(), **self.where}

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.part.search(queries, k)

    def search_words(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.part.search_words(queries, n)


class RayShards:
    """A ShardSource on Ray: `open(snapshot)` gets or starts that snapshot's M shard actors and waits for all."""

    def __init__(
        self,
        shards: int,
        namespace: str,
        load_timeout_s: float = 600.0,
        call_timeout_s: float = 120.0,
        ready_timeout_s: float = 2.0,
    ) -> None:
        """`ready_timeout_s`: how long /readyz waits for a shard (a restarting one answers only once reloaded)."""
        self.shards, self.namespace = shards, namespace
        self.load_timeout_s, self.call_timeout_s, self.ready_timeout_s = load_timeout_s, call_timeout_s, ready_timeout_s

    def actors(self, snapshot: Path) -> list[Any]:
        return [
            ShardActor.options(
                name=actor_name(snapshot.name, i, self.shards),
                namespace=self.namespace,
                get_if_exists=True,
                lifetime="detached",  # shared by the replicas; app.ray_server retires old snapshots' shards
            ).remote(str(snapshot), i, self.shards)
            for i in range(self.shards)
        ]

    def open(self, snapshot: Path) -> ShardedCandidates:
        handles = self.actors(snapshot)
        try:  # phase one of a switch: every shard holds the snapshot before anything is routed to it
            infos = ray.get([h.info.remote() for h in handles], timeout=self.load_timeout_s)
        except GetTimeoutError:
            raise IndexCorruptError(
                f"the {self.shards} shards of snapshot {snapshot.name} did not load within {self.load_timeout_s:g} s "
                "(too few CPUs or memory on the cluster?)"
            ) from None
        except RayError as err:
            raise IndexCorruptError(f"a shard of snapshot {snapshot.name} failed to load: {_first_line(err)}") from None
        log.info("snapshot %s: %d shards loaded", snapshot.name, len(infos))
        timeout = self.call_timeout_s

        def ask(method: str, queries: np.ndarray, k: int) -> list[tuple[np.ndarray, ...]]:
            ref = ray.put(queries) if queries.nbytes > 64 * 1024 else queries  # one copy for all shards
            try:
                return ray.get([getattr(h, method).remote(ref, k) for h in handles], timeout=timeout)
            except GetTimeoutError:
                late = f"a shard of snapshot {snapshot.name} did not answer within {timeout:g} s"
                raise IndexCorruptError(late) from None
            except RayError as err:
                raise IndexCorruptError(f"a shard of snapshot {snapshot.name} failed: {_first_line(err)}") from None

        return ShardedCandidates(ask, infos, lambda: self.status(snapshot.name, handles))

    def status(self, snapshot: str, handles: list[Any]) -> list[dict[str, Any]]:
        """Each shard of `snapshot`: its info (rows held, node, pid) and ready, or not ready and why, asked of
        all at once and waited for at most ready_timeout_s."""
        refs = [h.info.remote() for h in handles]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=self.ready_timeout_s)
        out = []
        for i, ref in enumerate(refs):
            down = {"snapshot": snapshot, "shard": i, "shards": self.shards, "ready": False}
            if ref not in done:
                out.append({**down, "detail": f"no answer within {self.ready_timeout_s:g} s (restarting?)"})
                continue
            try:
                out.append({**ray.get(ref), "ready": True})
            except RayError as err:
                out.append({**down, "detail": _first_line(err)})
        return out

    def names(self) -> list[str]:
        """The shard actors of this namespace, by name."""
        found = ray.util.list_named_actors(all_namespaces=True)
        return [a["name"] for a in found if a.get("namespace") == self.namespace and NAME.match(a["name"])]

    def retire(self, keep: set[str], wait_s: float = 10.0) -> list[str]:
        """Stop the shards of every snapshot not in `keep` (snapshot ids); returns the actors stopped, once Ray
        no longer lists them (ray.kill only asks; waited for at most `wait_s`)."""
        stopped = []
        for name in self.names():
            m = NAME.match(name)
            if m is None or m["snapshot"] in keep:
                continue
            try:
                ray.kill(ray.get_actor(name, namespace=self.namespace), no_restart=True)
                stopped.append(name)
            except ValueError:  # already gone
                continue
        deadline = time.monotonic() + wait_s
        while (left := set(stopped) & set(self.names())) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            log.warning("shards still listed %g s after they were stopped: %s", wait_s, ", ".join(sorted(left)))
        return stopped


def _first_line(err: Exception) -> str:
    lines = [line for line in str(err).splitlines() if line.strip()]
    errors = [line for line in lines if "Error:" in line]
    return (errors[-1] if errors else lines[0] if lines else type(err).__name__).strip()
