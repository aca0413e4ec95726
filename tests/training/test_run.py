"""Training runs from a config: two real stages on ESC-10 clips, resume, and config errors."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from audiosearch.core.errors import InvalidInputError
from audiosearch.training import DatasetError, load_run_config, parse_run_config, run_training
from audiosearch.training.run import RunResult
from audiosearch.training.run_config import parse_data_specs, parse_model

CLASSES = ("dog_bark", "rooster", "rain", "chainsaw", "baby_cry")


def write_subset(shared: Path, dest: Path, fold: str, per_class: int) -> Path:
    """A caption CSV of the first `per_class` ESC-10 clips of each class in `fold` (paths relative to
    the esc10 folder, which the config passes as audio_root)."""
    with open(shared / "esc10" / "captions.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["fold"] == fold]
    picked = []
    for label in CLASSES:
        picked += [r for r in rows if r["path"].startswith(label + "/")][:per_class]
    out = dest / f"esc_fold{fold}.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "caption", "keywords"])
        w.writeheader()
        for r in sorted(picked, key=lambda r: r["path"]):
            w.writerow({"path": r["path"], "caption": r["caption"], "keywords": r["label"]})
    return out


def run_config(shared: Path, root: Path, cache: str) -> dict[str, Any]:
    esc = str(shared / "esc10")
    write_subset(shared, root, "1", 3)
    write_subset(shared, root, "2", 2)
    write_subset(shared, root, "5", 2)
    with open(root / "esc_fold2.csv", newline="") as f:  # "LLM" rewrites: one extra caption per clip
        extra = [f"{r['path']},{r['caption'].replace('is ', '')} nearby\n" for r in csv.DictReader(f)]
    (root / "llm.csv").write_text("path,caption\n" + "".join(extra))
    val = [{"csv": "esc_fold5.csv", "audio_root": esc}]
    return {
        "model": "aisfx",
        "reset_projections": True,  # from random projections: improvement is what the run learned
        "output": "run",
        "cache_dir": cache,
        "seed": 0,
        "stages": [
            {
                "name": "pretrain",
                "data": [
                    {"csv": "esc_fold1.csv", "audio_root": esc},
                    {"csv": str(shared / "animals_cc0" / "captions.csv")},
                ],
                "val": val,
                "epochs": 12,
                "lr": 2e-3,
                "batch_size": 8,
            },
            {
                "name": "finetune",
                "data": [{"csv": "esc_fold2.csv", "audio_root": esc}],
                "val": val,
                "epochs": 6,
                "lr": 5e-4,
                "batch_size": 8,
                "augment": True,
                "extra_captions": "llm.csv",
            },
        ],
    }


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    import os

    # A persistent cache (set AUDIOSEARCH_FEATURE_CACHE) makes reruns fast; by default every run computes.
    return os.environ.get("AUDIOSEARCH_FEATURE_CACHE") or str(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="module")
def two_stage(shared_data: Path, tmp_path_factory: pytest.TempPathFactory, cache: str) -> tuple[Path, RunResult]:
    root = tmp_path_factory.mktemp("run")
    (root / "run.yaml").write_text(yaml.safe_dump(run_config(shared_data, root, cache)))
    return root, run_training(load_run_config(root / "run.yaml"))


@pytest.mark.slow
def test_two_stages_improve_held_out_map(two_stage: tuple[Path, RunResult]) -> None:
    root, result = two_stage
    out = root / "run"
    assert result.model_dir == out / "model" and (out / "model" / "config.json").is_file()
    assert (out / "pretrain" / "model.safetensors").is_file() and (out / "finetune" / "config.json").is_file()
    state = json.loads((out / "state.json").read_text())
    assert state["finished"] == ["pretrain", "finetune"] and state["current"] is None
    pre, fine = state["stages"]["pretrain"]["history"], state["stages"]["finetune"]["history"]
    assert [h["epoch"] for h in pre] == list(range(13)) and len(fine) == 7
    assert {"loss", "lr", "temperature", "esc_fold5/mAP@10", "esc_fold5/R@1"} <= set(pre[-1])
    start, end = pre[0]["esc_fold5/mAP@10"], fine[-1]["esc_fold5/mAP@10"]
    # measured: 0.347 at the random start (chance level), 1.000 after pretrain and after finetune
    assert end >= start + 0.2, (start, end)
    assert fine[0]["esc_fold5/mAP@10"] == pytest.approx(pre[-1]["esc_fold5/mAP@10"])  # stage 2 starts from stage 1
    assert pre[-1]["loss"] < pre[1]["loss"]


@pytest.mark.slow
def test_rerun_skips_finished_stages(two_stage: tuple[Path, RunResult]) -> None:
    root, first = two_stage
    events: list[dict[str, Any]] = []
    again = run_training(load_run_config(root / "run.yaml"), progress=events.append)
    assert events == [] and again.state["finished"] == ["pretrain", "finetune"]


@pytest.mark.slow
def test_resume_after_stage_one_runs_only_stage_two(two_stage: tuple[Path, RunResult], tmp_path: Path) -> None:
    root, _ = two_stage
    config = load_run_config(root / "run.yaml")
    config.output = tmp_path / "resumed"
    shutil.copytree(root / "run" / "pretrain", config.output / "pretrain")
    state = json.loads((root / "run" / "state.json").read_text())
    state["finished"], state["current"] = ["pretrain"], {"stage": "finetune", "epoch": 3, "epochs": 6}
    del state["stages"]["finetune"]
    (config.output / "state.json").write_text(json.dumps(state))  # as left by a crash inside stage 2
    events: list[dict[str, Any]] = []
    result = run_training(config, progress=events.append)
    assert {e["stage"] for e in events} == {"finetune"} and [e["epoch"] for e in events] == list(range(7))
    assert result.state["finished"] == ["pretrain", "finetune"]
    # it started from the saved stage-1 weights: the same start metrics as the uninterrupted run
    first = json.loads((root / "run" / "state.json").read_text())["stages"]["finetune"]["history"][0]
    assert events[0]["metrics"]["esc_fold5/mAP@10"] == pytest.approx(first["esc_fold5/mAP@10"])


@pytest.mark.slow
def test_changed_stages_refuse_to_resume(two_stage: tuple[Path, RunResult]) -> None:
    root, _ = two_stage
    config = load_run_config(root / "run.yaml")
    config.stages[0].name = "other"
    with pytest.raises(DatasetError, match="not a prefix"):
        run_training(config)


def _minimal(tmp_path: Path, shared: Path, **stage: Any) -> dict[str, Any]:
    data = [{"csv": str(shared / "animals_cc0" / "captions.csv")}]
    return {"model": "lite", "output": str(tmp_path / "o"), "stages": [{"name": "s1", "data": data, **stage}]}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.update(extra=1), "run.yaml: unknown key(s) ['extra']"),
        (lambda c: c["stages"][0].update(epoch=3), "stages[0]: unknown key(s) ['epoch']"),
        (lambda c: c["stages"][0].update(epochs=0), "stages[0].epochs: must be an integer >= 1, got 0"),
        (lambda c: c["stages"][0].update(lr=-1), "stages[0].lr: must be a positive number"),
        (lambda c: c["stages"][0].update(data=[{"csv": "nope.csv"}]), "stages[0].data[0].csv: file"),
        (lambda c: c["stages"][0]["data"][0].update(caption_column="text"), "has no column(s) ['text']"),
        (lambda c: c.update(model="nosuch"), "model: unknown model 'nosuch'"),
        (lambda c: c["stages"][0].update(frozen={"audio": "no"}), "stages[0].frozen.audio: must be true or false"),
        (lambda c: c["stages"][0].update(frozen={"tower": True}), "stages[0].frozen: unknown key(s) ['tower']"),
        (lambda c: c["stages"][0].update(accumulate_steps=0), "stages[0].accumulate_steps: must be an integer >= 1"),
        (lambda c: c["stages"][0].update(patchout={"time": -1}), "stages[0].patchout.time: must be an integer >= 0"),
        (lambda c: c["stages"][0]["data"][0].update(format="clotho"), "has no column(s) ['file_name', 'caption_1']"),
        (lambda c: c["stages"][0]["data"][0].update(format="tsv"), "stages[0].data[0].format: must be one of"),
        (lambda c: c["stages"][0]["data"][0].update(file="x.csv"), "needs exactly one of 'file' or 'csv'"),
        (lambda c: c.update(device="tpu"), "device: must be one of ['auto', 'cpu', 'cuda']"),
        (lambda c: c.pop("output"), "output: is required"),
        (lambda c: c.update(stages=[]), "stages: must be a non-empty list"),
        (lambda c: c.update(seed=2**70), "seed: must be an integer <= 4294967195"),
        (lambda c: c["stages"][0].update(patchout={"time": 10**30}), "stages[0].patchout.time: must be an integer <="),
        (lambda c: c["stages"][0].update(epochs=10**30), "stages[0].epochs: must be an integer <= 10000"),
    ],
)
def test_bad_configs_name_file_and_field(tmp_path: Path, shared_data: Path, change: Any, message: str) -> None:
    config = _minimal(tmp_path, shared_data)
    change(config)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(InvalidInputError) as err:
        load_run_config(tmp_path / "run.yaml")
    assert message in str(err.value) and "run.yaml" in str(err.value)


def test_confined_paths_reject_escapes(tmp_path: Path, shared_data: Path) -> None:
    data_root, jobs = tmp_path / "data", tmp_path / "jobs"
    data_root.mkdir()
    jobs.mkdir()
    shutil.copy(shared_data / "animals_cc0" / "captions.csv", data_root / "ok.csv")
    (data_root / "link.csv").symlink_to(shared_data / "animals_cc0" / "captions.csv")
    good = {"model": "lite", "output": str(jobs / "x"), "stages": [{"name": "s", "data": [{"csv": "ok.csv"}]}]}
    parse_run_config(good, data_root, read_root=data_root, write_root=jobs)
    for bad, message in [
        ({"csv": "../data/../ok.csv"}, "outside the allowed data folder"),
        ({"csv": "link.csv"}, "outside the allowed data folder"),  # a symlink out of the root
    ]:
        cfg = {**good, "stages": [{"name": "s", "data": [bad]}]}
        with pytest.raises(DatasetError, match=message):
            parse_run_config(cfg, data_root, read_root=data_root, write_root=jobs)
    with pytest.raises(DatasetError, match="output: .* outside the allowed output folder"):
        parse_run_config(
            {**good, "output": str(jobs / ".." / "elsewhere")}, data_root, read_root=data_root, write_root=jobs
        )


def test_a_config_written_by_to_dict_parses_back_to_the_same_run(tmp_path) -> None:
    """The HTTP job runner stores RunConfig.to_dict() and re-parses it in the child process."""
    import json

    from tests.conftest import shared_data_dir

    data = shared_data_dir() / "animals_cc0" / "captions.csv"
    if not data.is_file():
        pytest.skip(f"real test audio not found at {data}")
    cfg = parse_run_config(
        {
            "model": "lite",
            "output": str(tmp_path / "out"),
            "stages": [{"name": "s", "data": [{"csv": str(data)}], "epochs": 1}],
        },
        tmp_path,
    )
    again = parse_run_config(json.loads(json.dumps(cfg.to_dict())), tmp_path)
    assert again.to_dict() == cfg.to_dict()


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"epochs": 10_001}, "stages[0].epochs: must be an integer <= 10000, got 10001"),
        ({"batch_size": 65_537}, "stages[0].batch_size: must be an integer <= 65536, got 65537"),
        ({"accumulate_steps": 1025}, "stages[0].accumulate_steps: must be an integer <= 1024, got 1025"),
        (
            {"checkpoint_every_steps": 10**7 + 1},
            "stages[0].checkpoint_every_steps: must be an integer <= 10000000, got 10000001",
        ),
        ({"lr": 10.5}, "stages[0].lr: must be a number <= 10, got 10.5"),
        ({"lr": 0}, "stages[0].lr: must be a positive number, got 0"),
        ({"augment": "yes"}, "stages[0].augment: must be true or false, got 'yes'"),
        ({"epoch": 3, "rate": 1}, "stages[0]: unknown key(s) ['epoch', 'rate']"),
        ({"name": "s" * 101}, "stages[0].name: must be at most 100 characters long"),
    ],
)
def test_stage_bounds_and_errors_are_one_line(tmp_path: Path, shared_data: Path, stage: dict, message: str) -> None:
    with pytest.raises(DatasetError) as err:
        parse_run_config(_minimal(tmp_path, shared_data, **stage), tmp_path, "run.yaml")
    assert str(err.value) == f"run.yaml: {message}"


def test_the_bounds_themselves_are_allowed(tmp_path: Path, shared_data: Path) -> None:
    limits = {
        "epochs": 10_000,
        "batch_size": 65_536,
        "accumulate_steps": 1024,
        "checkpoint_every_steps": 10**7,
        "lr": 10,
    }
    stage = parse_run_config(_minimal(tmp_path, shared_data, **limits), tmp_path).stages[0]
    assert (stage.epochs, stage.batch_size, stage.accumulate_steps, stage.checkpoint_every_steps) == (
        10_000,
        65_536,
        1024,
        10**7,
    )
    assert stage.lr == 10.0 and isinstance(stage.lr, float)


def test_caps_on_stages_and_data_entries(tmp_path: Path, shared_data: Path) -> None:
    config = _minimal(tmp_path, shared_data)
    one = config["stages"][0]
    parse_run_config({**config, "stages": [{**one, "name": f"s{i}"} for i in range(100)]}, tmp_path)
    with pytest.raises(DatasetError) as err:
        parse_run_config({**config, "stages": [{**one, "name": f"s{i}"} for i in range(101)]}, tmp_path, "run.yaml")
    assert str(err.value) == "run.yaml: stages: must have at most 100 entries, got 101"
    for key in ("data", "val"):
        assert len(
            parse_run_config(_minimal(tmp_path, shared_data, **{key: one["data"] * 1000}), tmp_path).stages[0].data
        ) == (1000 if key == "data" else 1)
        with pytest.raises(DatasetError) as err:
            parse_run_config(_minimal(tmp_path, shared_data, **{key: one["data"] * 1001}), tmp_path, "run.yaml")
        assert str(err.value) == f"run.yaml: stages[0].{key}: must have at most 1000 entries, got 1001"


@pytest.fixture
def linked_data(shared_data: Path, tmp_path: Path) -> Path:
    """The test audio through a symlink, as a checkout whose ../shared is one sees it (parsed paths are resolved)."""
    link = tmp_path / "linked-data"
    link.symlink_to(shared_data, target_is_directory=True)
    return link


def test_eval_specs_and_model_errors_name_their_field(tmp_path: Path, linked_data: Path) -> None:
    captions = str(linked_data / "animals_cc0" / "captions.csv")
    specs = parse_data_specs([{"file": captions, "caption_column": "keywords"}], tmp_path)
    assert [(s.csv.resolve(), s.caption_column, s.format, s.audio_root) for s in specs] == [
        (Path(captions).resolve(), "keywords", "csv", None)
    ]
    with pytest.raises(DatasetError) as err:
        parse_data_specs([{"file": captions, "format": "tsv"}], tmp_path, "eval")
    assert str(err.value) == (
        "eval: data[0].format: must be one of ['csv', 'clotho', 'audiocaps', 'wavcaps', 'jsonl'], got 'tsv'"
    )
    with pytest.raises(DatasetError) as err:
        parse_model(5, tmp_path, "eval")
    assert str(err.value) == "eval: model: must be a string, got 5"


def test_stage_options_survive_the_job_round_trip(tmp_path: Path, linked_data: Path) -> None:
    """Frozen sides, patchout and extra captions as written to a job's config.json and parsed back."""
    captions = str(linked_data / "animals_cc0" / "captions.csv")
    config = _minimal(tmp_path, linked_data, frozen={"text": False}, patchout={"time": 3}, extra_captions=captions)
    config["stages"].append({**config["stages"][0], "name": "s2", "patchout": None, "frozen": None, "val": None})
    cfg = parse_run_config(config, tmp_path)
    again = parse_run_config(json.loads(json.dumps(cfg.to_dict())), tmp_path / "elsewhere")
    first, second = again.stages
    assert (first.frozen, first.patchout.time, first.patchout.frequency) == ({"text": False}, 3, 2)
    assert first.extra_captions.resolve() == Path(captions).resolve()
    assert (second.frozen, second.patchout, second.val) == ({}, None, [])  # null: the tower's own sizes
    assert again.to_dict() == cfg.to_dict()
