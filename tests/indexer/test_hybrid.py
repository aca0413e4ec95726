"""Hybrid search over real indexes of real ESC-10 clips: the words of each file, BM25 over them, the fused
ranking, its exactness, incremental reruns and indexes written before words existed."""

from __future__ import annotations

import hashlib
import itertools
import shutil
from pathlib import Path

import numpy as np
import pytest
from mutagen.oggvorbis import OggVorbis

from audiosearch.indexer import Filters, IndexMismatchError, IndexOptions, Searcher, build_index
from audiosearch.indexer.search.fusion import FUSION, HybridRanker
from tests.conftest import copy_clips
from tests.indexer.snapshots import strip_words

FAST = IndexOptions(workers=0, progress=False)
CLASSES = {"dog_bark": 8, "rooster": 8, "rain": 8, "helicopter": 8, "chainsaw": 8, "sea_waves": 8}
QUERIES = ["a dog barking", "a rooster crowing", "rain falling", "a helicopter flying", "a chainsaw", "sea waves"]


@pytest.fixture(scope="module")
def named(shared_data, tmp_path_factory, lite_model) -> Path:
    """48 real clips named as ESC-10 names them (class folder, numeric id): more files than the first candidates."""
    root = tmp_path_factory.mktemp("hybrid")
    copy_clips(shared_data, root / "lib", CLASSES)
    build_index(root / "lib", root / "idx", lite_model, FAST)
    return root


def variant(named: Path, name: str, rename, model=None) -> Path:  # noqa: ANN001 - rename: old path -> new path
    """The same clips under other names, with the cache of `named` (no audio embedded again); indexed with `model`."""
    root = named.parent / name
    if not (root / "idx").is_dir():
        for src in sorted((named / "lib").rglob("*.ogg")):
            dst = root / "lib" / rename(src.relative_to(named / "lib").as_posix(), src)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
        (root / "idx" / "work").mkdir(parents=True)
        shutil.copy(named / "idx" / "work" / "cache.sqlite", root / "idx" / "work" / "cache.sqlite")
        if model is not None:
            assert build_index(root / "lib", root / "idx", model, FAST).embedded == 0
    return root


def hashed(rel: str, src: Path) -> str:
    return hashlib.sha1(src.read_bytes()).hexdigest() + ".ogg"


def pages(searcher: Searcher, model, mode: str, k: int = 10, **kw) -> list:  # noqa: ANN001
    return searcher.search(model.encode_text(QUERIES), k=k, texts=QUERIES, mode=mode, **kw)


def test_words_are_indexed_per_file(named) -> None:
    s = Searcher(named / "idx")
    assert s.manifest["words"] == {"version": 1, "files": 48, "with_words": 48}
    words = {s.clip(i).path: s.reader.words.of(i) for i in range(1, 49)}
    assert {w.path for p, w in words.items() if p.startswith("sea_waves/")} == {("sea", "waves")}
    assert {w.path for p, w in words.items() if p.startswith("dog_bark/")} == {("dog", "bark")}
    assert all(w.tags == () and w.fields == {} for w in words.values())  # ESC-10 clips carry no tags


def test_bm25_ranks_by_the_query_words(named, lite_model) -> None:
    s = Searcher(named / "idx")
    lex = s.reader.words.bm25.rank(["sea", "waves"])
    assert {s.clip(i).path.split("/")[0] for i in lex} == {"sea_waves"} and len(lex) == 8
    assert all(score == pytest.approx(1.0, abs=0.25) and m == ("sea", "waves") for score, m in lex.values())
    # stemming: 'barking' finds 'bark'; a file matching every query word ranks above those matching one
    lex = s.reader.words.bm25.rank(["dog", "barking", "rain"])
    dog, rain = ([v for i, v in lex.items() if s.clip(i).path.startswith(p)] for p in ("dog_bark/", "rain/"))
    assert len(dog) == len(rain) == 8
    assert min(v[0] for v in dog) > max(v[0] for v in rain) > 0
    assert {v[1] for v in dog} == {("dog", "bark")} and {v[1] for v in rain} == {("rain",)}
    assert list(lex)[:8] == [i for i in lex if s.clip(i).path.startswith("dog_bark/")]  # best first
    assert s.reader.words.bm25.rank(["violin"]) == {} and s.reader.words.bm25.rank([]) == {}


