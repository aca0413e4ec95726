"""The service follows rebuilds by itself: a new CURRENT is served within seconds with no failed request;
a rebuild that changed nothing, a broken snapshot, or a watcher turned off cause no swap."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from audiosearch.app.main import create_app
from audiosearch.app.settings import Settings
from audiosearch.indexer import IndexOptions, build_index
from tests.app.live import live_server
from tests.conftest import copy_clips

FAST = IndexOptions(workers=0, progress=False)


def snapshot(url: str) -> str:
    return httpx.get(f"{url}/readyz").json()["snapshot"]


def wait_for_snapshot(url: str, name: str, timeout: float = 15) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if snapshot(url) == name:
            return True
        time.sleep(0.1)
    return False


def test_a_rebuild_is_served_by_itself_with_no_failed_request(indexed, shared_data, lite_model) -> None:
    lib, idx = indexed
    statuses: list[int] = []
    stop = threading.Event()

    def hammer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                statuses.append(c.get("/search", params={"q": "waves on a beach", "k": 5}).status_code)
                statuses.append(c.get("/clips/1").status_code)

    with live_server(create_app(Settings(index_dir=idx, watch_index_s=0.5), model=lite_model)) as url:
        threads = [threading.Thread(target=hammer, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        before = httpx.get(f"{url}/index").json()
        copy_clips(shared_data, lib, {"sea_waves": 1})
        report = build_index(lib, idx, lite_model, FAST)  # no /admin/reload: the watcher sees CURRENT change
        switched = wait_for_snapshot(url, report.snapshot)
        hits = httpx.get(f"{url}/search", params={"q": "waves on a beach", "k": 5}).json()["results"]
        after = httpx.get(f"{url}/index").json()
        stop.set()
        for t in threads:
            t.join()
    assert switched and after["files"] == before["files"] + 1 == 5
    assert any(h["path"].startswith("sea_waves/") for h in hits), hits
    assert len(statuses) > 10 and set(statuses) == {200}, f"{len(statuses)} requests: {set(statuses)}"


@pytest.mark.slow
def test_no_swap_for_an_unchanged_rebuild_a_broken_snapshot_or_a_watcher_turned_off(
    indexed, shared_data, lite_model
) -> None:
    lib, idx = indexed
    live = (idx / "CURRENT").read_text()
    with live_server(create_app(Settings(index_dir=idx, watch_index_s=0.2), model=lite_model)) as url:
        assert build_index(lib, idx, lite_model, FAST).unchanged
        time.sleep(1.0)
        assert snapshot(url) == live and (idx / "CURRENT").read_text() == live
        (idx / "CURRENT").write_text("20000101T000000-gone00")  # names a snapshot that does not exist
        time.sleep(1.0)
        assert snapshot(url) == live  # logged once, still serving the last good one
        assert httpx.get(f"{url}/search", params={"q": "rain"}).status_code == 200
        (idx / "CURRENT").write_text(live)
    with live_server(create_app(Settings(index_dir=idx, watch_index_s=0), model=lite_model)) as url:
        copy_clips(shared_data, lib, {"sea_waves": 1})
        new = build_index(lib, idx, lite_model, FAST).snapshot
        time.sleep(1.5)
        assert snapshot(url) == live != new  # off: only /admin/reload or a restart switches
