"""Importing the published PaSST + RoBERTa checkpoints: a state dict laid out as the reference code's (its key
names and shapes, random values) converts losslessly, and the imported model embeds real clips and captions
exactly as a direct re-computation by the reference's own forward (tests/models/reference_layout.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from audiosearch.app.cli import main as cli
from audiosearch.core.errors import ModelLoadError
from audiosearch.models import load_audio, load_model
from audiosearch.models.config import ModelConfig
from audiosearch.models.embedder import embed_files
from audiosearch.models.reference import LAYOUTS, ROBERTA_LARGE, import_checkpoint, import_config, plan
from audiosearch.models.towers.modules.hf_text import minilm_path
from audiosearch.training.data import CaptionRow
from audiosearch.training.evaluation import caption_clip_similarity
from tests.models.reference_layout import Reference, lightning_checkpoint
from tests.models.tiny import TINY_ROBERTA

PASST_TINY = (64, 1, 2)  # embed_dim, depth, heads: the real PaSST code at a size that runs in seconds
DIM = 48
CAPTIONS = [
    "A dog's bark, then: silence!",  # reference deletes punctuation: "a dogs bark then silence"
    "Tick-tock  of a clock",  # "ticktock  of a clock", two spaces kept
    "bird’s song at dawn",  # non-ASCII apostrophe kept
    " Leading space and UPPER case",
    "rain " * 40,  # past 32 tokens: truncated
]


def tiny_import_config(fmt: str) -> ModelConfig:
    cfg = import_config(fmt)
    cfg.audio.options.update(embed_dim=PASST_TINY[0], depth=PASST_TINY[1], num_heads=PASST_TINY[2])
    cfg.text.options["config"] = dict(TINY_ROBERTA)
    cfg.embed_dim = DIM
    return cfg


def tiny_reference(fmt: str) -> Reference:
    torch.manual_seed(0)
    return Reference(fmt, PASST_TINY, TINY_ROBERTA, DIM)


@pytest.fixture(scope="module")
def clips(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Real clips of every aggregation case: <= 10 s, 11 s (two windows), 20.09 s (three), 10.3 s (a 0.3 s tail,
    which the reference counts and windowing for one vector per window drops)."""
    amb = shared_data / "0ad" / "ambient" / "building"
    short = shared_data / "animals_cc0" / "animals" / "dog.ogg"
    cut = tmp_path_factory.mktemp("clips") / "trade_10.3s.wav"
    sf.write(cut, load_audio(amb / "amb_trade_11.ogg", 32000)[: int(10.3 * 32000)], 32000, subtype="FLOAT")
    return [short, amb / "amb_trade_20.ogg", amb / "amb_trade_11.ogg", cut]


