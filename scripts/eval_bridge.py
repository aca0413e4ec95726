"""Text-to-audio retrieval of every default-model candidate on held-out sets: bridge, fusion, aisfx, chance.

Sets (all from ../shared/data or $AUDIOSEARCH_DATA):
  esc10-f5  ESC-10 fold 5: 80 clips, its 10 captions as queries;
  booth     all 223 clips, the 45 labels as queries (evaluation only, never training);
  0ad-held  0ad without interface/* cues (their captions name a game event, not the sound), a
            20% split by caption (training.group_split, seed 0): unseen captions. The aisfx
            checkpoint was trained on 21 of its 24 captions (its own split differs), so its cells here
            are marked "seen"; fusion never trained on it;
  0ad-held-aisfx  scripts/train_aisfx.py's held-out split (all of 0ad, interface cues too, 20% of
            captions, seed 0): never trained on by aisfx nor fusion.
Each unique caption is a query ranked against the unique clips; a clip longer than one window scores
its best 10 s window. Metrics (audiosearch.training.metrics): mAP@10 (1/rank of the first relevant clip,
0 past 10), R@1, R@5, R@10, and P@10 (share of relevant clips in the top 10). Queries go in as
written ("raw") and as "the sound of <caption>" ("sound of").

Systems: `bridge` (load_model('bridge'), cosine of the bridge vector and the MiniLM query), `class match`
(the bridge tower's clip probabilities scored by audiosearch.models.towers.modules.bridge.class_match_scores), `fusion`
(load_model('fusion'): the bridge plus a residual trained by scripts/train_fusion.py), `aisfx` (its
shipped checkpoint) and `aisfx untrained` (the bare profile, projections from seed 0), and chance.

Then the `lite` profile's speed on 10 s clips (two ESC-10 clips joined, written as 44.1 kHz Ogg):
embedding from waveforms in memory, and decode + resample + embed from the files.
Usage: python scripts/eval_bridge.py [--sets esc10-f5 booth 0ad-held 0ad-held-aisfx] [--no-aisfx] [--no-speed]
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiosearch.models import DualEncoder, Windows, cut_windows, load_audio, load_model  # noqa: E402
from audiosearch.models.profiles import CHECKPOINTS, profile  # noqa: E402
from audiosearch.models.towers.cores.bridge import class_match_scores  # noqa: E402
from audiosearch.training import caption_group, group_split, load_caption_csv, reset_projections  # noqa: E402
from audiosearch.training.metrics import chance_metrics, precision_at_k, retrieval_metrics  # noqa: E402

log = logging.getLogger("eval_bridge")
WINDOW_S = 10.0
METRICS = ("mAP@10", "R@1", "R@5", "R@10", "P@10")
# (system, set) pairs whose queries the system was trained on: printed, but marked.
SEEN = {("aisfx", "0ad-held")}


@dataclass
class EvalSet:
    name: str
    paths: list[Path]  # unique clips
    captions: list[str]  # one per clip
    queries: list[str]  # unique captions

    def relevance(self) -> np.ndarray:
        caps = np.asarray(self.captions, dtype=object)
        return np.stack([caps == q for q in self.queries])  # (Q, N)


def data_root() -> Path:
    return Path(os.environ.get("AUDIOSEARCH_DATA", REPO.parent / "shared" / "data"))


def load_sets(root: Path, names: list[str], ad_fraction: float, ad_seed: int) -> list[EvalSet]:
    sets = []
    for name in names:
        if name == "esc10-f5":
            rows = [r for r in load_caption_csv(root / "esc10" / "captions.csv") if r.meta["fold"] == "5"]
        elif name == "booth":
            rows = load_caption_csv(root / "booth" / "labels.csv", caption_column="label")
        elif name == "0ad-held":
            rows = [
                r
                for r in load_caption_csv(root / "0ad" / "captions.csv")
                if not r.meta["category"].startswith("interface/")
            ]
            rows = group_split(rows, caption_group, ad_fraction, seed=ad_seed)[1]
        elif name == "0ad-held-aisfx":
            rows = group_split(load_caption_csv(root / "0ad" / "captions.csv"), caption_group, 0.2, seed=0)[1]
        else:
            raise SystemExit(f"unknown set {name!r}")
        caps = [r.caption for r in rows]
        sets.append(EvalSet(name, [r.path for r in rows], caps, sorted(set(caps))))
    return sets


def embed_clips(
    embed: Callable[[np.ndarray, np.ndarray], np.ndarray], paths: list[Path], sr: int
) -> tuple[np.ndarray, np.ndarray]:
    """Every 10 s window of every clip -> (W, D) and the clip index of each window."""
    out, owner = [], []
    for i, p in enumerate(paths):
        w = _windows(p, sr)
        out.append(np.asarray(embed(w.waves, w.lengths)))
        owner += [i] * len(w.waves)
    return np.concatenate(out), np.asarray(owner)


@functools.cache
def _windows(path: Path, sr: int) -> Windows:
    # Decoding dominates the run time; the bridge and class-match rows reuse the same windows.
    return cut_windows(load_audio(path, sr), sr, WINDOW_S)


def clip_max(window_scores: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """(Q, W) window scores -> (Q, n) clip scores, best window per clip."""
    out = np.full((window_scores.shape[0], n), -np.inf)
    np.maximum.at(out.T, owner, window_scores.T)
    return out


def query_forms(queries: list[str]) -> dict[str, list[str]]:
    return {"raw": queries, "sound of": [f"the sound of {q}" for q in queries]}


def eval_dual(model: DualEncoder, s: EvalSet) -> dict[str, dict[str, float]]:
    sr = model.sample_rate
    audio, owner = embed_clips(lambda w, n: model.encode_audio(w, sr, lengths=n), s.paths, sr)
    rel = s.relevance()
    res = {}
    for form, texts in query_forms(s.queries).items():
        sim = model.encode_text(texts) @ audio.T
        res[form] = metrics(clip_max(sim, owner, len(s.paths)), rel)
    return res


def metrics(sim: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    # R@10 saturates where a query has many relevant clips (ESC-10: 8 of 80), P@10 does not.
    return {**retrieval_metrics(sim, rel), "P@10": precision_at_k(sim, rel, 10)}


def eval_class_match(model: DualEncoder, s: EvalSet) -> dict[str, dict[str, float]]:
    bridge = model.audio_tower.core  # the numpy bridge core inside the torch model
    sr = model.sample_rate

    def probs(waves: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return bridge.tagger.scores(waves, lengths)[0]

    clip_probs, owner = embed_clips(probs, s.paths, sr)
    rel = s.relevance()
    res = {}
    for form, texts in query_forms(s.queries).items():
        with torch.inference_mode():
            q = model.text_tower(**model.text_tower.tokenize(texts))
        # z-scores over this set's windows stand in for a library's statistics.
        sim = class_match_scores(q.numpy(), clip_probs, bridge.prompt_emb)
        res[form] = metrics(clip_max(sim, owner, len(s.paths)), rel)
    return res


def print_table(results: dict[tuple[str, str], dict[str, dict[str, float]]], sets: list[EvalSet]) -> None:
    print(
        "\n| system | queries | "
        + " | ".join(f"{s.name} ({len(s.queries)} q, {len(s.paths)} clips)" for s in sets)
        + " |"
    )
    print("|---|---|" + "---|" * len(sets))
    systems = list(dict.fromkeys(k[0] for k in results))
    for system in systems:
        for form in ("raw", "sound of"):
            cells = []
            for s in sets:
                m = results.get((system, s.name), {}).get(form)
                seen = " (seen)" if (system, s.name) in SEEN else ""
                cells.append(" / ".join(f"{m[k]:.3f}" for k in METRICS) + seen if m else "-")
            print(f"| {system} | {form} | " + " | ".join(cells) + " |")
    print(f"\ncells: {' / '.join(METRICS)}; (seen): the system trained on these queries")


def chance(s: EvalSet) -> dict[str, dict[str, float]]:
    rel = s.relevance()
    m = {**chance_metrics(rel.sum(axis=1).tolist(), len(s.paths)), "P@10": float(rel.mean())}
    return {"raw": m, "sound of": m}


def speed(model: DualEncoder, root: Path, n: int = 64, batch: int = 32) -> None:
    """Clips/s of the model's audio side on 10 s clips, with and without decoding, on this machine."""
    esc = sorted((root / "esc10").glob("*/*.ogg"))[: 2 * n]
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i in range(n):
            a, sr = sf.read(esc[2 * i], dtype="float32")
            b, _ = sf.read(esc[2 * i + 1], dtype="float32")
            path = Path(tmp) / f"clip{i}.ogg"
            sf.write(path, np.concatenate([a, b])[: 10 * sr], sr)  # 10 s at 44.1 kHz
            files.append(path)
        sr = model.sample_rate
        waves = [load_audio(f, sr) for f in files]  # ragged lists are padded by encode_audio
        model.encode_audio(waves[:batch], sr, batch_size=batch)  # warm-up

        def embed() -> None:
            model.encode_audio(waves, sr, batch_size=batch)

        def decode() -> None:
            for f in files:
                load_audio(f, sr)

        def both() -> None:
            for i in range(0, n, batch):
                model.encode_audio([load_audio(f, sr) for f in files[i : i + batch]], sr, batch_size=batch)

        print(
            f"\nspeed, 10 s clips, torch threads {torch.get_num_threads()}, batch {batch}, {n} clips "
            f"(load average {os.getloadavg()[0]:.1f}; CPU s/clip is less sensitive to other load):"
        )
        name = model.config.name
        for label, fn in [
            (f"{name} embed from 16 kHz waveforms", embed),
            ("Ogg 44.1 kHz decode + resample to 16 kHz alone", decode),
            (f"decode + resample + {name} embed", both),
        ]:
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            print(f"  {label}: {n / wall:.1f} clips/s, {1000 * cpu / n:.1f} CPU ms/clip")


