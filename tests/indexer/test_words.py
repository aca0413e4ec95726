"""The words of a file's path: what survives (descriptive words) and what does not (ids, hashes, generic words)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from audiosearch.indexer.search.fusion import query_terms
from audiosearch.indexer.words.extract import file_words, path_words, ucs_names


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("animals/birds/crowCall_03.wav", ("animals", "birds", "crow", "call")),
        ("CompressedAirSpray/compressedAirSpray01.ogg", ("compressed", "air", "spray")),
        ("actor/fauna/animal/camel_10.ogg", ("actor", "fauna", "animal", "camel")),
        ("dog_bark/1-100032-A.ogg", ("dog", "bark")),  # ESC-10: the folder names the class, the stem is an id
        ("perro_ladrando.mp3", ("perro", "ladrando")),  # any language
        ("Gewitter über dem See.flac", ("gewitter", "über", "dem", "see")),
        ("leafBlower08.ogg", ("leaf", "blower")),
    ],
)
def test_descriptive_paths_keep_their_words(path, words) -> None:
    assert path_words(path) == words


@pytest.mark.parametrize(
    "path",
    [
        hashlib.sha1(b"x").hexdigest() + ".ogg",
        f"{uuid.UUID(int=123456789)}.wav",
        "550e8400-e29b-41d4-a716-446655440000.wav",
        "track01.wav",
        "Untitled 3.wav",
        "audio_0001.flac",
        "R09_0012.WAV",
        "ZOOM0001.WAV",
        "final_mix_v2 copy.wav",
        "7/3/2024-01-05 12.30.wav",
    ],
)
def test_ids_hashes_and_generic_names_have_no_words(path) -> None:
    assert path_words(path) == ()
    assert not file_words(path).informative


def test_ucs_catid_is_followed_by_its_category_names() -> None:
    if not ucs_names():
        pytest.skip("indexer/assets/ucs/catids.tsv is not shipped in this checkout")
    assert ucs_names()["DOORKnck"] == ("doors", "knock")
    words = path_words("DOORKnck-INT_Old wooden door knock three times_JH_MYLIB.wav")
    assert words[:4] == ("door", "knck", "doors", "knock")  # CatID split, then its UCS names
    assert {"old", "wooden", "three", "times"} <= set(words)
    assert "archived" not in path_words("MIX_final.wav")  # production-stage CatIDs are not sounds
    assert path_words("Library/DOORKnck.wav")[-2:] == ("doors", "knock")


def test_tags_join_the_path_words_once() -> None:
    w = file_words("dogs/bark_01.wav", {"title": "Dog bark, close", "comment": "small DOG barking"})
    assert w.path == ("dogs", "bark") and w.tags == ("dog", "bark", "close", "small", "barking")
    assert w.text == "dogs bark dog close small barking" and w.informative
    assert w.fields["title"] == "Dog bark, close"


def test_queries_are_split_like_file_names() -> None:
    assert query_terms("the sound of a dog barking") == ["dog", "barking"]
    assert query_terms("DoorKnock 02") == ["door", "knock"]
    assert query_terms("a") == []
