"""File ids are never given twice: a client or HTTP cache holding /clips/{id} of a removed file must not get
another file under that id."""

from __future__ import annotations

import json
from pathlib import Path

from audiosearch.indexer import IndexOptions, build_index
from audiosearch.indexer.snapshots import current_snapshot
from audiosearch.indexer.sqlite import connect_readonly
from audiosearch.indexer.store import SnapshotReader
from tests.conftest import copy_clips

FAST = IndexOptions(workers=0, progress=False)


def ids(index_dir: Path) -> dict[str, int]:
    db = connect_readonly(current_snapshot(index_dir) / "meta.sqlite")
    try:
        return {path: fid for fid, path in db.execute("SELECT id, path FROM files")}
    finally:
        db.close()


def test_the_id_of_a_removed_file_is_not_given_to_a_new_one(indexed, shared_data, lite_model) -> None:
    lib, idx = indexed
    first = ids(idx)
    assert sorted(first.values()) == [1, 2, 3, 4]
    last = next(p for p, i in first.items() if i == 4)
    (lib / last).unlink()
    build_index(lib, idx, lite_model, FAST)
    copy_clips(shared_data, lib, {"rooster": 2})
    build_index(lib, idx, lite_model, FAST)
    now = ids(idx)
    assert sorted(i for p, i in now.items() if p.startswith("rooster/")) == [5, 6]
    assert {p: i for p, i in now.items() if i < 4} == {p: i for p, i in first.items() if i < 4}
    reader = SnapshotReader(idx)
    assert reader.clip(4) is None and reader.manifest["last_file_id"] == 6
    reader.close()


def test_a_snapshot_from_before_the_record_falls_back_to_its_highest_id(indexed, shared_data, lite_model) -> None:
    lib, idx = indexed
    manifest = current_snapshot(idx) / "manifest.json"
    data = json.loads(manifest.read_text())
    data.pop("last_file_id", None)
    manifest.write_text(json.dumps(data))
    copy_clips(shared_data, lib, {"rooster": 1})
    build_index(lib, idx, lite_model, FAST)
    assert sorted(ids(idx).values()) == [1, 2, 3, 4, 5]
