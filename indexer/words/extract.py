"""The words of a library file: its path (folders and stem) and its embedded tags, as the text that lexical
search (SQLite FTS5) and the text tower index.

A path is split at separators (`_ - .` spaces and other punctuation), camelCase boundaries and digit runs:
`animals/birds/crowCall_03.wav` -> animals, birds, crow, call. What carries no meaning is dropped, so that a
file named by an id has no words at all and hybrid search ranks it by its audio alone:
- ids: tokens that mix letters and digits more than once (`3f2a9c0e`, `e29b`) or long hex runs, digit runs
  and words shorter than three letters (`1-187207-A`, take numbers, channel letters);
- words that every library uses for everything (`sound`, `sample`, `track`, `untitled`, `final`, `wav`,
  recorder prefixes such as `ZOOM`) and the commonest English function words (`the`, `with`).
UCS CatIDs (`DOGBark`, the first block of a UCS file name) become their Category and SubCategory names
(`dogs bark`), from indexer/assets/ucs/catids.tsv where it ships (its terms: PROVENANCE.md there).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

UCS_TABLE = Path(__file__).resolve().parents[1] / "assets" / "ucs" / "catids.tsv"
MIN_LETTERS = 3
_GENERIC = """
    audio sound sounds sfx file files clip clips sample samples track tracks take takes rec recording recordings
    untitled new final copy wav wave mp3 ogg flac aif aiff m4a opus bwf edit edited export exported version ver
    misc miscellaneous various other general temp tmp stereo mono mix master library zoom tascam img dsc
    the and for with from into onto this that these those are was were has have had its not but our their they
    then than there here very
"""
GENERIC = frozenset(_GENERIC.split())
SEPARATORS = re.compile(r"[\W_]+")  # anything but letters and digits (any script)
CAMEL = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])|(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
HEX = re.compile(r"[0-9a-fA-F]{8,}")
UCS_HEAD = re.compile(r"[_\-\s]")  # a CatID ends at the first block separator (or a UserCategory's '-')


@dataclass(frozen=True)
class FileWords:
    """What a file's path and tags say: the words (in order, once each) and the tag fields they came from."""

    path: tuple[str, ...]
    tags: tuple[str, ...]
    fields: dict[str, str] = field(default_factory=dict, compare=False)  # tag field -> text as written

    @property
    def all(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.path + self.tags))

    @property
    def text(self) -> str:
        """The text indexed for this file: its words, path first."""
        return " ".join(self.all)

    @property
    def informative(self) -> bool:
        """Whether anything is left after ids and generic words are dropped: files without words are ranked by
        their audio alone."""
        return bool(self.path or self.tags)

    def fields_json(self) -> str:
        return json.dumps(self.fields, ensure_ascii=False, sort_keys=True)


def file_words(rel_path: str, tags: dict[str, str] | None = None) -> FileWords:
    tags = tags or {}
    return FileWords(path_words(rel_path), text_words(tags.values()), dict(tags))


def path_words(rel_path: str) -> tuple[str, ...]:
    """Words of a library path: folders from the top, then the file's stem (its extension is not a word). A UCS
    CatID heading a folder or file name is followed by its category names."""
    p = PurePosixPath(rel_path)
    out: list[str] = []
    for part in [*p.parent.parts, p.stem]:
        head = UCS_HEAD.split(part, 1)[0]
        out += [*text_words([head]), *ucs_names().get(head, ()), *text_words([part[len(head) :]])]
    return tuple(dict.fromkeys(out))


def text_words(texts: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for text in texts:
        for token in SEPARATORS.split(text):
            out += _token_words(token)
    return tuple(dict.fromkeys(out))


def _token_words(token: str) -> list[str]:
    if not token or _is_id(token):
        return []
    words = []
    for part in CAMEL.split(token):
        w = part.lower()
        if len(w) >= MIN_LETTERS and not w.isdigit() and w not in GENERIC:
            words.append(w)
    return words


def _is_id(token: str) -> bool:
    """A hash, UUID part or serial: letters and digits interleaved more than once, or a long hex run."""
    kinds = ["d" if c.isdigit() else "a" for c in token if c.isalnum()]
    if "d" not in kinds or "a" not in kinds:
        return False
    changes = sum(a != b for a, b in zip(kinds, kinds[1:], strict=False))
    return changes >= 2 or HEX.fullmatch(token) is not None


@functools.cache
def ucs_names() -> dict[str, tuple[str, ...]]:
    """CatID -> the words of its Category and SubCategory ('DOGBark' -> ('dogs', 'bark')); {} without the table.
    ARCHIVED CatIDs (ADR, MIX, TEST, WIP, ...) mark production stages, not sounds, and plain words: left out."""
    if not UCS_TABLE.is_file():
        return {}
    names: dict[str, tuple[str, ...]] = {}
    for line in UCS_TABLE.read_text(encoding="utf-8").splitlines()[1:]:
        cat_id, category, sub = line.split("\t")
        if category == "ARCHIVED":
            continue
        words = [w.lower() for w in SEPARATORS.split(f"{category} {sub}") if len(w) >= MIN_LETTERS]
        names[cat_id] = tuple(dict.fromkeys(w for w in words if w not in GENERIC))
    return names
