"""File ids: kept by unchanged paths and never given twice. Clients and HTTP caches (/clips/{id}/audio is
served cacheable) hold on to ids, so a removed file's id must not come back naming another file."""

from __future__ import annotations

from pathlib import Path

from audiosearch.indexer.snapshots import current_snapshot, read_manifest

LAST_ID = "last_file_id"  # manifest key: the highest id ever assigned, carried from snapshot to snapshot


def last_file_id(index_dir: Path, prev: dict[str, tuple[int, int, int, str]]) -> int:
    """The highest id given so far; a snapshot written before LAST_ID was recorded falls back to its max id."""
    snap = current_snapshot(index_dir)
    recorded = int(read_manifest(snap).get(LAST_ID, 0)) if snap is not None else 0
    return max(recorded, max((v[0] for v in prev.values()), default=0))


def assign_file_ids(paths: list[str], prev: dict[str, tuple[int, int, int, str]], last: int) -> tuple[list[int], int]:
    """Ids of `paths`: the previous snapshot's for known paths, fresh ones above `last` for the rest.
    Returns the ids and the new highest id."""
    ids = []
    for path in paths:
        old = prev.get(path)
        if old is None:
            last += 1
        ids.append(old[0] if old is not None else last)
    return ids, last
