"""Caption augmentation: more positives per clip, so a small fine-tuning set overfits less.

Two sources, both merged as extra caption rows of the same clip (so they become in-batch positives):
- built-in templates over a clip's caption and keywords ("the sound of X", "X can be heard", a keyword
  shuffle, ...), a cheap stand-in for the paper's LLM rewrites;
- a file of extra captions per clip (`path,caption` CSV, e.g. written by an LLM from the keywords),
  the paper's stage-2 augmentation (+1.9 pp mAP@10 there).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from audiosearch.training.data import CaptionRow, DatasetError

TEMPLATES = (
    "the sound of {x}",
    "{x} can be heard",
    "someone recording {x}",
    "a recording of {x}",
    "{x} in the background",
    "you can hear {x}",
)


def template_captions(caption: str, keywords: str = "", rng: random.Random | None = None, n: int = 2) -> list[str]:
    """Up to `n` distinct new captions for one clip: templates around the caption, plus one keyword
    shuffle when there are at least two keywords. Never returns the caption itself."""
    rng = rng or random.Random(0)
    x = _phrase(caption)
    if not x:
        return []
    candidates = [t.format(x=x) for t in rng.sample(TEMPLATES, len(TEMPLATES))]
    words = keywords.split()
    if len(words) >= 2:
        # All keywords, only reordered: a subset could coincide with another class's keywords and
        # silently merge two clips' positive groups (the trainer treats shared captions as positives).
        shuffled = words[:]
        rng.shuffle(shuffled)
        candidates.insert(1, " ".join(shuffled))
    out: list[str] = []
    for c in candidates:
        if c != caption and c not in out:
            out.append(c)
        if len(out) == n:
            break
    return out


def augment_rows(rows: Sequence[CaptionRow], per_clip: int = 2, seed: int = 0) -> list[CaptionRow]:
    """rows plus `per_clip` template captions for each clip (taken from its first row's caption and
    `keywords` column). Deterministic per (seed, clip), whatever the order of the clips."""
    out = list(rows)
    seen: set[str] = set()
    existing = {(r.clip_id, r.caption) for r in rows}
    for r in rows:
        if r.clip_id in seen:
            continue
        seen.add(r.clip_id)
        rng = random.Random(f"{seed}:{r.clip_id}")
        for c in template_captions(r.caption, r.meta.get("keywords", ""), rng, per_clip):
            if (r.clip_id, c) not in existing:
                existing.add((r.clip_id, c))
                out.append(replace(r, caption=c, meta={**r.meta, "augmented": "template"}))
    return out


def load_extra_captions(csv_path: str | Path, rows: Sequence[CaptionRow]) -> list[CaptionRow]:
    """Rows for the captions of a `path,caption` CSV. `path` names a clip as the data CSV does (its
    path relative to the audio root, e.g. 'dog_bark/1-100032-A.ogg'); an unknown clip is an error,
    since it usually means the file was written for another data set."""
    csv_path = Path(csv_path)
    by_rel = {}
    for r in rows:
        by_rel.setdefault(r.clip_id.split("/", 1)[1], r)
        by_rel.setdefault(r.clip_id, r)
    out = []
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in ("path", "caption") if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{csv_path}: missing column(s) {', '.join(missing)}")
            for rec in reader:
                where = f"{csv_path}: row at line {reader.line_num}"
                rel, caption = (rec.get("path") or "").strip(), (rec.get("caption") or "").strip()
                if not caption:
                    raise DatasetError(f"{where}: empty caption")
                if rel not in by_rel:
                    raise DatasetError(f"{where}: clip {rel!r} is not in the stage's data")
                base = by_rel[rel]
                out.append(replace(base, caption=caption, meta={**base.meta, "augmented": "extra"}))
    except OSError as err:
        raise DatasetError(f"{csv_path}: cannot read ({err.strerror or err})") from None
    return out


def _phrase(caption: str) -> str:
    """'A dog barks.' -> 'a dog barks': templates embed the caption mid-sentence."""
    x = caption.strip().rstrip(".!").strip()
    return x[:1].lower() + x[1:] if x else ""
