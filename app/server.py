"""`audiosearch serve`: uvicorn around create_app, on a socket bound before anything loads."""

from __future__ import annotations

import errno
import socket

from audiosearch.app.settings import Settings
from audiosearch.core.errors import InvalidInputError
from audiosearch.models import Encoder

PORT_HINT = "choose another with --port (make demo PORT=8080), or --port 0 for a free one"


def check_port(port: int) -> None:
    if not 0 <= port <= 65535:
        raise InvalidInputError(f"--port must be between 1 and 65535, or 0 for a free port; got {port}")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made first: a bad port, an unknown host or a port in use fail here in one line,
    not after the model has loaded. Port 0 picks a free port (`sock.getsockname()[1]` tells which)."""
    check_port(port)
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as err:
        raise InvalidInputError(f"--host {host!r} does not resolve to an address ({err.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port
    try:
        sock.bind(address)
    except OSError as err:
        sock.close()
        raise InvalidInputError(_bind_error(host, port, err)) from None
    return sock


def _bind_error(host: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is already in use; {PORT_HINT}"
    if err.errno == errno.EACCES:
        return f"no permission to listen on port {port} (ports below 1024 need privileges); {PORT_HINT}"
    if err.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine (use 127.0.0.1, or 0.0.0.0 for every interface)"
    return f"cannot listen on {host}:{port} ({err.strerror or err})"


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def serve(settings: Settings, sock: socket.socket, loaded: Encoder | None = None) -> int:
    """Run until interrupted; settings from app.settings.load_settings (AUDIOSEARCH_* variables + options)."""
    import uvicorn

    from audiosearch.app.main import create_app

    app = create_app(settings, model=loaded)
    print(f"audiosearch: serving {settings.index_dir} at {url(sock)}  (API docs: /docs)", flush=True)  # noqa: T201
    uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=False)).run(sockets=[sock])
    return 0
