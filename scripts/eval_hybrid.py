"""Hybrid search held out: audio, text and hybrid ranking of real libraries whose files keep their names, are
renamed to content hashes, or half and half; the fusion weights and the "no close match" thresholds are tuned
on dev sets and reported on others.

Sets (../shared/data or $AUDIOSEARCH_DATA; splits as scripts/train_fusion.py makes them, so `lite` never
trained on any of them):
  dev (tuning)  esc10-f4 (ESC-10 fold 4, 80 clips) and 0ad-val (69 clips): lite's early-stopping sets;
  report        esc10-f5 (ESC-10 fold 5, 80 clips), 0ad-held (177 clips, no interface cues) and booth/
                (223 clips; evaluation only, never tuned on).
Each set becomes a library per naming: `real` (the set's own folders and names, e.g. dog_bark/1-100032-A.ogg,
actor/fauna/animal/camel_10.ogg), `hash` (<sha1 of the content>.ogg, no folders), `half` (a random half keeps
its real path, the rest is hashed; seeds 0..S-1, averaged) and `wrong` (every file carries another file's real
path: names that lie, shown for honesty, never tuned on). Libraries are indexed by the real indexer
(`build_index`, the audio embedded once per set and reused from the cache); every figure comes from
`Searcher.search` with k=10, each unique caption a query ("raw" form, as the service gets it).

"No close match": a query's best score is a positive when that file is relevant, and the same query with its
relevant files removed from the library gives a negative (the library lacks the sound); a threshold is judged
by balanced accuracy (mean of positives kept and negatives flagged).
Tuning (--tune; its result is what indexer.search.fusion.FUSION ships): the audio threshold is the one with the best
balanced accuracy on the dev sets; hybrid scores are in the same units and keep it. Then a grid over FusionParams
(alpha, beta, tau) maximises, on the dev sets' real and half namings, ranking quality (mean of 0ad-val mAP@10
and esc10-f4 P@10; ESC-10's mAP@10 is 1.0 for audio alone) plus the hybrid score's balanced accuracy at that
threshold. The text threshold is then fitted alike on text-only scores.
Usage: nice python scripts/eval_hybrid.py [--work /tmp/eval-hybrid] [--seeds 20] [--tune] [--csv]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import logging
import os
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from audiosearch.indexer import IndexOptions, Searcher, build_index  # noqa: E402
from audiosearch.indexer.search.fusion import FUSION, MODES, FusionParams, HybridRanker  # noqa: E402
from audiosearch.models import load_encoder  # noqa: E402
from audiosearch.training.data import CaptionRow, caption_group, group_split, load_caption_csv, split_rows  # noqa: E402
from audiosearch.training.metrics import precision_at_k, retrieval_metrics  # noqa: E402

log = logging.getLogger("eval_hybrid")
DEV, REPORT = ("esc10-f4", "0ad-val"), ("esc10-f5", "0ad-held", "booth")
METRICS = ("mAP@10", "R@1", "R@5", "R@10", "P@10")
GRID = {
    "alpha": (0.5, 0.8, 1.2, 1.6, 2.0, 3.0),
    "beta": (0.0, 0.1, 0.25, 0.5, 1.0),
    "tau": (0.3, 0.35, 0.4, 0.45, 0.5, 0.6),
}


@dataclass
class Library:
    set_name: str
    naming: str
    index: Path
    captions: dict[str, str]  # library path -> caption


@dataclass
class Signals:
    """Whole-library signals of one library: (Q, N) arrays over its files, and the relevance."""

    queries: list[str]
    audio: np.ndarray
    text: np.ndarray
    lexical: np.ndarray
    relevant: np.ndarray


def load_sets(root: Path) -> dict[str, list[CaptionRow]]:
    esc = load_caption_csv(root / "esc10" / "captions.csv")
    oad = load_caption_csv(root / "0ad" / "captions.csv")
    sounds = [r for r in oad if not r.meta["category"].startswith("interface/")]
    held_eval = group_split(sounds, caption_group, 0.2, seed=0)[1]
    held_aisfx = group_split(oad, caption_group, 0.2, seed=0)[1]
    held = {caption_group(r) for r in held_eval + held_aisfx}
    oad_rest, _ = split_rows(oad, lambda r: caption_group(r) in held)
    return {
        "esc10-f4": [r for r in esc if r.meta["fold"] == "4"],
        "0ad-val": group_split(oad_rest, caption_group, 0.15, seed=1)[1],
        "esc10-f5": [r for r in esc if r.meta["fold"] == "5"],
        "0ad-held": held_eval,
        "booth": load_caption_csv(root / "booth" / "labels.csv", caption_column="label"),
    }


def namings(seeds: int) -> list[str]:
    return ["real", "hash", *[f"half-{s}" for s in range(seeds)], "wrong"]


def library_paths(rows: list[CaptionRow], naming: str) -> dict[str, CaptionRow]:
    """Library path -> row. `real` keeps the path below the set's folder."""
    clips = sorted({r.clip_id: r for r in rows}.values(), key=lambda r: r.clip_id)
    real = [r.clip_id.split("/", 1)[1] for r in clips]
    hashed = [hashlib.sha1(r.path.read_bytes()).hexdigest() + r.path.suffix for r in clips]
    if naming == "real":
        names = real
    elif naming == "hash":
        names = hashed
    elif naming == "wrong":
        shift = random.Random(0).randrange(1, len(clips))  # a rotation: every file gets another's name
        names = [real[(i + shift) % len(clips)] for i in range(len(clips))]
    else:
        keep = set(random.Random(int(naming.split("-")[1])).sample(range(len(clips)), len(clips) // 2))
        names = [real[i] if i in keep else hashed[i] for i in range(len(clips))]
    return dict(zip(names, clips, strict=True))


def build_libraries(sets: dict[str, list[CaptionRow]], work: Path, model, seeds: int) -> Iterator[Library]:  # noqa: ANN001
    for name, rows in sets.items():
        seed_cache = None
        for naming in namings(seeds):
            lib, idx = work / name / naming / "lib", work / name / naming / "idx"
            paths = library_paths(rows, naming)
            if not idx.is_dir():
                shutil.rmtree(lib, ignore_errors=True)
                for rel, row in paths.items():
                    (lib / rel).parent.mkdir(parents=True, exist_ok=True)
                    _link(row.path, lib / rel)
                if seed_cache is not None:  # same contents: the audio is embedded once per set
                    (idx / "work").mkdir(parents=True)
                    shutil.copy(seed_cache, idx / "work" / "cache.sqlite")
                build_index(lib, idx, model, IndexOptions(workers=0, progress=False))
            seed_cache = idx / "work" / "cache.sqlite"
            yield Library(name, naming, idx, {p: r.caption for p, r in paths.items()})


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy(src, dst)


def whole_signals(lib: Library, model) -> Signals:  # noqa: ANN001
    searcher = Searcher(lib.index)
    ranker = HybridRanker(searcher.audio)
    rows = searcher.reader.files(searcher.reader.file_ids(), _no_filters())  # ids are stable, not 1..n
    ids, paths = list(rows), [rows[i][0] for i in rows]
    queries = sorted(set(lib.captions.values()))
    vecs = model.encode_text(queries)
    per_query = [ranker.signals(v, q, ids) for v, q in zip(vecs, queries, strict=True)]
    audio, text, lexical = (np.stack([p[j] for p in per_query]) for j in range(3))
    caps = np.array([lib.captions[p] for p in paths], dtype=object)
    relevant = np.stack([caps == q for q in queries])
    searcher.close()
    return Signals(queries, audio, text, lexical, relevant)


def _no_filters():  # noqa: ANN202
    from audiosearch.indexer import Filters

    return Filters()


def metrics(sim: np.ndarray, rel: np.ndarray) -> dict[str, float]:
    return {**retrieval_metrics(sim, rel), "P@10": precision_at_k(sim, rel, 10)}


def mode_scores(s: Signals, mode: str, params: FusionParams) -> np.ndarray:
    return params.score(mode, s.audio, s.text, s.lexical)


def served_metrics(lib: Library, model, mode: str, params: FusionParams) -> dict[str, float]:  # noqa: ANN001
    """Metrics of the pages Searcher.search returns (k=10): what a user of the service gets. A query whose
    relevant files are not on its page scores 0 (mAP@10 and R@k count the first relevant hit's rank)."""
    searcher = Searcher(lib.index)
    searcher.fusion = params
    queries = sorted(set(lib.captions.values()))
    pages = searcher.search(model.encode_text(queries), k=10, texts=queries, mode=mode)
    searcher.close()
    out = {k: 0.0 for k in METRICS}
    for q, page in zip(queries, pages, strict=True):
        hits = [lib.captions[h.path] == q for h in page.hits]
        first = hits.index(True) + 1 if True in hits else None
        out["mAP@10"] += 1 / first if first else 0.0
        for k in (1, 5, 10):
            out[f"R@{k}"] += float(first is not None and first <= k)
        out["P@10"] += sum(hits) / 10
    return {k: v / len(queries) for k, v in out.items()}


def tune(dev: dict[tuple[str, str], Signals]) -> FusionParams:
    """Thresholds and weights from the dev sets: the audio threshold first (names play no part in it), then the
    weights that maximise ranking quality plus how well the hybrid score, held to that same threshold,
    tells present sounds from absent ones (so a score means the same whatever the naming)."""
    audio_t = _threshold(dev, "audio", FUSION, ("hash",))
    best, best_crit = FUSION, -1.0
    for alpha, beta, tau in itertools.product(*GRID.values()):
        params = dataclasses.replace(FUSION, alpha=alpha, beta=beta, tau=tau)
        ranking = _objective(dev, params)
        detection = float(np.mean([_accuracy(dev, "hybrid", params, audio_t, (n,)) for n in ("real", "half")]))
        log.info("alpha %.2f beta %.2f tau %.2f: ranking %.4f, detection %.3f", alpha, beta, tau, ranking, detection)
        if ranking + detection > best_crit + 1e-9:
            best, best_crit = params, ranking + detection
    text_t = _threshold(dev, "text", best, ("real", "half"))
    best = dataclasses.replace(best, min_score={"hybrid": audio_t, "audio": audio_t, "text": text_t})
    print(f"\ntuned on {', '.join(DEV)}: alpha {best.alpha}, beta {best.beta}, tau {best.tau}, thresholds "
          f"{best.min_score} (criterion {best_crit:.4f}); shipped: alpha {FUSION.alpha}, beta {FUSION.beta}, "
          f"tau {FUSION.tau}, thresholds {FUSION.min_score}")  # fmt: skip
    return best


def _objective(dev: dict[tuple[str, str], Signals], params: FusionParams) -> float:
    """Mean over dev sets and their real and half namings of 0ad mAP@10 and ESC-10 P@10."""
    values: dict[tuple[str, str], list[float]] = {}
    for (name, naming), s in dev.items():
        if _kind(naming) not in ("real", "half"):
            continue
        m = metrics(mode_scores(s, "hybrid", params), s.relevant)
        values.setdefault((name, _kind(naming)), []).append(m["P@10"] if name.startswith("esc10") else m["mAP@10"])
    return float(np.mean([np.mean(v) for v in values.values()]))  # the halves' seeds count as one


def _kind(naming: str) -> str:
    return naming.split("-")[0]  # half-3 -> half


def close_match_samples(s: Signals, mode: str, params: FusionParams) -> tuple[np.ndarray, np.ndarray]:
    """Top scores of queries whose top hit is relevant (positives), and of the same queries with their relevant
    files removed from the library (negatives: the library lacks the sound)."""
    scores = mode_scores(s, mode, params)
    if mode == "text":  # text search ranks files that have words only
        scores = np.where(s.text != 0, scores, -np.inf)
    top = scores.argmax(axis=1)
    hit = s.relevant[np.arange(len(top)), top] & np.isfinite(scores.max(axis=1))
    pos = scores.max(axis=1)[hit]
    neg = np.where(s.relevant, -np.inf, scores).max(axis=1)
    return pos, neg[np.isfinite(neg)]


def _samples(sigs: dict[tuple[str, str], Signals], mode: str, params: FusionParams, kinds: tuple[str, ...]):  # noqa: ANN202
    pairs = [close_match_samples(s, mode, params) for (_, n), s in sigs.items() if _kind(n) in kinds]
    return np.concatenate([p for p, _ in pairs]), np.concatenate([n for _, n in pairs])


def _threshold(sigs: dict, mode: str, params: FusionParams, kinds: tuple[str, ...]) -> float:
    pos, neg = _samples(sigs, mode, params, kinds)
    cands = np.unique(np.concatenate([pos, neg]))
    return round(float(max(cands, key=lambda t: _balanced(pos, neg, t))), 3)


def _accuracy(sigs: dict, mode: str, params: FusionParams, t: float, kinds: tuple[str, ...]) -> float:
    return _balanced(*_samples(sigs, mode, params, kinds), t)


def _balanced(pos: np.ndarray, neg: np.ndarray, t: float) -> float:
    """Balanced accuracy of "close match iff top score >= t": mean of the positives kept and negatives flagged."""
    return 0.5 * (float((pos >= t).mean()) + float((neg < t).mean()))


def print_table(rows: dict[tuple[str, str, str], dict[str, float]], sets: list[str], seeds: int) -> None:
    print("\n| naming | mode | " + " | ".join(sets) + " |")
    print("|---|---|" + "---|" * len(sets))
    for naming in ("real", "half", "hash", "wrong"):
        for mode in ("audio", "text", "hybrid"):
            cells = []
            for name in sets:
                m = rows.get((name, naming, mode))
                cells.append(" / ".join(f"{m[k]:.3f}" for k in METRICS) if m else "-")
            print(f"| {naming} | {mode} | " + " | ".join(cells) + " |")
    print(f"\ncells: {' / '.join(METRICS)}; half: mean of {seeds} random halves")


def ablations(sigs: dict[tuple[str, str], Signals], params: FusionParams) -> None:
    """Other fusions on the report sets' whole-library signals (mAP@10; ESC-10: P@10), by naming."""
    variants = {
        "audio": lambda s: s.audio,
        "hybrid (shipped)": lambda s: mode_scores(s, "hybrid", params),
        "hybrid, text vector only (beta 0)": lambda s: mode_scores(s, "hybrid", dataclasses.replace(params, beta=0)),
        "hybrid, BM25 only (alpha 0)": lambda s: mode_scores(s, "hybrid", dataclasses.replace(params, alpha=0)),
        "hybrid, no tau (tau 0)": lambda s: mode_scores(s, "hybrid", dataclasses.replace(params, tau=0.0)),
        "reciprocal rank fusion (k 60)": lambda s: _rrf(s, params),
    }
    print("\nablations on report sets (mAP@10; ESC-10: P@10), whole-library signals:")
    print("| fusion | " + " | ".join(f"{n} {k}" for n in REPORT for k in ("real", "half", "hash")) + " |")
    print("|---|" + "---|" * (3 * len(REPORT)))
    for label, fn in variants.items():
        cells = []
        for name in REPORT:
            for kind in ("real", "half", "hash"):
                vals = [metrics(fn(s), s.relevant) for (n, nm), s in sigs.items() if n == name and _kind(nm) == kind]
                key = "P@10" if name.startswith("esc10") else "mAP@10"
                cells.append(f"{np.mean([v[key] for v in vals]):.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def _rrf(s: Signals, params: FusionParams, k: int = 60) -> np.ndarray:
    """1/(k + audio rank) + 1/(k + text rank), the text rank only for files with words."""
    audio_rank = np.argsort(np.argsort(-s.audio, axis=1), axis=1) + 1
    ev = np.where(s.text != 0, params.evidence(s.text, s.lexical), -np.inf)
    text_rank = np.argsort(np.argsort(-ev, axis=1), axis=1) + 1
    return 1.0 / (k + audio_rank) + np.where(np.isfinite(ev), 1.0 / (k + text_rank), 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/eval-hybrid"), help="libraries and indexes")
    parser.add_argument("--seeds", type=int, default=20, help="random halves per set (5 moved booth/ by 0.01)")
    parser.add_argument("--tune", action="store_true", help="grid-search the weights on the dev sets and use them")
    parser.add_argument("--csv", action="store_true", help="append the figures to bench/results/hybrid.csv")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    root = Path(os.environ.get("AUDIOSEARCH_DATA", REPO.parent / "shared" / "data"))
    model = load_encoder("lite")
    libs = list(build_libraries(load_sets(root), args.work, model, args.seeds))
    dev = {(lib.set_name, lib.naming): whole_signals(lib, model) for lib in libs if lib.set_name in DEV}
    params = tune(dev) if args.tune else FUSION
    report(libs, model, params, args)


def report(libs: list[Library], model, params: FusionParams, args: argparse.Namespace) -> None:  # noqa: ANN001
    rows: dict[tuple[str, str, str], dict[str, float]] = {}
    sigs = {}
    for lib in libs:
        naming = "half" if lib.naming.startswith("half") else lib.naming
        for mode in ("audio", "text", "hybrid"):
            m = served_metrics(lib, model, mode, params)
            acc = rows.setdefault((lib.set_name, naming, mode), {k: 0.0 for k in METRICS})
            weight = 1 / args.seeds if naming == "half" else 1.0
            for k in METRICS:
                acc[k] += weight * m[k]
        if lib.set_name in REPORT:
            sigs[(lib.set_name, lib.naming)] = whole_signals(lib, model)
    sets = [*DEV, *REPORT]
    print_table(rows, sets, args.seeds)
    ablations(sigs, params)
    print("\nno close match on report sets, balanced accuracy (relevant tops kept / absent sounds flagged):")
    for mode in MODES:
        t = params.min_score[mode]
        for kind in ("real", "half", "hash"):
            if mode == "text" and kind == "hash":
                continue
            pos, neg = _samples(sigs, mode, params, (kind,))
            print(f"  {mode}, {kind} names, threshold {t}: {_balanced(pos, neg, t):.3f} "
                  f"({(pos >= t).mean():.2f} of {len(pos)} / {(neg < t).mean():.2f} of {len(neg)})")  # fmt: skip
    if args.csv:
        from bench.common import append_csv

        out = [{"set": s, "naming": n, "mode": m, **{k: round(v, 4) for k, v in vals.items()},
                "alpha": params.alpha, "beta": params.beta, "tau": params.tau, "load_avg": round(os.getloadavg()[0], 2)}
               for (s, n, m), vals in rows.items()]  # fmt: skip
        print(f"appended to {append_csv('hybrid', out)}")


if __name__ == "__main__":
    main()