def test_hashed_names_rank_exactly_as_audio(named, lite_model) -> None:
    s = Searcher(variant(named, "hashed", hashed, lite_model) / "idx")
    assert s.manifest["words"]["with_words"] == 0
    for mode_pages in zip(pages(s, lite_model, "audio"), pages(s, lite_model, "hybrid"), strict=True):
        audio, hybrid = mode_pages
        assert [(h.file_id, h.score) for h in hybrid.hits] == [(h.file_id, h.score) for h in audio.hits]
        assert hybrid.mode == "hybrid" and all(h.evidence.text == 0 == h.evidence.lexical for h in hybrid.hits)
    assert all(p.hits == [] and p.total == 0 for p in pages(s, lite_model, "text"))


def copies(named: Path, lite_model, by_folder: bool) -> Path:  # noqa: ANN001
    """Two copies of every clip: named by ids only, or in their class folder (the copies and the whole class
    then share their words)."""
    root = named.parent / ("copies-folders" if by_folder else "copies-ids")
    if not (root / "idx").is_dir():
        for n, src in enumerate(sorted((named / "lib").rglob("*.ogg"))):
            for copy in ("a", "b"):
                folder = f"{copy}/{src.parent.name}" if by_folder else copy
                dst = root / "lib" / folder / f"{n:04d}{copy}.ogg"
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dst)
        build_index(root / "lib", root / "idx", lite_model, FAST)
    return root


@pytest.mark.parametrize(
    ("by_folder", "mode"), [(False, "audio"), (False, "hybrid"), (True, "audio"), (True, "hybrid"), (True, "text")]
)
def test_files_that_tie_are_paged_in_id_order_and_never_twice(named, lite_model, by_folder, mode) -> None:
    """Copies of one sound tie in audio, files of one folder tie in text; pages of 3 cut through the ties. Ties
    are ordered by file id, so every file is on exactly one page, in the order of the whole library."""
    s = Searcher(copies(named, lite_model, by_folder) / "idx")
    assert s.manifest["words"]["with_words"] == (96 if by_folder else 0)
    for vec, text in zip(lite_model.encode_text(QUERIES), QUERIES, strict=True):
        hits = [h for p in range(0, 96, 3) for h in s.search(vec[None], 3, p, texts=[text], mode=mode)[0].hits]
        assert sorted(h.file_id for h in hits) == list(range(1, 97))  # every file once across the pages
        got = [(h.score, h.file_id) for h in hits]
        assert got == sorted(got, key=lambda t: (-t[0], t[1]))  # best first, a tie in file-id order
        assert len({h.score for h in hits}) == (6 if mode == "text" else 48)  # the ties are exact


def test_a_files_score_is_the_same_whichever_list_found_it(named, lite_model) -> None:
    """Hybrid scores are computed one way for every file (from the stored vectors): equal to the signals the
    ranker computes for any file on request, to the last bit, so no two requests can order a near-tie apart."""
    s = Searcher(copies(named, lite_model, True) / "idx")
    ranker = HybridRanker(s.audio)
    for vec, text in zip(lite_model.encode_text(QUERIES), QUERIES, strict=True):
        hits = s.search(vec[None], 40, texts=[text])[0].hits  # audio candidates and files only the words found
        signals = ranker.signals(vec, text, [h.file_id for h in hits])
        assert [h.score for h in hits] == FUSION.score("hybrid", *signals).tolist()


