"""Train the `fusion` checkpoint: a residual from YAMNet's embedding and class scores on top of the label bridge.

Model (models/towers/modules/fusion.py): audio = normalize(bridge + W_r @ [embedding, scores] + b), query = MiniLM;
training starts from the bridge itself (W_r = 0) and uses the shared trainer (training) on cached
features. Data (licences allow training and shipping): esc10 (CC BY 3.0), 0ad (CC BY-SA 3.0), sonicpi and
animals_cc0 (CC0). booth/ is evaluation only: it is scored and reported here, never trained on or selected by.

Splits (no clip or caption of an evaluation set is trained on or selected by):
  held out  ESC-10 fold 5; 0ad "0ad-held" (scripts/eval_bridge.py's split: no interface/*, 20% of captions,
            seed 0) and "0ad-held-aisfx" (scripts/train_aisfx.py's split: 20% of all captions, seed 0);
            booth/ (all of it).
  val       ESC-10 fold 4; "0ad-val", 15% of the remaining 0ad captions (seed 1).
  train     the rest: ESC-10 folds 1-3, 0ad, sonicpi, animals_cc0; each caption also as "the sound of <caption>".
Early stopping: the epoch (0 = the untrained bridge included) with the best validation score is kept.
Selection in --sweep, by an out-of-domain proxy (a split from the training pool predicts in-domain gains,
not out-of-domain ones: /work/shared/quality-notes.md): per setting, 3 sibling runs train without any ESC-10
and without a third of 0ad's sound categories each; the score is the mean of mAP@10 on those unseen kinds
of sound ("0ad-newkind") and P@10 on ESC-10 folds 1-4 ("esc10-unseen"; its mAP@10 is 1.0 for the bridge).

    .venv-dev/bin/python scripts/train_fusion.py --sweep    # grid, pick by validation, train the pick, save
    .venv-dev/bin/python scripts/train_fusion.py            # train the chosen defaults and save

Features are cached under --cache (default /tmp/audiosearch-fusion-features): about 3 min on 2 cores once.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import models  # noqa: E402
from audiosearch.models.profiles import CHECKPOINTS, profile  # noqa: E402
from audiosearch.models.towers.cores.fusion import PART_DIMS  # noqa: E402
from audiosearch.training import (  # noqa: E402
    AudioFeatures,
    CaptionRow,
    EvalSet,
    PairSet,
    TrainConfig,
    caption_group,
    chance_metrics,
    eval_set_from_rows,
    evaluate,
    group_split,
    load_caption_csv,
    pairs_from_rows,
    split_rows,
    train_projections,
)
from audiosearch.training.fusion_init import bridge_identity, freeze_bridge_block, init_fusion  # noqa: E402

log = logging.getLogger("train_fusion")
REPO = Path(__file__).resolve().parents[1]
TEMPLATES = ("{}", "the sound of {}")
FULL_PARTS = ("embedding", "scores")  # the feature model's parts; variants take a subset of its columns
BRIDGE_DIM = 384


@dataclasses.dataclass(frozen=True)
class Setting:
    # Defaults: the choice of `--sweep` (see the fusion MODEL_CARD.md for the grid and its scores).
    parts: tuple[str, ...] = FULL_PARTS
    lr: float = 1e-3
    weight_decay: float = 0.05
    epochs: int = 10
    freeze_bridge: bool = False
    residual_scale: float = 0.5  # applied after training: 0 gives the bridge back, 1 the trained residual

    def label(self) -> str:
        return (
            f"parts={'+'.join(self.parts)} lr={self.lr:g} wd={self.weight_decay:g} ep={self.epochs} "
            f"freeze={int(self.freeze_bridge)} scale={self.residual_scale:g}"
        )


@dataclasses.dataclass
class Data:
    train: list[CaptionRow]
    val: dict[str, list[CaptionRow]]
    held: dict[str, list[CaptionRow]]


def parse_args() -> argparse.Namespace:
    default_data = os.environ.get("AUDIOSEARCH_DATA", str(REPO.parent / "shared" / "data"))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path(default_data), help="shared data folder")
    p.add_argument("--cache", default="/tmp/audiosearch-fusion-features", help="feature cache (not in the repo)")
    p.add_argument("--out", type=Path, default=CHECKPOINTS / "fusion", help="where to save the checkpoint")
    p.add_argument("--sweep", action="store_true", help="try the settings grid, pick by validation score")
    p.add_argument("--seed", type=int, default=0, help="training seed")
    p.add_argument("--no-save", action="store_true", help="train and report, but do not write the checkpoint")
    p.add_argument("--results", type=Path, default=Path("/tmp/train_fusion_results.json"), help="JSON of all figures")
    return p.parse_args()


def load_data(root: Path) -> Data:
    esc = load_caption_csv(root / "esc10" / "captions.csv")
    esc_rest, esc_f5 = split_rows(esc, lambda r: r.meta["fold"] == "5")
    esc_train, esc_f4 = split_rows(esc_rest, lambda r: r.meta["fold"] == "4")
    oad = load_caption_csv(root / "0ad" / "captions.csv")
    sounds = [r for r in oad if not r.meta["category"].startswith("interface/")]
    held_eval = group_split(sounds, caption_group, 0.2, seed=0)[1]  # scripts/eval_bridge.py's 0ad-held
    held_aisfx = group_split(oad, caption_group, 0.2, seed=0)[1]  # scripts/train_aisfx.py's held-out captions
    held_captions = {caption_group(r) for r in held_eval + held_aisfx}
    oad_rest, _ = split_rows(oad, lambda r: caption_group(r) in held_captions)
    oad_train, oad_val = group_split(oad_rest, caption_group, 0.15, seed=1)
    small = [r for name in ("sonicpi", "animals_cc0") for r in load_caption_csv(root / name / "captions.csv")]
    booth = load_caption_csv(root / "booth" / "labels.csv", caption_column="label")
    return Data(
        train=esc_train + oad_train + small,
        val={"0ad-val": oad_val, "esc10-f4": esc_f4, "esc10-unseen": esc_rest},
        held={"esc10-f5": esc_f5, "0ad-held": held_eval, "0ad-held-aisfx": held_aisfx, "booth": booth},
    )


def with_templates(rows: list[CaptionRow]) -> list[CaptionRow]:
    return [dataclasses.replace(r, caption=t.format(r.caption)) for r in rows for t in TEMPLATES]


def part_columns(parts: tuple[str, ...]) -> torch.Tensor:
    """Columns of the full feature vector ([bridge | embedding | scores]) that a model with `parts` sees."""
    cols, start = [torch.arange(BRIDGE_DIM)], BRIDGE_DIM
    for name in FULL_PARTS:
        if name in parts:
            cols.append(torch.arange(start, start + PART_DIMS[name]))
        start += PART_DIMS[name]
    return torch.cat(cols)


def select_audio(feats: AudioFeatures, parts: tuple[str, ...]) -> AudioFeatures:
    return AudioFeatures(feats.windows[:, part_columns(parts)], feats.offsets)


def select_pairs(pairs: PairSet, parts: tuple[str, ...]) -> PairSet:
    return PairSet(select_audio(pairs.audio, parts), pairs.text, pairs.audio_index, pairs.text_index)


def select_eval(e: EvalSet, parts: tuple[str, ...]) -> EvalSet:
    return EvalSet(e.name, select_audio(e.audio, parts), e.queries, e.relevance)


def build_model(parts: tuple[str, ...]) -> models.DualEncoder:
    config = profile("fusion")  # the bare profile, never an existing checkpoint
    config.audio.options["parts"] = list(parts)
    return init_fusion(models.DualEncoder(config))


def val_score(metrics: dict[str, dict[str, float]]) -> float:
    """0ad mAP@10 and ESC-10 P@10 (its mAP@10 is 1.0 for the bridge already), averaged."""
    esc = metrics.get("esc10-f4")
    return statistics.mean([metrics["0ad-val"]["mAP@10"]] + ([esc["P@10"]] if esc else []))


def proxy_score(metrics: dict[str, dict[str, float]]) -> float:
    """Out-of-domain proxy: kinds of sound never trained on (mAP@10) and a source never trained on (P@10)."""
    return statistics.mean([metrics["0ad-newkind"]["mAP@10"], metrics["esc10-unseen"]["P@10"]])


def train_early_stopped(
    model: models.DualEncoder, pairs: PairSet, val: list[EvalSet], s: Setting, seed: int
) -> tuple[int, list[float]]:
    """Train from the bridge; keep the epoch (0: untrained) with the best val score, then scale the residual.
    Returns the kept epoch and every epoch's val score."""
    init_fusion(model)
    hook = freeze_bridge_block(model) if s.freeze_bridge else None
    scores = [val_score({e.name: evaluate(model, e) for e in val})]
    best = {"epoch": 0, "state": copy.deepcopy(model.state_dict())}

    def on_epoch(record: dict[str, float]) -> None:
        per_set = {e.name: {k: record[f"{e.name}/{k}"] for k in ("mAP@10", "P@10")} for e in val}
        scores.append(val_score(per_set))
        if scores[-1] > scores[best["epoch"]]:
            best.update(epoch=int(record["epoch"]), state=copy.deepcopy(model.state_dict()))

    cfg = TrainConfig(epochs=s.epochs, lr=s.lr, weight_decay=s.weight_decay, seed=seed)
    try:
        train_projections(model, pairs, val, cfg, on_epoch)
    finally:
        if hook is not None:
            hook.remove()
    model.load_state_dict(best["state"])
    scale_residual(model, s.residual_scale)
    return int(best["epoch"]), scores


