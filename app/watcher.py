"""Follow rebuilds: when the index's CURRENT names a new snapshot, the service switches to it by itself.

A rebuild by the CLI, compose's indexer job or a Ray run ends by replacing CURRENT (audiosearch.indexer.store); this
thread polls it (a stat and a read of a few bytes every `interval_s`; polling, not inotify, because
inotify does not see writes made by another container or host on a shared volume) and calls
`SearchService.reload()`, the same zero-drop swap as POST /admin/reload. A rebuild that changed nothing
leaves CURRENT as it was (audiosearch.indexer.build), so it causes no swap. A snapshot that fails to open is logged
once and the live one keeps serving; the next change of CURRENT is tried again.
"""

from __future__ import annotations

import logging
import threading

from audiosearch.app.search_service import SearchService
from audiosearch.core.errors import AudioSearchError

log = logging.getLogger(__name__)


class IndexWatcher:
    def __init__(self, service: SearchService, interval_s: float) -> None:
        self.service, self.interval_s = service, interval_s
        self._stop = threading.Event()
        self._failed: str | None = None  # a snapshot name that did not open; not retried until CURRENT changes
        self._thread = threading.Thread(target=self._run, name="index-watcher", daemon=True)

    def start(self) -> IndexWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll(self) -> bool:
        """Switch if CURRENT names another snapshot than the live one; True when it switched."""
        try:
            name = (self.service.index_dir / "CURRENT").read_text().strip()
        except OSError:  # mid-replace on some file systems, or the index was removed: keep serving
            return False
        if not name or name == self.service.searcher.snapshot.name or name == self._failed:
            return False
        try:
            self.service.reload()
        except AudioSearchError as err:
            self._failed = name
            log.warning(
                "index changed to %s but it cannot be served (%s); still serving %s",
                name,
                err,
                self.service.searcher.snapshot.name,
            )
            return False
        self._failed = None
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll()
            except Exception:  # never let the watcher die: the next poll may succeed
                log.exception("index watcher")
