"""Connecting to Ray for `audiosearch index --ray`: fail fast and in one line, reuse a runtime already started."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

from audiosearch.indexer.errors import IndexBuildError


def check_ray(address: str | None) -> None:
    """Fail fast, in one line: Ray missing, or nothing listening at the address (ray.init would wait minutes)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        raise IndexBuildError("--ray needs Ray: pip install 'audiosearch[ray]'") from None
    if not address or address in ("auto", "local"):
        return
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise IndexBuildError(f"--ray {address}: expected HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise IndexBuildError(f"--ray {address}: cannot reach a Ray cluster there ({err.strerror or err})") from None


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Use the Ray runtime this process already started (tests, notebooks), else connect or start one."""
    import ray

    if ray.is_initialized():
        yield
        return
    check_ray(address)
    try:
        # Worker logs stay on the cluster: per-file errors come back in the shard results.
        ray.init(address=address or None, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as err:
        raise IndexBuildError(f"--ray {address or '(default)'}: {str(err).splitlines()[0]}") from None
    try:
        yield
    finally:
        ray.shutdown()
