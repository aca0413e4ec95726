"""The `audiosearch` command line's arguments: one function per command (`*_args`); app.cli pairs each with what
it runs in its one table of commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Command:
    """One `audiosearch` command: its arguments (a function of this module) and what runs it (app.cli)."""

    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    help: str


def build_parser(commands: Mapping[str, Command]) -> argparse.ArgumentParser:
    """The `audiosearch` parser over app.cli's table of commands."""
    p = argparse.ArgumentParser(prog="audiosearch", description="Text-to-audio retrieval: index, search, serve.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, command in commands.items():
        cmd = sub.add_parser(name, help=command.help)
        command.add_args(cmd)
        cmd.set_defaults(handler=command.run)
    return p


def _model_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="lite", help="a profile (lite, fusion, bridge, aisfx, paper) or a model directory"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the model runs")


def _onnx_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--onnx",
        type=Path,
        default=None,
        help="an export-onnx directory for both sides (text export for queries, --audio export for audio); "
        "default $AUDIOSEARCH_ONNX_DIR",
    )


def _untrained_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-untrained",
        action="store_true",
        help="use a model with random (never trained or loaded) parts, e.g. the bare paper profile (benchmarks)",
    )


def index_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("audio_dir", type=Path, help="library root; searched recursively for audio files")
    p.add_argument("--index", type=Path, required=True, help="index directory (created if missing)")
    _model_arg(p)
    _onnx_arg(p)
    _untrained_arg(p)
    p.add_argument("--batch-size", type=int, default=32, help="windows per model forward")
    p.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="decoding processes (default: one per core; 0: decode in-process)",
    )
    p.add_argument("--window", type=float, default=None, help="window length in seconds (default: model's, 10)")
    p.add_argument("--hop", type=float, default=None, help="hop between windows in seconds (default: window)")
    p.add_argument(
        "--faiss",
        default="auto",
        help="auto (default): Flat up to $AUDIOSEARCH_INDEX_FLAT_MAX_WINDOWS windows (250000), else IVF-PQ codes "
        "within --memory-budget, re-ranked exactly from the full vectors on disk; or a FAISS index_factory string, "
        "e.g. Flat, HNSW32, IVF1024,PQ32",
    )
    p.add_argument(
        "--memory-budget",
        default=None,
        metavar="BYTES",
        help="RAM the search index may take with --faiss auto, e.g. 8GB or 512MiB (default "
        "$AUDIOSEARCH_INDEX_MEMORY, else 8GiB)",
    )
    p.add_argument("--strict", action="store_true", help="fail (exit 1) if any file cannot be indexed")
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="decode again the files that failed to decode before (else an unchanged failed file is skipped "
        "with its earlier reason)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or info logs")
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="decode and embed on Ray: a cluster's HOST:PORT or ray://HOST:PORT, or none for $RAY_ADDRESS, "
        "a running local cluster or a new local one (needs audiosearch[ray]; put it after AUDIO_DIR)",
    )


SEARCH_EPILOG = """Output: one JSON document shaped like the HTTP API's SearchResponse (GET /search):
{"query", "results": [{"id", "path", "score", "relevance", "start", "end", "duration", "audio_url", "evidence",
"windows"}], "total", "took_ms", "mode", "min_score", "no_close_match"}; audio_url is the clip's path on a server of
the same index.
--like ranks like GET /clips/{id}/similar: the clip first, then the files that sound closest (query "<like:PATH>")."""