@pytest.mark.parametrize(("fmt", "compiled"), [("dcase2025", False), ("dcase2025", True), ("salsa", False)])
def test_imported_model_embeds_as_the_reference(fmt: str, compiled: bool, clips: list[Path], tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    ref = tiny_reference(fmt)
    published = ref.state_dict_as_published(compiled)
    ckpt = lightning_checkpoint(published, tmp_path / "published.ckpt")
    report = import_checkpoint(ckpt, fmt, tmp_path / "model", tokenizer=minilm_path(), config=tiny_import_config(fmt))

    # every tensor used or listed as ignored with its reason; the Lightning training entries listed too
    ignored = {k for k, _ in report.ignored}
    assert report.converted + len(ignored) == len(published)
    assert ignored == ({"timing_tau", "audio_token", "posencode.w", "posencode.pe"} if fmt == "salsa" else set())
    assert report.compiled == compiled
    details = json.loads((tmp_path / "model" / "import.json").read_text())
    assert {e["key"] for e in details["other_entries"]} >= {"optimizer_states", "MixedPrecision", "hyper_parameters"}
    assert all(e["reason"] for e in details["ignored"] + details["other_entries"])

    model = load_model(tmp_path / "model")  # offline: RoBERTa from its config, tokenizer from the directory
    assert model.provenance["projections"]["from"] == "checkpoint"
    assert model.log_temperature.item() == pytest.approx(np.log(0.05))

    # clips: the eval path (one vector per clip, best window = the only one) against the reference forward
    ours = [e.vectors for e in embed_files(model, clips)]
    assert [len(v) for v in ours] == [1, 1, 1, 1]
    theirs = np.stack([ref.embed_clip(load_audio(p, 32000)) for p in clips])
    np.testing.assert_allclose(np.concatenate(ours), theirs, atol=1e-5)
    assert np.abs(theirs[1] - theirs[2]).max() > 1e-2  # the clips differ: the comparison can fail

    # captions: ours pads to the batch's longest, the reference to 32 tokens: the first token is the same
    tok = AutoTokenizer.from_pretrained(minilm_path())
    np.testing.assert_allclose(model.encode_text(CAPTIONS), ref.embed_captions(CAPTIONS, tok), atol=1e-5)

    # `audiosearch eval`'s similarity is the reference's caption x clip cosine
    pairs = list(zip(clips, CAPTIONS, strict=False))
    rows = [CaptionRow(path=p, caption=c, clip_id=f"c{i}", source="t") for i, (p, c) in enumerate(pairs)]
    sim, _ = caption_clip_similarity(model, rows)  # queries in sorted order, clips by id
    queries = sorted(c for _, c in pairs)
    np.testing.assert_allclose(sim, ref.embed_captions(queries, tok) @ theirs.T, atol=1e-5)


@pytest.mark.slow
def test_published_layouts_at_full_size_map_onto_the_paper_model() -> None:
    """The real sizes (PaSST-S, RoBERTa-large): 553 tensors, 442,269,471 numbers, all mapped, shapes checked."""
    from audiosearch.models.dual_encoder import DualEncoder

    with torch.device("meta"):  # shapes only (PaSST, which cannot build on meta, builds on the CPU)
        for fmt, extra in (("dcase2025", 0), ("salsa", 4)):
            ref = Reference(fmt, (768, 12, 12), ROBERTA_LARGE, 1024)
            shapes = {k: tuple(v.shape) for k, v in ref.state_dict_as_published(fmt == "dcase2025").items()}
            cfg = import_config(fmt)
            cfg.text.options["tokenizer"] = minilm_path()
            expected = {k: tuple(v.shape) for k, v in DualEncoder(cfg).state_dict().items()}
            mapping, ignored = plan(shapes, LAYOUTS[fmt], expected)
            assert len(shapes) == 553 + extra and len(mapping) == 553 and len(ignored) == extra
            assert sum(int(np.prod(s)) for k, s in shapes.items() if k in mapping.values()) == 442_269_471


def _reference_state(fmt: str = "dcase2025") -> dict[str, torch.Tensor]:
    return tiny_reference(fmt).state_dict_as_published()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("text_projection.bias"), r"^the checkpoint lacks text_projection\.bias: not a dcase2025"),
        (
            lambda s: s.update({"audio_projection.weight": torch.zeros(DIM, 32)}),
            r"^audio_projection\.weight: shape \[48, 32\], the paper model needs \[48, 64\]$",
        ),
        (
            lambda s: s.update({"audio_sequence.0.weight": torch.zeros(2)}),
            r"^audio_sequence\.0\.weight: not part of the dcase2025 layout",
        ),
    ],
    ids=["missing", "misshaped", "another-architecture"],
)
def test_a_wrong_tensor_is_one_line_naming_it(change, message: str, tmp_path: Path) -> None:  # noqa: ANN001
    state = _reference_state()
    change(state)
    ckpt = lightning_checkpoint(state, tmp_path / "bad.ckpt")
    with pytest.raises(ModelLoadError, match=message) as err:
        import_checkpoint(ckpt, "dcase2025", tmp_path / "m", minilm_path(), tiny_import_config("dcase2025"))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "m").exists()  # nothing half-written


def test_the_wrong_format_is_refused(tmp_path: Path) -> None:
    ckpt = lightning_checkpoint(_reference_state("salsa"), tmp_path / "salsa.ckpt")
    with pytest.raises(ModelLoadError, match=r"^audio_token: not part of the dcase2025 layout"):
        import_checkpoint(ckpt, "dcase2025", tmp_path / "m", minilm_path(), tiny_import_config("dcase2025"))


