"""Caption data sets as (audio path, caption, clip id) rows, read from the shared CSV layout.

Every CSV under ../shared/data has a `path` column (relative to the CSV's folder, or to an explicit
audio root) and a caption column (`caption`; booth/labels.csv has `label` instead). Other columns
(fold, keywords, category, ...) are kept in `CaptionRow.meta` for splitting.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from audiosearch.core.errors import InvalidInputError


class DatasetError(InvalidInputError):
    """A caption file or a row in it is unusable; the message names the file and the row."""


@dataclass(frozen=True)
class CaptionRow:
    path: Path  # absolute path of the audio file
    caption: str
    clip_id: str  # "<source>/<path in CSV>": rows of one clip (several captions) share it
    source: str
    meta: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


def load_caption_csv(
    csv_path: str | Path,
    audio_root: str | Path | None = None,
    source: str | None = None,
    caption_column: str = "caption",
    check_files: bool = True,
    confine: Path | None = None,
) -> list[CaptionRow]:
    """Read `path,<caption_column>,...` rows; audio paths are relative to `audio_root` (default: the
    CSV's folder). Raises DatasetError for a missing column, an empty path or caption, or a missing file.
    `confine` (resolved): a row whose audio path resolves outside it is refused before the file is looked
    at, so the error never tells whether a file exists outside the allowed folder."""
    csv_path = Path(csv_path)
    root = Path(audio_root) if audio_root is not None else csv_path.parent
    source = source or csv_path.parent.name
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            _check_columns(csv_path, reader.fieldnames, caption_column)
            rows = [
                _row(csv_path, reader.line_num, rec, root, source, caption_column, check_files, confine)
                for rec in reader
            ]
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err.strerror or err})") from None
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")
    return rows


def _check_columns(csv_path: Path, fieldnames: Sequence[str] | None, caption_column: str) -> None:
    missing = [c for c in ("path", caption_column) if c not in (fieldnames or [])]
    if missing:
        raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)}; found {list(fieldnames or [])}")


def _row(
    csv_path: Path,
    line: int,
    rec: dict[str, str | None],
    root: Path,
    source: str,
    caption_column: str,
    check_files: bool,
    confine: Path | None = None,
) -> CaptionRow:
    where = f"{csv_path}: row at line {line}"
    rel = (rec.get("path") or "").strip()
    caption = (rec.get(caption_column) or "").strip()
    if not rel:
        raise DatasetError(f"{where}: empty path")
    if not caption:
        raise DatasetError(f"{where} ({rel}): empty {caption_column}")
    path = confined_path(root, rel, confine, where)
    if check_files and not path.is_file():
        raise DatasetError(f"{where}: audio file {path} not found")
    meta = {k: (v or "") for k, v in rec.items() if k not in ("path", caption_column) and k is not None}
    return CaptionRow(path=path, caption=caption, clip_id=f"{source}/{rel}", source=source, meta=meta)


def confined_path(root: Path, rel: str, confine: Path | None, where: str) -> Path:
    """root/rel resolved ('..' and symlinks followed); outside `confine` it is refused, whether or not it exists."""
    path = (root / rel).resolve()
    if confine is not None and not path.is_relative_to(confine):
        raise DatasetError(f"{where}: audio file {rel} is outside the allowed data folder")
    return path


def split_rows(
    rows: Iterable[CaptionRow], held_out: Callable[[CaptionRow], bool]
) -> tuple[list[CaptionRow], list[CaptionRow]]:
    """(kept, held out) by a predicate, e.g. `lambda r: r.meta["fold"] == "5"`."""
    kept, held = [], []
    for r in rows:
        (held if held_out(r) else kept).append(r)
    return kept, held


def group_split(
    rows: Sequence[CaptionRow], key: Callable[[CaptionRow], str], fraction: float, seed: int = 0
) -> tuple[list[CaptionRow], list[CaptionRow]]:
    """Hold out about `fraction` of the groups given by `key` (whole groups, so that numbered variants
    of one recording never sit on both sides); deterministic for a seed."""
    if not 0.0 < fraction < 1.0:
        raise DatasetError(f"fraction must be in (0, 1), got {fraction}")
    groups = sorted({key(r) for r in rows})
    random.Random(seed).shuffle(groups)
    held = set(groups[: max(1, round(fraction * len(groups)))])
    return split_rows(rows, lambda r: key(r) in held)


def path_stem_group(row: CaptionRow) -> str:
    """Group key for numbered variants: 'attack/impact/arrow_metal_03.ogg' -> 'attack/impact/arrow_metal'."""
    rel = row.clip_id.split("/", 1)[1]
    stem = rel.rsplit(".", 1)[0].rstrip("0123456789").rstrip("_-")
    return f"{row.source}/{stem}"


def caption_group(row: CaptionRow) -> str:
    return row.caption.lower()


def query_relevance(rows: Sequence[CaptionRow]) -> tuple[list[Path], list[str], np.ndarray]:
    """Unique clips (their paths), distinct captions as queries, and relevance[q, clip] (DCASE protocol)."""
    clips = sorted({r.clip_id: r.path for r in rows}.items())
    texts = sorted({r.caption for r in rows})
    clip_pos = {cid: i for i, (cid, _) in enumerate(clips)}
    text_pos = {t: i for i, t in enumerate(texts)}
    relevance = np.zeros((len(texts), len(clips)), dtype=bool)
    for r in rows:
        relevance[text_pos[r.caption], clip_pos[r.clip_id]] = True
    return [p for _, p in clips], texts, relevance
