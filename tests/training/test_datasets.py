"""Caption-set layouts (ClothoV2, AudioCaps, WavCaps, JSONL) built as small real files over real clips."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml

from audiosearch.training import DatasetError, detect_format, load_rows, load_run_config
from audiosearch.training.evaluation import parse_data_spec
from audiosearch.training.run import stage_rows

ANIMALS = ("cat", "cow", "dog", "duck")


def _clips(shared: Path, dest: Path, names: dict[str, str]) -> Path:
    """Copy animals_cc0 clips into dest/audio under new names (e.g. the youtube-id layout)."""
    audio = dest / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    for animal, name in names.items():
        shutil.copy(shared / "animals_cc0" / "animals" / f"{animal}.ogg", audio / name)
    return audio


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_clotho_gives_five_positives_per_clip(shared_data: Path, tmp_path: Path) -> None:
    audio = _clips(shared_data, tmp_path, {a: f"{a} recording.ogg" for a in ANIMALS})
    header = ["file_name"] + [f"caption_{i}" for i in range(1, 6)]
    rows = [[f"{a} recording.ogg"] + [f"a {a} makes noise, take {i}" for i in range(1, 6)] for a in ANIMALS]
    path = _csv(tmp_path / "clotho_captions_development.csv", header, rows)
    loaded = load_rows(path, "clotho", audio_root=audio)
    assert len(loaded) == 20 and len({r.clip_id for r in loaded}) == 4
    cat = [r for r in loaded if r.path.name == "cat recording.ogg"]
    assert (
        len(cat) == 5 and cat[0].path.is_file() and {r.clip_id for r in cat} == {f"{tmp_path.name}/cat recording.ogg"}
    )
    assert cat[0].caption == "a cat makes noise, take 1"
    assert detect_format(path) == "clotho"


def test_audiocaps_names_files_by_youtube_id_or_pattern(shared_data: Path, tmp_path: Path) -> None:
    ids = {"cat": "--0w1YA1Hm4", "cow": "-1nilez17Dg", "dog": "0AQmcw4KhWo", "duck": "1kNjj0xNLqM"}
    _clips(shared_data, tmp_path, {a: f"Y{i}_30.ogg" for a, i in ids.items()})
    rows = [[str(n), i, "30", f"a {a} calls"] for n, (a, i) in enumerate(ids.items())]
    rows.append(["9", ids["cat"], "30", "a cat meows twice"])  # a second caption of one clip
    path = _csv(tmp_path / "train.csv", ["audiocap_id", "youtube_id", "start_time", "caption"], rows)
    loaded = load_rows(path, "audiocaps", tmp_path / "audio", audio_pattern="Y{youtube_id}_{start_time}.ogg")
    assert len(loaded) == 5 and len({r.clip_id for r in loaded}) == 4
    assert loaded[0].meta["audiocap_id"] == "0" and loaded[0].path.name == "Y--0w1YA1Hm4_30.ogg"
    with pytest.raises(DatasetError, match=r"train\.csv: row at line 2: audio file .*--0w1YA1Hm4\.wav not found"):
        load_rows(path, "audiocaps", tmp_path / "audio")  # the default pattern {youtube_id}.wav
    with pytest.raises(DatasetError, match=r"row at line 2: audio_pattern '\{ytid\}\.ogg' names 'ytid'"):
        load_rows(path, "audiocaps", tmp_path / "audio", audio_pattern="{ytid}.ogg")


def test_audiocaps_skip_missing_drops_absent_clips(shared_data: Path, tmp_path: Path) -> None:
    _clips(shared_data, tmp_path, {"cat": "aaa.ogg"})
    path = _csv(
        tmp_path / "val.csv",
        ["audiocap_id", "youtube_id", "start_time", "caption"],
        [["1", "aaa", "0", "a cat"], ["2", "gone", "0", "a removed video"]],
    )
    rows = load_rows(path, "audiocaps", tmp_path / "audio", audio_pattern="{youtube_id}.ogg", skip_missing=True)
    assert [r.caption for r in rows] == ["a cat"]


def test_wavcaps_json_as_released(shared_data: Path, tmp_path: Path) -> None:
    # ids as in the release: FreeSound numeric, AudioSet_SL with the original .wav extension
    _clips(shared_data, tmp_path, {"cat": "180913.flac", "dog": "Y---1_cCGK4M.flac"})
    for name in ("180913.flac", "Y---1_cCGK4M.flac"):  # the release ships FLAC; our clips are Ogg
        src = tmp_path / "audio" / name
        src.rename(src.with_suffix(".ogg"))
    data = {
        "num_captions_per_audio": 1,
        "data": [
            {
                "id": "180913",
                "file_name": "UK Mello.wav",
                "caption": "A cat meows.",
                "duration": 3.0,
                "tags": ["cat", "meow"],
            },
            {"id": "Y---1_cCGK4M.wav", "caption": "A dog barks.", "audio": "wav_path", "duration": 10.0},
        ],
    }
    path = tmp_path / "fsd_final.json"
    path.write_text(json.dumps(data))
    rows = load_rows(path, "wavcaps", tmp_path / "audio", audio_pattern="{stem}.ogg")
    assert [r.path.name for r in rows] == ["180913.ogg", "Y---1_cCGK4M.ogg"]
    assert rows[0].meta["tags"] == "cat meow" and rows[1].caption == "A dog barks."
    with pytest.raises(DatasetError, match=r"fsd_final\.json: data\[0\]: audio file .*180913\.flac not found"):
        load_rows(path, "wavcaps", tmp_path / "audio")  # default {stem}.flac


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"data": [{"id": "1", "caption": "x"}', "not valid JSON at line 1"),
        ('[{"id": "1"}]', "expected a WavCaps object"),
        ('{"data": [{"caption": "x"}]}', r"data\[0\]: missing \"id\""),
        ('{"data": [{"id": "cat", "caption": ""}]}', r"data\[0\] \(cat.ogg\): empty caption"),
    ],
)
def test_wavcaps_errors_name_file_and_entry(shared_data: Path, tmp_path: Path, text: str, message: str) -> None:
    _clips(shared_data, tmp_path, {"cat": "cat.ogg"})
    path = tmp_path / "bbc.json"
    path.write_text(text)
    with pytest.raises(DatasetError, match=r"bbc\.json") as err:
        load_rows(path, "wavcaps", tmp_path / "audio", audio_pattern="{stem}.ogg")
    assert err.match(message)


def test_jsonl_rows_keywords_and_line_errors(shared_data: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"path": "animals/cat.ogg", "caption": "a cat meows", "keywords": ["cat", "meow"]}),
        "",  # blank lines are allowed
        json.dumps({"path": "animals/dog.ogg", "caption": "a dog barks"}),
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rows = load_rows(path, "jsonl", shared_data / "animals_cc0")
    assert [r.caption for r in rows] == ["a cat meows", "a dog barks"] and rows[0].meta["keywords"] == "cat meow"
    assert detect_format(path) == "jsonl"
    for bad, message in [
        ('{"path": "animals/cat.ogg", "caption": "x"}\n{"path": ', "pairs.jsonl: line 2: not valid JSON"),
        ('{"path": "animals/cat.ogg"}', "pairs.jsonl: line 1: missing key(s) caption"),
        ('{"path": "animals/nope.ogg", "caption": "x"}', "pairs.jsonl: line 1: audio file"),
        ('["animals/cat.ogg", "x"]', "pairs.jsonl: line 1: must be an object, got list"),
    ]:
        path.write_text(bad)
        with pytest.raises(DatasetError) as err:
            load_rows(path, "jsonl", shared_data / "animals_cc0")
        assert message in str(err.value)


def test_clotho_missing_column_and_empty_captions(shared_data: Path, tmp_path: Path) -> None:
    audio = _clips(shared_data, tmp_path, {"cat": "cat.ogg"})
    bad = _csv(tmp_path / "c.csv", ["file_name", "caption"], [["cat.ogg", "a cat"]])
    with pytest.raises(DatasetError, match=r"c\.csv: missing column\(s\) caption_1"):
        load_rows(bad, "clotho", audio)
    empty = _csv(
        tmp_path / "e.csv", ["file_name", "caption_1", "caption_2"], [["cat.ogg", "a cat", ""], ["cat.ogg", "", ""]]
    )
    with pytest.raises(DatasetError, match=r"e\.csv: row at line 3 \(cat\.ogg\): no caption"):
        load_rows(empty, "clotho", audio)


def test_run_config_and_eval_select_formats(shared_data: Path, tmp_path: Path) -> None:
    audio = _clips(shared_data, tmp_path, {a: f"{a}.ogg" for a in ANIMALS})
    _csv(
        tmp_path / "clotho.csv",
        ["file_name", "caption_1", "caption_2"],
        [[f"{a}.ogg", f"a {a}", f"the {a} again"] for a in ANIMALS],
    )
    (tmp_path / "pairs.jsonl").write_text(
        "".join(json.dumps({"path": f"{a}.ogg", "caption": f"one {a}"}) + "\n" for a in ANIMALS)
    )
    config = {
        "model": "lite",
        "output": "out",
        "stages": [
            {
                "name": "s",
                "data": [
                    {"file": "clotho.csv", "format": "clotho", "audio_root": "audio"},
                    {"file": "pairs.jsonl", "format": "jsonl", "audio_root": "audio"},
                ],
            }
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    cfg = load_run_config(tmp_path / "run.yaml")
    assert [s.format for s in cfg.stages[0].data] == ["clotho", "jsonl"]
    rows = stage_rows(cfg.stages[0].data)
    assert len(rows) == 12 and all(r.path.parent == audio.resolve() for r in rows)
    # `audiosearch eval --data FILE` recognises the layout by the header / extension
    assert len(parse_data_spec(str(tmp_path / "clotho.csv"), audio)) == 8


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_audio_paths_leaving_the_data_root_are_refused_without_looking(tmp_path: Path, fmt: str) -> None:
    """A row naming ../../etc/passwd (exists) and one naming a file that does not exist get the same answer:
    the check comes before any file is looked at, so the service cannot be used to probe for files."""
    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret.wav").write_bytes(b"outside")
    messages = []
    for target in ("../secret.wav", "../no-such-file.wav"):
        if fmt == "csv":
            (root / "c.csv").write_text(f"path,caption\n{target},a sound\n")
        else:
            (root / "c.jsonl").write_text(json.dumps({"path": target, "caption": "a sound"}) + "\n")
        with pytest.raises(DatasetError) as err:
            load_rows(root / f"c.{fmt}", fmt, confine=root.resolve())
        messages.append(str(err.value))
    assert messages[0] == messages[1].replace("no-such-file", "secret")
    assert "outside the allowed data folder" in messages[0] and "not found" not in messages[0]


def test_a_caption_file_with_no_line_break_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "huge.csv"
    path.write_text("path," + "x," * 100_000)  # one line of 200 kB: the header check reads 64 kB of it
    with pytest.raises(DatasetError, match="header line is longer than 65536 characters"):
        detect_format(path)