def test_hyper_parameters_of_unknown_classes_load_without_running_them(tmp_path: Path) -> None:
    """salsa's hyper-parameters are sacred containers; a file may name any class. Neither is imported or run."""
    import sys
    import types

    module = types.ModuleType("sacred_lookalike")
    marker = tmp_path / "ran"

    class ReadOnlyDict(dict):
        pass

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    for cls in (ReadOnlyDict, Payload):
        cls.__module__, cls.__qualname__ = module.__name__, cls.__name__
        setattr(module, cls.__name__, cls)
    sys.modules[module.__name__] = module
    try:
        hparams = ReadOnlyDict(sentence_features=ReadOnlyDict(model="roberta-large"), payload=Payload())
        ckpt = lightning_checkpoint(_reference_state("salsa"), tmp_path / "salsa.ckpt", hparams)
    finally:
        del sys.modules[module.__name__]
    import_checkpoint(ckpt, "salsa", tmp_path / "m", minilm_path(), tiny_import_config("salsa"))
    assert not marker.exists()
    assert "roberta-large" in (tmp_path / "m" / "import.json").read_text()


@pytest.mark.slow
def test_cli_import_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_ckpt = tmp_path / "notes.ckpt"
    not_a_ckpt.write_text("not a checkpoint")
    args = ["--format", "dcase2025", "--out", str(tmp_path / "m"), "--tokenizer", minilm_path()]
    assert cli(["import-checkpoint", str(not_a_ckpt), *args]) == 1
    assert cli(["import-checkpoint", str(tmp_path / "missing.ckpt"), *args]) == 1
    tiny = lightning_checkpoint(_reference_state(), tmp_path / "tiny.ckpt")
    assert cli(["import-checkpoint", str(tiny), *args]) == 1  # the real model's sizes
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "mine.txt").write_text("keep")
    assert cli(["import-checkpoint", str(tiny), *args]) == 1  # never replaces what is there
    assert (tmp_path / "m" / "mine.txt").read_text() == "keep"
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("audiosearch: error: ") for line in lines)
    assert lines[3].endswith("m already exists: import into a new directory")
    assert "notes.ckpt: not a readable PyTorch checkpoint" in lines[0]
    assert "missing.ckpt: no such checkpoint file" in lines[1]
    assert "blocks.0.attn.proj.bias: shape [64], the paper model needs [768]" in lines[2]


@pytest.mark.slow
def test_an_imported_model_indexes_searches_and_fine_tunes(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from audiosearch.training.run import load_run_config, run_training

    ckpt = lightning_checkpoint(_reference_state(), tmp_path / "published.ckpt")
    model_dir = tmp_path / "imported"
    import_checkpoint(ckpt, "dcase2025", model_dir, minilm_path(), tiny_import_config("dcase2025"))
    library = shared_data / "animals_cc0" / "animals"
    index = tmp_path / "index"
    # trained parts (from a checkpoint): no --allow-untrained needed
    assert (
        cli(["index", str(library), "--index", str(index), "--model", str(model_dir), "--workers", "0", "--quiet"]) == 0
    )
    manifest = json.loads(next((index / "snapshots").glob("*/manifest.json")).read_text())
    assert manifest["model"]["provenance"]["audio_tower"]["from"] == "checkpoint"
    capsys.readouterr()
    assert cli(["search", "a dog barking", "--index", str(index), "--model", str(model_dir), "-k", "3"]) == 0
    assert len(json.loads(capsys.readouterr().out)["results"]) == 3

    # fine-tuning on one's own captions starts from the imported weights and keeps the bundled tokenizer
    run = {
        "model": str(model_dir),
        "output": str(tmp_path / "run"),
        "device": "cpu",
        "stages": [
            {
                "name": "mine",
                "data": [{"csv": str(shared_data / "animals_cc0" / "captions.csv")}],
                "epochs": 1,
                "batch_size": 5,
                "lr": 1e-4,
            }
        ],
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    result = run_training(load_run_config(tmp_path / "run.yaml"))
    tuned = load_model(result.model_dir)
    assert (result.model_dir / "tokenizer").is_dir()
    assert tuned.provenance["projections"]["from"] == "trained"
    assert tuned.log_temperature.item() == pytest.approx(np.log(0.05))  # the reference's fixed temperature
    start = load_model(model_dir)
    assert not torch.equal(tuned.text_proj.weight, start.text_proj.weight)
    assert tuned.config.aggregate == "mean"
