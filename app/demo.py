"""`audiosearch demo`: index the bundled sample library with the lite model, then serve it."""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "sample"


def run_demo(index_dir: Path, host: str, port: int, serve_after: bool = True) -> int:
    from app.runtime import configure_threads
    from indexer import IndexOptions, build_index
    from models import load_encoder
    from models.errors import AudioSearchError

    if not SAMPLE.is_dir():
        raise AudioSearchError(f"the sample library is missing from this install ({SAMPLE})")
    model = load_encoder("lite")
    configure_threads()
    report = build_index(SAMPLE, index_dir, model, IndexOptions(workers=0, progress=sys.stderr.isatty()))
    print(f"demo: {report.summary()}", flush=True)  # noqa: T201
    if not serve_after:
        return 0
    from app.server import serve

    return serve(index_dir, host, port, "lite", "cpu", loaded=model)
