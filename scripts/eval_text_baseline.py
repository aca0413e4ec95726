"""Text-only baseline for the model card: rank clips by MiniLM similarity of the query to the clip's file name.

No audio is heard. Each clip becomes the text of its file name: the path stem with separators ('_', '-',
'.'), camelCase boundaries and digit runs turned into spaces ('compressedAirSpray01' -> 'compressed air
spray 01', 'camel_10' -> 'camel 10'). A query is ranked against those texts by the cosine of their MiniLM
embeddings (the `lite` profile's text tower), on the same held-out sets, query forms and metrics as
scripts/eval_bridge.py (esc10-f5, booth, 0ad-held; mAP@10, R@1, R@5, R@10, P@10).

It tells what a search over file names alone would give: a system that hears the audio should beat it
wherever names are uninformative (ESC-10's numeric ids) and has to match it where names carry the label
(0 A.D., whose captions were written from the file names).
Usage: nice python scripts/eval_text_baseline.py [--sets esc10-f5 booth 0ad-held] [--with-folders]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from eval_bridge import EvalSet, chance, data_root, load_sets, metrics, print_table, query_forms  # noqa: E402

from audiosearch.models.dual_encoder import DualEncoder  # noqa: E402
from audiosearch.models.profiles import profile  # noqa: E402

log = logging.getLogger("eval_text_baseline")


def name_text(path: Path, root: Path | None = None) -> str:
    """File name as words; with `root`, the folders below it too ('dog_bark/1-100032-A.ogg')."""
    parts = list(path.relative_to(root).with_suffix("").parts) if root is not None else [path.stem]
    text = " ".join(parts)
    text = re.sub(r"([a-z])([A-Z])", r"\1 \2", text)  # camelCase boundaries
    text = re.sub(r"(\d+)", r" \1 ", text)  # digit runs are separate tokens
    text = re.sub(r"[_\-.\s]+", " ", text)
    return text.strip().lower() or path.stem


def eval_names(model: DualEncoder, s: EvalSet, root: Path | None) -> dict[str, dict[str, float]]:
    clips = model.encode_text([name_text(p, root) for p in s.paths])  # (N, D), unit norm
    rel = s.relevance()
    return {form: metrics(model.encode_text(q) @ clips.T, rel) for form, q in query_forms(s.queries).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["esc10-f5", "booth", "0ad-held"], help="sets to evaluate")
    parser.add_argument("--ad-fraction", type=float, default=0.2, help="share of 0ad captions held out")
    parser.add_argument("--ad-seed", type=int, default=0, help="seed of the 0ad caption split")
    parser.add_argument(
        "--with-folders",
        action="store_true",
        help="also a row for the path below the set's folder (folders often name the class)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    root = data_root()
    sets = load_sets(root, args.sets, args.ad_fraction, args.ad_seed)
    model = DualEncoder(profile("lite"))  # only its MiniLM text tower is used: nothing trained, nothing heard
    results: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for s in sets:
        results[("file name (MiniLM)", s.name)] = eval_names(model, s, None)
        if args.with_folders:
            set_root = root / s.paths[0].relative_to(root).parts[0]
            results[("folders + file name (MiniLM)", s.name)] = eval_names(model, s, set_root)
        results[("chance", s.name)] = chance(s)
    for s in sets:
        print(f"{s.name}: e.g. {s.paths[0].name} -> {name_text(s.paths[0])!r}")
    print_table(results, sets)


if __name__ == "__main__":
    main()
