"""Embedded tags of an audio file: the fields that describe the sound, as {field: text}.

mutagen reads Vorbis comments (Ogg Vorbis, Opus, FLAC), ID3 (MP3, and ID3 chunks in WAV and AIFF) and MP4
atoms; libsndfile (soundfile) reads RIFF INFO and AIFF name/annotation chunks. Neither exposes the BWF `bext`
description nor the INFO keywords (IKEY) and subject (ISBJ) that sound-effect libraries write, so a small
RIFF chunk reader here covers those three. Artist, copyright, dates and encoder names are left out: they
name people and tools, not sounds.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import mutagen
import soundfile as sf
from mutagen.id3 import ID3 as ID3Tags
from mutagen.mp4 import MP4Tags

log = logging.getLogger(__name__)

FIELDS = ("title", "description", "keywords", "subject", "comment", "genre", "album", "grouping")
MAX_FIELD_CHARS = 500  # a longer field is truncated: tags describe, they do not hold documents
VERSION = 1  # bump when fields or readers change, so cached tags are read again

VORBIS = {f: f for f in FIELDS}  # Vorbis comment names are the field names, case-insensitively
ID3 = {"TIT2": "title", "TIT1": "grouping", "TIT3": "description", "TALB": "album", "TCON": "genre", "COMM": "comment"}
ID3_TXXX = {"description": "description", "keywords": "keywords", "subject": "subject", "comment": "comment"}
MP4 = {
    "\xa9nam": "title",
    "\xa9alb": "album",
    "\xa9gen": "genre",
    "\xa9cmt": "comment",
    "desc": "description",
    "ldes": "description",
    "\xa9grp": "grouping",
    "keyw": "keywords",
}
RIFF_INFO = {b"IKEY": "keywords", b"ISBJ": "subject"}  # the INFO fields libsndfile drops
SNDFILE = {"title": "title", "comment": "comment", "album": "album", "genre": "genre"}
RIFF_SUFFIXES = frozenset({".wav", ".wave", ".bwf"})
SNDFILE_SUFFIXES = RIFF_SUFFIXES | {".aif", ".aiff", ".aifc"}


def read_tags(path: Path) -> dict[str, str]:
    """The descriptive tags of one file; {} when it has none or they cannot be parsed (the audio still counts)."""
    found: dict[str, list[str]] = {}
    for field, text in _all_tags(Path(path)):
        text = " ".join(str(text).replace("\x00", " ").split())
        if text and text not in found.setdefault(field, []):
            found[field].append(text)
    return {f: "; ".join(found[f])[:MAX_FIELD_CHARS] for f in FIELDS if found.get(f)}


def _all_tags(path: Path) -> Iterator[tuple[str, str]]:
    suffix = path.suffix.lower()
    readers = [_mutagen_tags]
    if suffix in SNDFILE_SUFFIXES:
        readers.append(_sndfile_tags)
    if suffix in RIFF_SUFFIXES:
        readers.append(_riff_tags)
    for reader in readers:
        try:
            yield from list(reader(path))
        except Exception as err:  # noqa: BLE001 - a malformed tag must not cost the file its audio
            log.debug("%s: tags unreadable by %s (%s)", path, reader.__name__, err)


def _mutagen_tags(path: Path) -> Iterator[tuple[str, str]]:
    try:
        tagged = mutagen.File(path)
    except mutagen.MutagenError as err:
        log.debug("%s: %s", path, err)
        return
    tags = getattr(tagged, "tags", None)
    if tags is None:
        return
    if isinstance(tags, ID3Tags):  # MP3, and the ID3 chunks of WAV and AIFF
        yield from _id3(tags)
    elif isinstance(tags, MP4Tags):
        yield from _mapped(tags.items(), MP4)
    elif isinstance(tags, list):  # Vorbis comments (Ogg, Opus, FLAC): a list of (name, value) pairs
        yield from ((VORBIS[k.lower()], v) for k, v in tags if k.lower() in VORBIS)


def _id3(tags: Any) -> Iterator[tuple[str, str]]:
    for frame in tags.values():
        fid = frame.FrameID
        field = ID3_TXXX.get(str(frame.desc).strip().lower()) if fid == "TXXX" else ID3.get(fid)
        if field:
            for text in frame.text:
                yield field, str(text)


def _mapped(items: Iterable[tuple[str, Any]], names: dict[str, str]) -> Iterator[tuple[str, str]]:
    for key, values in items:
        field = names.get(key)
        if field:
            for v in values if isinstance(values, list) else [values]:
                if isinstance(v, str):
                    yield field, v


def _sndfile_tags(path: Path) -> Iterator[tuple[str, str]]:
    with sf.SoundFile(path) as f:
        meta = f.copy_metadata()
    yield from ((SNDFILE[k], v) for k, v in meta.items() if k in SNDFILE)


# -- RIFF: the BWF description and INFO keywords/subject ---------------------------------------------------

MAX_CHUNKS = 10_000
MAX_READ = 64 * 1024  # of one bext or LIST chunk


def _riff_tags(path: Path) -> Iterator[tuple[str, str]]:
    with open(path, "rb") as f:
        for cid, body in _riff_chunks(f):
            if cid == b"bext":
                yield "description", _latin1(body[:256])  # bext: Description is the first 256 bytes
            elif cid == b"LIST" and body[:4] == b"INFO":
                for sub, text in _info_items(body[4:]):
                    if sub in RIFF_INFO:
                        yield RIFF_INFO[sub], _latin1(text)


def _riff_chunks(f: BinaryIO) -> Iterator[tuple[bytes, bytes]]:
    """(id, body) of the bext and LIST chunks of a RIFF/RF64 WAVE file; other chunks are skipped unread."""
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return
    for _ in range(MAX_CHUNKS):
        header = f.read(8)
        if len(header) < 8:
            return
        cid, size = header[:4], struct.unpack("<I", header[4:])[0]
        if cid in (b"bext", b"LIST"):
            body = f.read(min(size, MAX_READ))
            yield cid, body
            f.seek(size - len(body) + (size & 1), 1)
        elif size == 0xFFFFFFFF:  # an RF64 data chunk whose size lives in ds64: nothing we want follows
            return
        else:
            f.seek(size + (size & 1), 1)  # chunks are padded to even sizes


def _info_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos + 8 <= len(data):
        sub, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        yield sub, data[pos + 8 : pos + 8 + size]
        pos += 8 + size + (size & 1)


def _latin1(raw: bytes) -> str:
    raw = raw.split(b"\x00", 1)[0]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # BWF text is ASCII; older tools wrote Latin-1