def scale_residual(model: models.DualEncoder, scale: float) -> None:
    """Move the audio projection towards the bridge's [I | 0], 0 bias: W <- I' + scale * (W - I')."""
    proj = model.audio_proj
    with torch.no_grad():
        eye = bridge_identity(proj, BRIDGE_DIM)
        proj.weight.copy_(eye + scale * (proj.weight - eye))
        proj.bias.mul_(scale)


def category_folds(rows: list[CaptionRow], k: int) -> list[set[str]]:
    """0ad sound categories (interface/* cues left out: weak labels) dealt into k folds by size."""
    sizes: dict[str, int] = {}
    for r in rows:
        if r.source == "0ad" and not r.meta["category"].startswith("interface/"):
            sizes[r.meta["category"]] = sizes.get(r.meta["category"], 0) + 1
    folds: list[set[str]] = [set() for _ in range(k)]
    for i, cat in enumerate(sorted(sizes, key=lambda c: (-sizes[c], c))):
        folds[i % k].add(cat)
    return folds


def sweep(feature_model: models.DualEncoder, data: Data, evals: dict[str, EvalSet], cache: str, seed: int) -> tuple:
    """Each setting trains k sibling runs without ESC-10 and without a third of 0ad's sound categories, and is
    scored on those (0ad-newkind) and ESC-10 folds 1-4; the best mean proxy score wins."""
    pool = [r for r in data.train + data.val["0ad-val"] if r.source != "esc10"]
    val_rows, folds = set(data.val["0ad-val"]), []
    for cats in category_folds(pool, 3):
        is_new = lambda r, cats=cats: r.source == "0ad" and r.meta["category"] in cats  # noqa: E731
        kept, new = split_rows(pool, is_new)
        train, val = split_rows(kept, lambda r: r in val_rows)
        folds.append(
            {
                "pairs": pairs_from_rows(feature_model, with_templates(train), cache),
                "val": eval_set_from_rows(feature_model, "0ad-val", val, cache),
                "newkind": eval_set_from_rows(feature_model, "0ad-newkind", new, cache),
            }
        )
    bridge = [
        {
            "0ad-newkind": evaluate(feature_model, f["newkind"]),
            "esc10-unseen": evaluate(feature_model, evals["esc10-unseen"]),
        }
        for f in folds
    ]
    log.info("bridge: proxy %.3f", statistics.mean(proxy_score(m) for m in bridge))
    grid = [
        Setting(FULL_PARTS, lr, wd, ep, freeze, scale)
        for lr, wd, ep, freeze, scale in itertools.product(
            (3e-4, 1e-3), (0.05, 0.5), (3, 10), (True, False), (0.5, 1.0)
        )
    ]
    table = [sweep_one(s, folds, evals, seed) for s in grid]
    best = max(table, key=lambda row: row["score"])
    for parts in (("embedding",), ("scores",)):  # which extra features matter, at the best setting
        table.append(sweep_one(dataclasses.replace(Setting(**best["setting"]), parts=parts), folds, evals, seed))
    best = max(table, key=lambda row: row["score"])
    return Setting(**best["setting"] | {"parts": tuple(best["setting"]["parts"])}), table


