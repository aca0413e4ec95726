"""`audiosearch demo`: index the bundled sample library with the lite model, then serve it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from audiosearch.app.settings import Settings, load_settings

SAMPLE = Path(__file__).resolve().parent / "sample"


def run_demo(index_dir: Path, sock: socket.socket | None, settings: Settings | None = None) -> int:
    """Build (or update) the demo index, then serve it on `sock` (audiosearch.app.server.bind); None: build only."""
    from audiosearch.core.errors import AudioSearchError
    from audiosearch.core.threads import configure_threads
    from audiosearch.indexer import IndexOptions, build_index
    from audiosearch.models import load_encoder

    if not SAMPLE.is_dir():
        raise AudioSearchError(f"the sample library is missing from this install ({SAMPLE})")
    model = load_encoder("lite")
    configure_threads()
    report = build_index(SAMPLE, index_dir, model, IndexOptions(workers=0, progress=sys.stderr.isatty()))
    print(f"demo: {report.summary()}", flush=True)  # noqa: T201
    if sock is None:
        return 0
    from audiosearch.app.server import serve

    return serve(settings or load_settings(index_dir=index_dir, model="lite", device="cpu"), sock, loaded=model)