def test_named_files_rise_and_unnamed_keep_their_audio_order(named, lite_model) -> None:
    keep = {}  # half of each class keeps its folder name, the other half is hashed

    def half(rel: str, src: Path) -> str:
        cls = rel.split("/")[0]
        keep[cls] = keep.get(cls, 0) + 1
        return rel if keep[cls] <= 4 else hashed(rel, src)

    s = Searcher(variant(named, "half", half, lite_model) / "idx")
    for audio, hybrid, query in zip(
        pages(s, lite_model, "audio"), pages(s, lite_model, "hybrid"), QUERIES, strict=True
    ):
        cls = {"a dog barking": "dog_bark", "a rooster crowing": "rooster", "rain falling": "rain"}.get(query)
        if cls:  # the named files of the class come first
            assert all(h.path.startswith(cls + "/") for h in hybrid.hits[:4]), (query, hybrid.hits[:4])
        unnamed = [h.file_id for h in hybrid.hits if "/" not in h.path]
        in_audio = [h.file_id for h in audio.hits if h.file_id in unnamed]
        assert unnamed[: len(in_audio)] == in_audio[: len(unnamed)]  # hashed files keep their relative order


def test_better_words_never_lower_a_file(named, lite_model) -> None:
    # FusionParams: every mode's score is non-decreasing in the text cosine and in BM25
    grid = np.linspace(-0.2, 1.0, 13)
    for a, t, lex in itertools.product(grid, grid, np.linspace(0, 1, 6)):
        for mode in ("hybrid", "text"):
            base = FUSION.score(mode, np.array([a]), np.array([t]), np.array([lex]))[0]
            assert FUSION.score(mode, np.array([a]), np.array([t + 0.05]), np.array([lex]))[0] >= base
            assert FUSION.score(mode, np.array([a]), np.array([t]), np.array([min(1, lex + 0.2)]))[0] >= base
    # on a real library: the file ranked 11th for "a rooster crowing", renamed to words of the query, only climbs
    before = Searcher(variant(named, "hashed", hashed, lite_model) / "idx")
    digest = pages(before, lite_model, "hybrid", k=48)[1].hits[10].path

    def describe(rel: str, src: Path) -> str:
        name = hashed(rel, src)
        return "rooster crowing at dawn.ogg" if name == digest else name

    after = Searcher(variant(named, "one-named", describe, lite_model) / "idx")
    old = [h.path for h in pages(before, lite_model, "hybrid", k=48)[1].hits]
    new = [h.path for h in pages(after, lite_model, "hybrid", k=48)[1].hits]
    assert new.index("rooster crowing at dawn.ogg") < old.index(digest)
    assert [p for p in new if p != "rooster crowing at dawn.ogg"] == [p for p in old if p != digest]  # others as before


@pytest.mark.parametrize("mode", ["hybrid", "audio", "text"])
def test_pages_equal_the_fusion_over_the_whole_library(named, lite_model, mode) -> None:
    s = Searcher(named / "idx")
    ranker = HybridRanker(s.audio)
    vecs = lite_model.encode_text(QUERIES)
    for vec, text in zip(vecs, QUERIES, strict=True):
        ids = list(range(1, 49))
        scores = dict(zip(ids, FUSION.score(mode, *ranker.signals(vec, text, ids)).tolist(), strict=True))
        expected = sorted(scores.values(), reverse=True)
        hits = [h for p in (0, 10, 20, 30, 40) for h in s.search(vec[None], 10, p, texts=[text], mode=mode)[0].hits]
        assert sorted(h.file_id for h in hits) == ids  # every file once across the pages
        assert [h.score for h in hits] == pytest.approx(expected, abs=1e-5)  # in the order of the full fusion
        assert [scores[h.file_id] for h in hits] == pytest.approx(expected, abs=1e-5)
        heli = Filters(path_prefix="helicopter/")
        page = s.search(vec[None], 3, 2, filters=heli, texts=[text], mode=mode)[0]
        assert page.total == 8 and all(h.path.startswith("helicopter/") for h in page.hits)
        want = sorted((v for i, v in scores.items() if s.clip(i).path.startswith("helicopter/")), reverse=True)[2:5]
        assert [h.score for h in page.hits] == pytest.approx(want, abs=1e-5)