def sweep_one(s: Setting, folds: list[dict], evals: dict[str, EvalSet], seed: int) -> dict:
    model = build_model(s.parts)
    per_fold, epochs = [], []
    for f in folds:
        epoch, _ = train_early_stopped(
            model, select_pairs(f["pairs"], s.parts), [select_eval(f["val"], s.parts)], s, seed
        )
        epochs.append(epoch)
        per_fold.append(
            {e.name: evaluate(model, select_eval(e, s.parts)) for e in (f["newkind"], evals["esc10-unseen"])}
        )
    mean = {n: {k: statistics.mean(m[n][k] for m in per_fold) for k in per_fold[0][n]} for n in per_fold[0]}
    score = proxy_score(mean)
    log.info("%-72s proxy=%.3f (epochs %s) %s", s.label(), score, epochs, brief(mean))
    setting = dataclasses.asdict(s) | {"parts": list(s.parts)}
    return {"setting": setting, "score": score, "best_epochs": epochs, "results": mean}


def brief(result: dict) -> str:
    cells = (f"{k}: {r['mAP@10']:.3f}/{r['R@1']:.2f}/{r['R@10']:.2f}/P{r['P@10']:.2f}" for k, r in result.items())
    return "  ".join(cells)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("audiosearch.training.trainer").setLevel(logging.WARNING)
    args = parse_args()
    started = time.perf_counter()
    data = load_data(args.data)
    feature_model = build_model(FULL_PARTS)
    named = data.val | data.held
    evals = {name: eval_set_from_rows(feature_model, name, rows, args.cache) for name, rows in named.items()}
    report: dict = {
        "chance": {n: chance_metrics(e.relevance.sum(1), e.relevance.shape[1]) for n, e in evals.items()},
        "sizes": {n: list(e.relevance.shape) for n, e in evals.items()},
        "bridge": {n: evaluate(feature_model, e) for n, e in evals.items()},
    }
    log.info("bridge (untrained fusion)  %s", brief(report["bridge"]))
    setting = Setting()
    if args.sweep:
        setting, report["sweep"] = sweep(feature_model, data, evals, args.cache, args.seed)
    model = build_model(setting.parts)
    pairs = select_pairs(pairs_from_rows(feature_model, with_templates(data.train), args.cache), setting.parts)
    val = [select_eval(evals[n], setting.parts) for n in ("0ad-val", "esc10-f4")]
    epoch, scores = train_early_stopped(model, pairs, val, setting, args.seed)
    results = {n: evaluate(model, select_eval(e, setting.parts)) for n, e in evals.items()}
    report["final"] = {
        "setting": dataclasses.asdict(setting) | {"parts": list(setting.parts)},
        "seed": args.seed,
        "best_epoch": epoch,
        "val_scores": scores,
        "train_pairs": len(pairs),
        "train_clips": len(pairs.audio),
        "train_captions": len(pairs.text),
        "results": results,
    }
    log.info("final %s, epoch %d  %s", setting.label(), epoch, brief(results))
    if not args.no_save:
        log.info("saved %s", models.save_model(model, args.out))
    report["seconds"] = time.perf_counter() - started
    args.results.write_text(json.dumps(report, indent=2))
    log.info("figures in %s (%.0f s)", args.results, report["seconds"])


if __name__ == "__main__":
    main()