def search_args(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = SEARCH_EPILOG
    p.add_argument("query", nargs="?", help="text query, e.g. 'a dog barking' (or --like)")
    p.add_argument(
        "--like",
        metavar="PATH_OR_ID",
        help="more like this indexed file instead of a text query: its id (an integer, as in results) or its path "
        "in the library, as results print it; ranked by audio from the stored vectors (no model loads)",
    )
    p.add_argument(
        "--start",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --like: query with the window at this moment (default: the mean of the file's windows)",
    )
    p.add_argument("--index", type=Path, required=True, help="index directory")
    p.add_argument("-k", type=int, default=10, help="number of files to return, 1-100 (as HTTP)")
    p.add_argument("--offset", type=int, default=0, help="skip this many files first, 0-10000 (a later page)")
    p.add_argument(
        "--mode",
        default=None,
        choices=["hybrid", "audio", "text"],
        help="hybrid (default for text): the audio and the library's words (file names, folders, tags); audio or "
        "text alone; --like ranks by audio only",
    )
    p.add_argument(
        "--min-score",
        type=float,
        default=None,
        help="flag no_close_match below this best score (default: the mode's calibrated threshold)",
    )
    _model_arg(p)
    _onnx_arg(p)
    _untrained_arg(p)
    p.add_argument("--quiet", action="store_true", help="no info logs")


def _address_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every interface)",
    )
    p.add_argument("--port", type=int, default=8000, help="1-65535 (default 8000); 0 picks a free port and prints it")


def serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, required=True, help="index directory (built by `audiosearch index`)")
    _address_args(p)
    _model_arg(p)
    _onnx_arg(p)
    _untrained_arg(p)
    p.add_argument(
        "--ray",
        nargs="?",
        const="",
        default=None,
        metavar="ADDRESS",
        help="serve on Ray (docs/serving-on-ray.md): join the cluster at HOST:PORT, ray://HOST:PORT or 'auto', or "
        "without ADDRESS start a local Ray instance; the index must be on storage every node reads at the same path "
        "(needs audiosearch[ray])",
    )
    p.add_argument(
        "--replicas",
        type=int,
        default=None,
        metavar="N",
        help="with --ray: N ingress processes on the port, each the whole HTTP service (default 1)",
    )
    p.add_argument(
        "--shards",
        type=int,
        default=None,
        metavar="M",
        help="with --ray: split the index's vectors over M shard actors, each holding 1/M (default 1; more than one "
        "needs a Flat index)",
    )


def eval_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    _onnx_arg(p)
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="caption CSV with a path column, optionally ':column' for the caption column "
        "(e.g. booth/labels.csv:label); repeat for several sets",
    )
    p.add_argument(
        "--audio-root", type=Path, default=None, help="audio paths are relative to this (default: the CSV's folder)"
    )
    p.add_argument("--query-prefix", default="", help="prepended to every caption, e.g. 'the sound of '")
    p.add_argument("--quiet", action="store_true")


def train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="run config; paths in it are relative to the file (README: Training)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress logs")


def export_args(p: argparse.ArgumentParser) -> None:
    _model_arg(p)
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="directory for text.onnx, tokenizer.json and export.json")
    where.add_argument(
        "--cache",
        action="store_true",
        help="into the export cache ($AUDIOSEARCH_ONNX_CACHE, default ~/.cache/audiosearch/onnx), where the "
        "slim runtime looks (a Docker build stage does this)",
    )
    p.add_argument(
        "--audio",
        action="store_true",
        help="also export the audio tower (aisfx: ~3x faster indexing on CPU); `index` and `serve` use it "
        "when --onnx or AUDIOSEARCH_ONNX_DIR names the directory",
    )


def import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", type=Path, help="the published .ckpt file (README: Using the paper model)")
    p.add_argument(
        "--format",
        required=True,
        choices=["dcase2025", "salsa"],
        help="dcase2025: CPJKU/dcase2025_task6_baseline; salsa: OptimusPrimus/salsa passt_roberta",
    )
    p.add_argument("--out", type=Path, required=True, help="model directory to write (use it as --model DIR)")
    p.add_argument(
        "--tokenizer",
        default="roberta-large",
        help="roberta-large's tokenizer: hub name or a local folder (copied into the model directory)",
    )


def demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--index", type=Path, default=Path("demo-index"), help="where to build the demo index")
    _address_args(p)
    p.add_argument("--no-serve", action="store_true", help="build the index and exit")
    p.set_defaults(model="lite", device="auto", quiet=False)
