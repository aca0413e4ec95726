"""Log lines that name the process they come from, for services of several processes (`serve --ray`)."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s {label}%(name)s: %(message)s"  # the CLI's, with the process's name


def name_logs(label: str) -> None:
    """Every log line of this process names it (`label`: "replica 1/2", "shard 0/4 of <snapshot>"); uvicorn's
    lines too, when uvicorn is told to leave logging alone (log_config=None) so they reach the root logger."""
    fmt = FORMAT.format(label=f"[{label.replace('%', '%%')}] ")
    logging.basicConfig(level=logging.INFO, format=fmt, stream=sys.stderr, force=True)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
