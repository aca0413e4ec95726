"""Caption augmentation: templates, keyword shuffles, extra-caption files and their errors."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from audiosearch.training import DatasetError
from audiosearch.training.augment import augment_rows, load_extra_captions, template_captions
from audiosearch.training.data import CaptionRow


def _row(clip: str, caption: str, keywords: str = "") -> CaptionRow:
    return CaptionRow(Path(f"/x/{clip}"), caption, f"src/{clip}", "src", {"keywords": keywords})


def test_templates_wrap_the_caption_and_shuffle_keywords() -> None:
    out = template_captions("A dog barks.", "dog bark animal", random.Random(1), n=7)
    assert len(out) == 7 and len(set(out)) == 7 and "A dog barks." not in out
    assert sum("a dog barks" in c for c in out) == 6  # one per template, lower-cased mid-sentence
    shuffled = [c for c in out if "a dog barks" not in c]
    assert sorted(shuffled[0].split()) == ["animal", "bark", "dog"]  # all keywords, reordered


def test_no_keywords_no_shuffle_and_empty_caption_gives_nothing() -> None:
    assert all("rain" in c for c in template_captions("rain", "", n=10))
    assert template_captions("  .", "a b") == []


def test_augment_rows_is_deterministic_and_keeps_originals() -> None:
    rows = [_row("a.ogg", "a dog barks", "dog bark"), _row("a.ogg", "barking"), _row("b.ogg", "rain falls")]
    out = augment_rows(rows, per_clip=2, seed=3)
    assert out[:3] == rows and len(out) == 3 + 2 * 2
    assert {r.clip_id for r in out[3:]} == {"src/a.ogg", "src/b.ogg"}
    assert all(r.meta["augmented"] == "template" for r in out[3:])
    # same result whatever the clip order: the draw depends on (seed, clip), not on position
    again = augment_rows([rows[2], rows[0], rows[1]], per_clip=2, seed=3)
    assert sorted(r.caption for r in again) == sorted(r.caption for r in out)


def test_extra_captions_become_rows_of_their_clip(tmp_path: Path) -> None:
    rows = [_row("dog/a.ogg", "a dog barks"), _row("rain/b.ogg", "rain")]
    f = tmp_path / "llm.csv"
    f.write_text("path,caption\ndog/a.ogg,a hound yapping nearby\nrain/b.ogg,drops on a window\n")
    extra = load_extra_captions(f, rows)
    assert [(r.clip_id, r.caption) for r in extra] == [
        ("src/dog/a.ogg", "a hound yapping nearby"),
        ("src/rain/b.ogg", "drops on a window"),
    ]
    assert extra[0].path == rows[0].path and extra[0].meta["augmented"] == "extra"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("file,caption\na,b\n", "missing column(s) path"),
        ("path,caption\nother.ogg,x\n", "line 2: clip 'other.ogg' is not in the stage's data"),
        ("path,caption\ndog/a.ogg,\n", "line 2: empty caption"),
    ],
)
def test_bad_extra_caption_files_name_file_and_row(tmp_path: Path, body: str, message: str) -> None:
    f = tmp_path / "llm.csv"
    f.write_text(body)
    with pytest.raises(DatasetError, match="llm.csv") as err:
        load_extra_captions(f, [_row("dog/a.ogg", "a dog barks")])
    assert message in str(err.value)
