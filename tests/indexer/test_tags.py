"""Embedded tags read from real audio in every indexed format: a real ESC-10 clip is re-encoded into each format
and tagged the way sound libraries tag (mutagen for Vorbis comments, ID3 and MP4; libsndfile for RIFF INFO and
AIFF; raw RIFF chunks for BWF bext and INFO keywords), then read back by audiosearch.indexer.words.tags."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC
from mutagen.id3 import COMM, TALB, TCON, TIT2, TXXX
from mutagen.mp3 import MP3
from mutagen.oggopus import OggOpus
from mutagen.oggvorbis import OggVorbis

from audiosearch.indexer.words.extract import file_words
from audiosearch.indexer.words.tags import read_tags


@pytest.fixture(scope="module")
def clip(shared_data) -> tuple[Path, np.ndarray, int]:
    src = shared_data / "esc10" / "dog_bark" / "1-100032-A.ogg"
    wave, sr = sf.read(src, dtype="float32")
    return src, wave, sr


def _copy(clip, tmp_path: Path, name: str, fmt: str | None = None, subtype: str | None = None) -> Path:
    src, wave, sr = clip
    out = tmp_path / name
    if fmt is None:
        out.write_bytes(src.read_bytes())
    else:
        sf.write(out, wave, 48000 if subtype == "OPUS" else sr, format=fmt, subtype=subtype)
    return out


def test_ogg_vorbis_comments(clip, tmp_path) -> None:
    path = _copy(clip, tmp_path, "a.ogg")
    assert read_tags(path) == {}  # the shared clip carries no tags
    tags = OggVorbis(path)
    tags["TITLE"] = "Dog bark"
    tags["DESCRIPTION"] = "Small dog barking, close"
    tags["ARTIST"] = "Someone"  # people are not words of the sound
    tags.save()
    assert read_tags(path) == {"title": "Dog bark", "description": "Small dog barking, close"}
    assert sf.info(path).frames > 0  # still audio


def test_opus_and_flac_vorbis_comments(clip, tmp_path) -> None:
    opus = _copy(clip, tmp_path, "a.opus", "OGG", "OPUS")
    tags = OggOpus(opus)
    tags["keywords"] = "dog; bark; pet"
    tags.save()
    assert read_tags(opus) == {"keywords": "dog; bark; pet"}
    flac = _copy(clip, tmp_path, "a.flac", "FLAC")
    tags = FLAC(flac)
    tags["GENRE"] = "Animals"
    tags["COMMENT"] = "recorded in a barn"
    tags.save()
    assert read_tags(flac) == {"genre": "Animals", "comment": "recorded in a barn"}


def test_mp3_id3(clip, tmp_path) -> None:
    path = _copy(clip, tmp_path, "a.mp3", "MP3", "MPEG_LAYER_III")
    audio = MP3(path)
    audio.add_tags()
    audio.tags.add(TIT2(encoding=3, text="Dog bark"))
    audio.tags.add(TALB(encoding=3, text="Farm animals vol. 2"))
    audio.tags.add(TCON(encoding=3, text="Sound effects"))
    audio.tags.add(COMM(encoding=3, lang="eng", desc="", text="barking at the gate"))
    audio.tags.add(TXXX(encoding=3, desc="KEYWORDS", text="dog; guard"))
    audio.save()
    assert read_tags(path) == {
        "title": "Dog bark",
        "album": "Farm animals vol. 2",
        "genre": "Sound effects",
        "comment": "barking at the gate",
        "keywords": "dog; guard",
    }


def test_m4a_atoms(clip, tmp_path) -> None:
    av = pytest.importorskip("av", reason="PyAV writes the AAC copy (pip install av)")
    from mutagen.mp4 import MP4

    _, wave, sr = clip
    path = tmp_path / "a.m4a"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=sr, layout="mono")
        frame = av.AudioFrame.from_ndarray(wave[None, :], format="flt", layout="mono")
        frame.sample_rate = sr
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    tags = MP4(path)
    tags["\xa9nam"] = ["Dog bark"]
    tags["desc"] = ["small dog barking"]
    tags["\xa9cmt"] = ["take 3"]
    tags.save()
    assert read_tags(path) == {"title": "Dog bark", "description": "small dog barking", "comment": "take 3"}


def test_aiff_name_and_id3(clip, tmp_path) -> None:
    from mutagen.aiff import AIFF

    _, wave, sr = clip
    path = tmp_path / "a.aiff"
    with sf.SoundFile(path, "w", sr, 1, format="AIFF") as f:
        f.title = "Dog bark"  # libsndfile writes the NAME chunk
        f.write(wave)
    audio = AIFF(path)
    audio.add_tags()
    audio.tags.add(COMM(encoding=3, lang="eng", desc="", text="two barks"))
    audio.save()
    assert read_tags(path) == {"title": "Dog bark", "comment": "two barks"}


def test_wav_riff_info_bwf_bext_and_id3(clip, tmp_path) -> None:
    from mutagen.wave import WAVE

    _, wave, sr = clip
    plain = tmp_path / "plain.wav"
    with sf.SoundFile(plain, "w", sr, 1, format="WAV") as f:
        f.title = "Dog bark"  # INFO INAM
        f.comment = "close microphone"  # INFO ICMT
        f.write(wave)
    path = _with_chunks(plain, tmp_path / "bwf.wav", description="Small dog barking at a gate", keywords="dog; bark")
    assert sf.info(path).frames == len(wave)  # still a valid WAVE file
    assert read_tags(path) == {
        "title": "Dog bark",
        "description": "Small dog barking at a gate",
        "keywords": "dog; bark",
        "comment": "close microphone",
    }
    audio = WAVE(path)
    audio.add_tags()
    audio.tags.add(TXXX(encoding=3, desc="DESCRIPTION", text="guard dog"))
    audio.save()
    assert read_tags(path)["description"] == "guard dog; Small dog barking at a gate"  # ID3 first, then bext
    words = file_words("sfx/0001.wav", read_tags(path))
    assert words.path == () and {"dog", "bark", "small", "barking", "gate", "guard", "close"} <= set(words.tags)


def test_unreadable_or_odd_files_have_no_tags(tmp_path) -> None:
    broken = tmp_path / "broken.ogg"
    broken.write_bytes(b"OggS" + b"\x00" * 40)
    assert read_tags(broken) == {}
    riff = tmp_path / "short.wav"
    riff.write_bytes(b"RIFF\x10\x00\x00\x00WAVEbext\xff\xff\x00\x00")  # a chunk claiming more than the file holds
    assert read_tags(riff) == {}


def _with_chunks(src: Path, dst: Path, description: str, keywords: str) -> Path:
    """A copy of a WAVE file with a BWF bext chunk and INFO IKEY added (as a sound library's tool writes them)."""
    data = src.read_bytes()
    chunks, pos = [], 12
    while pos + 8 <= len(data):
        cid, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        body = data[pos + 8 : pos + 8 + size]
        if cid == b"LIST" and body[:4] == b"INFO":
            body += _chunk(b"IKEY", keywords.encode() + b"\x00")
        chunks.append(_chunk(cid, body))
        pos += 8 + size + (size & 1)
    bext = _chunk(b"bext", description.encode().ljust(256, b"\x00") + bytes(602 - 256))
    body = b"WAVE" + chunks[0] + bext + b"".join(chunks[1:])
    dst.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return dst


def _chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")
