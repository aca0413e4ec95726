"""Loaders for the public caption-set layouts, all returning `CaptionRow`s like `load_caption_csv`.

Formats (the run config's `format:` key):
- `csv`: the shared layout, `path,caption,...` (audiosearch.training.data.load_caption_csv);
- `clotho`: ClothoV2 `file_name,caption_1..caption_5`, audio files under an audio root;
- `audiocaps`: AudioCaps `audiocap_id,youtube_id,start_time,caption`, the audio file named from the row
  by a pattern (default `{youtube_id}.wav`; downloads also use e.g. `Y{youtube_id}.wav`);
- `wavcaps`: a WavCaps release JSON, `{"data": [{"id", "caption", ...}]}`, audio named by a pattern over
  the entry's fields (default `{stem}.flac`, `stem` = the id without an audio extension, as the
  released FLAC archives name the files);
- `jsonl`: one `{"path", "caption", "keywords"?}` object per line.

Every error names the file and the row (CSV line, JSON entry index or JSONL line). Clips of one audio file
share a `clip_id`, so all their captions are positives of each other in training.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from audiosearch.training.data import CaptionRow, DatasetError, confined_path, load_caption_csv

log = logging.getLogger(__name__)

FORMATS = ("csv", "clotho", "audiocaps", "wavcaps", "jsonl")
# Columns each CSV format needs in its header (checked when a config is parsed, before any training).
REQUIRED_COLUMNS = {"clotho": ("file_name", "caption_1"), "audiocaps": ("youtube_id", "caption")}
DEFAULT_PATTERNS = {"audiocaps": "{youtube_id}.wav", "wavcaps": "{stem}.flac"}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")


def load_rows(
    path: str | Path,
    fmt: str = "csv",
    audio_root: str | Path | None = None,
    caption_column: str = "caption",
    audio_pattern: str | None = None,
    skip_missing: bool = False,
    source: str | None = None,
    confine: Path | None = None,
) -> list[CaptionRow]:
    """Rows of a caption file in format `fmt`; audio paths are relative to `audio_root` (default: the
    file's folder). `skip_missing` drops rows whose audio file is absent (AudioCaps and WavCaps downloads
    usually lack some clips) instead of failing; each skipped row is counted in the log. `confine`
    (resolved): audio paths that resolve outside it are refused before any file is looked at."""
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    source = source or path.parent.name
    if fmt == "csv":
        if skip_missing:
            rows = load_caption_csv(path, root, source, caption_column, check_files=False, confine=confine)
            return _present(path, rows)
        return load_caption_csv(path, root, source, caption_column, confine=confine)
    if fmt not in FORMATS:
        raise DatasetError(f"{path}: unknown format {fmt!r}; known: {', '.join(FORMATS)}")
    records = {"clotho": _clotho, "audiocaps": _audiocaps, "wavcaps": _wavcaps, "jsonl": _jsonl}[fmt]
    pattern = audio_pattern or DEFAULT_PATTERNS.get(fmt, "")
    rows = []
    missing = 0
    for where, rel, caption, meta in records(path, pattern):
        row = _make_row(where, root, rel, caption, meta, source, confine)
        if row.path.is_file():
            rows.append(row)
        elif skip_missing:
            missing += 1
        else:
            raise DatasetError(f"{where}: audio file {row.path} not found")
    if missing:
        log.warning("%s: skipped %d row(s) whose audio file is missing", path, missing)
    if not rows:
        raise DatasetError(f"{path}: no rows" + (f" with an audio file ({missing} missing)" if missing else ""))
    return rows


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its extension and CSV header (for `audiosearch eval --data FILE`)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        return "wavcaps"
    header = set(read_header(path))
    for fmt, needed in REQUIRED_COLUMNS.items():
        if set(needed) <= header:
            return fmt
    return "csv"


MAX_HEADER_CHARS = 65536  # a header is a few column names; a file with no line break is not read whole


def read_header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            line = f.readline(MAX_HEADER_CHARS + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None
    if len(line) > MAX_HEADER_CHARS:
        raise DatasetError(f"{path}: the header line is longer than {MAX_HEADER_CHARS} characters; not a caption file")
    return next(csv.reader([line]), [])


def _present(path: Path, rows: list[CaptionRow]) -> list[CaptionRow]:
    kept = [r for r in rows if r.path.is_file()]
    if len(kept) < len(rows):
        log.warning("%s: skipped %d row(s) whose audio file is missing", path, len(rows) - len(kept))
    if not kept:
        raise DatasetError(f"{path}: no rows with an audio file ({len(rows)} missing)")
    return kept


def _make_row(
    where: str, root: Path, rel: str, caption: str, meta: dict[str, str], source: str, confine: Path | None = None
) -> CaptionRow:
    if not rel:
        raise DatasetError(f"{where}: empty audio file name")
    if not caption:
        raise DatasetError(f"{where} ({rel}): empty caption")
    path = confined_path(root, rel, confine, where)
    return CaptionRow(path=path, caption=caption, clip_id=f"{source}/{rel}", source=source, meta=meta)


Record = tuple[str, str, str, dict[str, str]]  # (where, audio path relative to the root, caption, meta)


def _csv_records(path: Path, needed: Sequence[str]) -> Iterator[tuple[str, dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in needed if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; found {reader.fieldnames}")
            for rec in reader:
                yield f"{path}: row at line {reader.line_num}", {k: (v or "").strip() for k, v in rec.items() if k}
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


def _clotho(path: Path, pattern: str) -> Iterator[Record]:
    """One row per non-empty caption_N: the five captions of a clip become five positives."""
    for where, rec in _csv_records(path, REQUIRED_COLUMNS["clotho"]):
        captions = [rec[k] for k in sorted(rec) if k.startswith("caption_") and rec[k]]
        if not captions:
            raise DatasetError(f"{where} ({rec['file_name']}): no caption")
        meta = {k: v for k, v in rec.items() if k != "file_name" and not k.startswith("caption_")}
        for caption in captions:
            yield where, rec["file_name"], caption, meta


def _audiocaps(path: Path, pattern: str) -> Iterator[Record]:
    for where, rec in _csv_records(path, REQUIRED_COLUMNS["audiocaps"]):
        if not rec["youtube_id"]:
            raise DatasetError(f"{where}: empty youtube_id")
        yield where, _pattern(pattern, rec, where), rec["caption"], {k: v for k, v in rec.items() if k != "caption"}


def _wavcaps(path: Path, pattern: str) -> Iterator[Record]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None
    except json.JSONDecodeError as err:
        raise DatasetError(f"{path}: not valid JSON at line {err.lineno} ({err.msg})") from None
    entries = data.get("data") if isinstance(data, Mapping) else None
    if not isinstance(entries, list):
        raise DatasetError(f'{path}: expected a WavCaps object {{"data": [...]}}, got {type(data).__name__}')
    for i, entry in enumerate(entries):
        where = f"{path}: data[{i}]"
        if not isinstance(entry, Mapping):
            raise DatasetError(f"{where}: must be an object, got {type(entry).__name__}")
        fields = {k: _text(v) for k, v in entry.items()}
        if not fields.get("id"):
            raise DatasetError(f'{where}: missing "id"')
        fields["stem"] = _strip_audio_suffix(fields["id"])
        meta = {k: v for k, v in fields.items() if k not in ("caption", "stem")}
        yield where, _pattern(pattern, fields, where), fields.get("caption", ""), meta


def _jsonl(path: Path, pattern: str) -> Iterator[Record]:
    try:
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, start=1):
                if line.strip():
                    yield _jsonl_record(f"{path}: line {n}", line)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"{path}: cannot read ({err})") from None


def _jsonl_record(where: str, line: str) -> Record:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise DatasetError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(obj, Mapping):
        raise DatasetError(f"{where}: must be an object, got {type(obj).__name__}")
    missing = [k for k in ("path", "caption") if k not in obj]
    if missing:
        raise DatasetError(f"{where}: missing key(s) {', '.join(missing)}")
    meta = {k: _text(v) for k, v in obj.items() if k not in ("path", "caption")}
    return where, _text(obj["path"]), _text(obj["caption"]), meta


def _text(value: Any) -> str:
    """Strings as they are; keyword lists as space-separated words (the CSV layout's `keywords`)."""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value)
    return "" if value is None else str(value).strip()


def _strip_audio_suffix(name: str) -> str:
    """'Y---1_cCGK4M.wav' -> 'Y---1_cCGK4M' (AudioSet_SL ids carry the original extension)."""
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in AUDIO_SUFFIXES else name


def _pattern(pattern: str, fields: Mapping[str, str], where: str) -> str:
    try:
        return pattern.format_map(fields)
    except KeyError as err:
        raise DatasetError(f"{where}: audio_pattern {pattern!r} names {err}, which this row lacks") from None
    except (ValueError, IndexError) as err:
        raise DatasetError(f"{where}: bad audio_pattern {pattern!r} ({err})") from None
