"""End-to-end tower training on tiny random paper-profile towers (real PaSST and RoBERTa code), step
checkpoints and resume inside a stage, and per-tower freezing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from audiosearch import models
from audiosearch.core.errors import InvalidInputError
from audiosearch.models.checkpoint import load_model, save_model
from audiosearch.training import TrainConfig, load_caption_csv, load_run_config, run_training, set_frozen, train_towers
from audiosearch.training.data import CaptionRow
from audiosearch.training.trainer import TrainLoop
from tests.models.tiny import tiny_paper_config

ANIMALS = ("cat", "cow", "dog", "duck", "frog", "horse", "owl", "pig")


@pytest.fixture(scope="module")
def animal_rows(shared_data: Path) -> list[CaptionRow]:
    rows = load_caption_csv(shared_data / "animals_cc0" / "captions.csv")
    return [r for r in rows if r.path.stem in ANIMALS]


def tiny_model(seed: int = 0) -> models.DualEncoder:
    torch.manual_seed(seed)
    config = tiny_paper_config()
    # 3 s windows (18 patch columns instead of 62): the same code paths at a third of the cost
    config.window_seconds = config.hop_seconds = 3.0
    config.audio.options["input_tdim"] = 300
    return models.DualEncoder(config)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict[str, torch.Tensor], module: torch.nn.Module) -> bool:
    return any(not torch.equal(before[k], v) for k, v in module.named_parameters())


def test_end_to_end_training_lowers_loss_and_moves_towers(animal_rows: list[CaptionRow]) -> None:
    model = tiny_model()
    audio, text, proj = _params(model.audio_tower), _params(model.text_tower), _params(model.audio_proj)
    cfg = TrainConfig(epochs=6, batch_size=4, lr=3e-3, warmup_fraction=0.1, seed=0)
    history = train_towers(model, animal_rows, config=cfg).history
    losses = [h["loss"] for h in history]
    assert min(losses[-2:]) < 0.8 * losses[0], losses
    assert _changed(audio, model.audio_tower) and _changed(text, model.text_tower) and _changed(proj, model.audio_proj)
    assert history[-1]["step"] == 6 * 2 and not model.training


@pytest.mark.slow
def test_frozen_tower_does_not_change(animal_rows: list[CaptionRow]) -> None:
    model = tiny_model()
    set_frozen(model, audio=True, text=False)
    audio, text = _params(model.audio_tower), _params(model.text_tower)
    seen: list[bool] = []
    model.audio_tower.register_forward_pre_hook(lambda m, args: seen.append(m.training))
    # accumulation: 2 micro-batches of 2 per step, so 8 rows give 2 optimizer steps per epoch
    cfg = TrainConfig(epochs=2, batch_size=2, accumulate_steps=2, lr=2e-3, seed=0)
    history = train_towers(model, animal_rows, config=cfg).history
    assert [h["step"] for h in history] == [2.0, 4.0]
    assert not _changed(audio, model.audio_tower) and _changed(text, model.text_tower)
    assert seen and not any(seen)  # a frozen tower runs in eval mode: no patchout, no mel jitter


def test_patchout_only_in_train_mode() -> None:
    tower = tiny_model().audio_tower
    assert tower.patchout == (15, 2)  # the reference recipe's sizes by default
    tower.set_patchout(10, 1)
    tokens: list[int] = []
    tower.net.blocks[0].register_forward_pre_hook(lambda m, args: tokens.append(args[0].shape[1]))
    wave = torch.randn(1, 32000 * 3) * 0.1
    grid_f, grid_t = tower.net.patch_embed.grid_size
    tower.train()
    tower(wave)
    tower.eval()
    with torch.no_grad():
        first, second = tower(wave), tower(wave)
    assert tokens == [(grid_f - 1) * (grid_t - 10) + 2, grid_f * grid_t + 2, grid_f * grid_t + 2]
    assert torch.equal(first, second)  # inference sees every patch, deterministically
    with pytest.raises(models.ModelLoadError, match="patchout must leave patches"):
        tower.set_patchout(grid_t, 0)


def test_bf16_autocast_on_cpu_trains(animal_rows: list[CaptionRow]) -> None:
    model = tiny_model()
    proj = _params(model.text_proj)
    dtypes: list[torch.dtype] = []
    model.audio_proj.register_forward_hook(lambda m, args, out: dtypes.append(out.dtype))
    cfg = TrainConfig(epochs=1, batch_size=4, lr=1e-3, amp=True, seed=0)
    history = train_towers(model, animal_rows, config=cfg).history
    assert torch.isfinite(torch.tensor(history[0]["loss"])) and _changed(proj, model.text_proj)
    assert dtypes and dtypes[0] == torch.bfloat16
    assert model.audio_proj.weight.dtype == torch.float32  # autocast computes in bf16, weights stay fp32


def _noise_loss(m: models.DualEncoder, batch: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    # tower outputs drawn from the loop's generator: a restored generator must draw the same ones
    audio = m.audio_proj(torch.randn(len(batch), m.audio_tower.dim, generator=gen))
    text = m.text_proj(torch.randn(len(batch), m.text_tower.dim, generator=gen))
    return m.loss(F.normalize(audio, dim=-1), F.normalize(text, dim=-1), batch)


def test_loop_state_round_trips_through_state_dict(tmp_path: Path) -> None:
    cfg = TrainConfig(epochs=2, batch_size=4, lr=1e-2, seed=5)
    first = TrainLoop(tiny_model(0), 16, cfg)
    order = torch.randperm(16, generator=first.gen)
    first.step(_noise_loss, order, 0)
    torch.save(first.state_dict(), tmp_path / "loop.pt")
    second = TrainLoop(tiny_model(1), 16, cfg)  # other weights, a fresh optimizer, schedule and generator
    assert not torch.equal(second.model.audio_proj.weight, first.model.audio_proj.weight)

    second.load_state_dict(torch.load(tmp_path / "loop.pt", weights_only=True))  # as a step checkpoint reads it
    torch.testing.assert_close(second.state_dict(), first.state_dict(), rtol=0, atol=0)
    assert second.schedule.get_last_lr() == first.schedule.get_last_lr() and second.schedule.last_epoch == 1
    # the next step draws the same noise and lands on the same weights and optimizer moments
    assert second.step(_noise_loss, order, 1) == first.step(_noise_loss, order, 1)
    torch.testing.assert_close(second.state_dict(), first.state_dict(), rtol=0, atol=0)

    frozen_audio = tiny_model(0)
    set_frozen(frozen_audio, audio=True, text=False)
    partial = TrainLoop(frozen_audio, 16, cfg).state_dict()  # no audio tower weights: they cannot change
    assert not any(k.startswith("audio_tower.") for k in partial["model"])
    with pytest.raises(InvalidInputError, match=r"weights do not match the model \(missing \['audio_tower"):
        TrainLoop(tiny_model(1), 16, cfg).load_state_dict(partial)  # a loop that trains the audio tower


# ---------------------------------------------------------------- runs: step checkpoints and resume


class Stop(Exception):
    """Raised from the progress callback: an interrupted run (a crash, a cancelled job)."""


def _run_config(root: Path, shared: Path, name: str, model: str, **stage: Any) -> Path:
    data = root / "animals.csv"  # 8 of the 10 clips, paths relative to animals_cc0
    if not data.is_file():
        lines = (shared / "animals_cc0" / "captions.csv").read_text().splitlines()
        data.write_text("\n".join([lines[0]] + [ln for ln in lines[1:] if ln.split("/")[1].split(".")[0] in ANIMALS]))
    spec = {"csv": str(data), "audio_root": str(shared / "animals_cc0")}
    config = {
        "model": model,
        "output": name,
        "device": "cpu",
        "stages": [
            {
                "name": "e2e",
                "data": [spec],
                "val": [spec],
                "epochs": 2,
                "batch_size": 4,
                "lr": 2e-3,
                "checkpoint_every_steps": 1,
                **stage,
            }
        ],
    }
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(tiny_model(1), tmp_path_factory.mktemp("tiny") / "tiny")


@pytest.mark.slow
def test_resume_inside_a_stage_continues_at_the_step(tiny_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    # 8 animal clips, batch 4: 2 steps per epoch, 4 in all; a checkpoint after every step
    whole = run_training(load_run_config(_run_config(tmp_path, shared_data, "whole", str(tiny_dir), val=[])))

    def stop_at_3(event: dict[str, Any]) -> None:
        if event.get("event") == "checkpoint" and event["step"] == 3:
            raise Stop

    config = _run_config(tmp_path, shared_data, "cut", str(tiny_dir), val=[])
    with pytest.raises(Stop):
        run_training(load_run_config(config), progress=stop_at_3)
    assert (tmp_path / "cut" / "steps" / "e2e.pt").is_file()
    state = json.loads((tmp_path / "cut" / "state.json").read_text())
    assert state["finished"] == [] and state["current"]["step"] == 3

    events: list[dict[str, Any]] = []
    resumed = run_training(load_run_config(config), progress=events.append)
    assert [(e.get("event", "epoch"), e["step"]) for e in events] == [("checkpoint", 4), ("epoch", 4)]
    assert not (tmp_path / "cut" / "steps" / "e2e.pt").exists()  # removed once the stage is saved
    h_whole, h_cut = whole.state["stages"]["e2e"]["history"], resumed.state["stages"]["e2e"]["history"]
    assert [h["epoch"] for h in h_cut] == [0, 1, 2]
    for a, b in zip(h_whole, h_cut, strict=True):  # same records: losses, learning rates, temperatures
        assert a.keys() == b.keys()
        assert {k: a[k] for k in a} == pytest.approx({k: b[k] for k in b}, rel=1e-5, abs=1e-6)
    w_whole, w_cut = load_model(whole.model_dir), load_model(resumed.model_dir)
    for (k, a), b in zip(w_whole.state_dict().items(), w_cut.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)


def test_changed_stage_refuses_a_step_checkpoint(tiny_dir: Path, shared_data: Path, tmp_path: Path) -> None:
    def stop(event: dict[str, Any]) -> None:
        if event.get("event") == "checkpoint":
            raise Stop

    with pytest.raises(Stop):
        run_training(load_run_config(_run_config(tmp_path, shared_data, "r", str(tiny_dir), val=[])), progress=stop)
    changed = _run_config(tmp_path, shared_data, "r", str(tiny_dir), val=[], lr=1e-3)
    with pytest.raises(InvalidInputError, match=r"e2e\.pt: step checkpoint of a different configuration"):
        run_training(load_run_config(changed))


@pytest.mark.slow
def test_unfrozen_text_tower_is_saved_with_the_model(shared_data: Path, tmp_path: Path) -> None:
    # lite: YAMNet bridge (no torch weights) + MiniLM; training MiniLM makes it part of the checkpoint
    config = _run_config(
        tmp_path, shared_data, "lite", "lite", epochs=1, frozen={"text": False}, checkpoint_every_steps=0, val=[]
    )
    result = run_training(load_run_config(config))
    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["frozen_towers"] == ["audio"]
    # reloaded, the trained MiniLM comes from the checkpoint, not from its package
    trained, shipped = load_model(result.model_dir), load_model("lite")
    query = ["a dog barks"]
    assert not np.allclose(trained.encode_text(query), shipped.encode_text(query))
    bad = _run_config(tmp_path, shared_data, "bad", "lite", frozen={"audio": False})
    with pytest.raises(InvalidInputError, match="audio tower .* has no trainable weights"):
        run_training(load_run_config(bad))