def test_close_match_threshold(named, lite_model) -> None:
    s = Searcher(named / "idx")
    q = ["a door knocking", "a dog barking"]
    absent, present = s.search(lite_model.encode_text(q), k=5, texts=q)
    assert absent.mode == "hybrid" and absent.min_score == FUSION.min_score["hybrid"]
    assert not absent.close_match and absent.hits[0].score < absent.min_score
    assert present.close_match and present.hits[0].path.startswith("dog_bark/")
    top = absent.hits[0].score
    assert s.search(lite_model.encode_text(q[:1]), k=5, texts=q[:1], min_score=top)[0].close_match
    assert not s.search(lite_model.encode_text(q[:1]), k=5, texts=q[:1], min_score=top + 1e-3)[0].close_match
    by_example = s.search(s.window_vectors(1)[:1], k=3)[0]  # no text: audio, no threshold, no evidence
    assert by_example.mode == "audio" and by_example.close_match and by_example.hits[0].evidence is None


def test_reruns_read_and_encode_nothing_twice(named, lite_model) -> None:
    root = variant(named, "rerun", lambda rel, src: rel)
    first = build_index(root / "lib", root / "idx", lite_model, FAST)  # the cache of `named`: same contents, words
    assert (first.embedded, first.tags_read, first.texts_encoded) == (0, 0, 0)
    again = build_index(root / "lib", root / "idx", lite_model, FAST)
    assert (again.embedded, again.tags_read, again.texts_encoded) == (0, 0, 0)
    clip = next((root / "lib" / "rain").glob("*.ogg"))
    clip.rename(root / "lib" / "rain" / "heavyRainOnTinRoof.ogg")  # same content, new words
    renamed = build_index(root / "lib", root / "idx", lite_model, FAST)
    assert (renamed.embedded, renamed.tags_read, renamed.texts_encoded) == (0, 0, 1)
    tagged = root / "lib" / "rain" / "heavyRainOnTinRoof.ogg"
    tags = OggVorbis(tagged)
    tags["DESCRIPTION"] = "downpour on corrugated metal"
    tags.save()  # new content: embedded, tags read, words encoded
    retagged = build_index(root / "lib", root / "idx", lite_model, FAST)
    assert (retagged.embedded, retagged.tags_read, retagged.texts_encoded) == (1, 1, 1)
    s = Searcher(root / "idx")
    fid = next(i for i in range(1, 60) if (c := s.clip(i)) and c.path.endswith("heavyRainOnTinRoof.ogg"))
    w = s.reader.words.of(fid)
    assert w.path == ("rain", "heavy", "tin", "roof")
    assert w.tags == ("downpour", "corrugated", "metal") and w.fields == {"description": "downpour on corrugated metal"}
    page = s.search(lite_model.encode_text(["corrugated metal"]), k=1, texts=["corrugated metal"], mode="text")[0]
    assert page.hits[0].file_id == fid and page.hits[0].evidence.words == ("corrugated", "metal")


def test_an_index_from_before_words_answers_by_audio_until_reindexed(named, lite_model) -> None:
    root = variant(named, "old-format", lambda rel, src: rel)
    build_index(root / "lib", root / "idx", lite_model, FAST)
    strip_words(root / "idx", cache=True)  # what an index written before this feature holds
    s = Searcher(root / "idx")
    assert s.reader.words is None
    audio, hybrid = pages(s, lite_model, "audio"), pages(s, lite_model, "hybrid")
    assert [p.mode for p in hybrid] == ["audio"] * len(QUERIES)
    assert [[h.file_id for h in p.hits] for p in hybrid] == [[h.file_id for h in p.hits] for p in audio]
    with pytest.raises(IndexMismatchError, match="before file words were indexed"):
        pages(s, lite_model, "text")
    report = build_index(root / "lib", root / "idx", lite_model, FAST)
    assert (report.files, report.embedded, report.tags_read) == (48, 0, 48)  # words for all, no audio embedded
    s = Searcher(root / "idx")
    assert s.reader.words is not None and s.manifest["words"]["with_words"] == 48
    assert pages(s, lite_model, "text")[0].hits[0].path.startswith("dog_bark/")