def trained_candidates(with_aisfx: bool) -> list[tuple[str, DualEncoder]]:
    """The candidates with trained weights, by their shipped checkpoints; a missing checkpoint is named."""
    out = []
    for name in ("fusion", "aisfx") if with_aisfx else ("fusion",):
        trained = (CHECKPOINTS / name / "config.json").is_file()
        out.append((name if trained else f"{name} (no checkpoint: untrained)", load_model(name)))
    if with_aisfx:
        out.append(("aisfx untrained", reset_projections(DualEncoder(profile("aisfx")), seed=0)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets", nargs="+", default=["esc10-f5", "booth", "0ad-held", "0ad-held-aisfx"], help="sets to evaluate"
    )
    parser.add_argument("--ad-fraction", type=float, default=0.2, help="share of 0ad captions held out")
    parser.add_argument("--ad-seed", type=int, default=0, help="seed of the 0ad caption split")
    parser.add_argument("--no-aisfx", action="store_true", help="skip the 'aisfx' rows (its tower is slow)")
    parser.add_argument("--no-speed", action="store_true", help="skip the speed measurement")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    root = data_root()
    sets = load_sets(root, args.sets, args.ad_fraction, args.ad_seed)
    results: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    bridge = load_model("bridge")
    for s in sets:
        results[("bridge", s.name)] = eval_dual(bridge, s)
        results[("class match", s.name)] = eval_class_match(bridge, s)
    for name, model in trained_candidates(not args.no_aisfx):
        for s in sets:
            results[(name, s.name)] = eval_dual(model, s)
    for s in sets:
        results[("chance", s.name)] = chance(s)
    print_table(results, sets)
    if not args.no_speed:
        speed(load_model("lite"), root)


if __name__ == "__main__":
    main()
