"""ONNX export of the audio side (front end + tower + projection + normalisation) and an onnxruntime runner.

For the towers that run in torch (PaSST, aiSFX); YAMNet already runs in onnxruntime. The graph takes the
padded waveforms (B, T) at the tower's rate and the real lengths (B,), the same inputs as
`DualEncoder.embed_audio`, with batch and length dynamic. bench/onnx_audio.py measures whether it pays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.dual_encoder import DualEncoder
from models.errors import ModelLoadError

GRAPH, META = "audio.onnx", "export_audio.json"
ENV = "AUDIOSEARCH_ONNX_DIR"
MIN_SECONDS, MAX_SECONDS = 1.0, 30.0  # the exported length range; the indexer's windows are 10 s


# Towers whose export is worth using (bench/onnx_audio.py on the 2-core development machine, README
# "Performance"): aiSFX's CNN runs 1.9x (batch 16) to 3.6x (batch 1) faster in onnxruntime. PaSST gains 2.3x
# at batch 1 but none at 16, and the indexer embeds in batches of 32; YAMNet runs in onnxruntime already.
WIRED_TOWERS = frozenset({"aisfx"})


def check_exportable(model: DualEncoder) -> None:
    kind = model.config.audio.kind
    if kind not in WIRED_TOWERS:
        raise ModelLoadError(
            f"the {kind!r} audio tower has no ONNX path: only {', '.join(sorted(WIRED_TOWERS))} gain from one "
            "(YAMNet already runs in onnxruntime; PaSST measured no faster at indexing batch sizes, "
            "see bench/onnx_audio.py)"
        )


class _AudioGraph(nn.Module):
    def __init__(self, model: DualEncoder) -> None:
        super().__init__()
        self.model = model

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.model.embed_audio(waveforms, lengths)


def export_audio_onnx(model: DualEncoder, out_dir: str | Path, seconds: float = 10.0) -> Path:
    """Trace with a 2-row batch of `seconds` of noise; the exported graph accepts 1..1024 rows, 1..30 s."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = model.sample_rate
    n = int(seconds * sr)
    wave = torch.randn(2, n, generator=torch.Generator().manual_seed(0)) * 0.1
    lengths = torch.tensor([n, n // 2], dtype=torch.int64)
    batch = torch.export.Dim("batch", min=1, max=1024)
    # PaSST's patch grid branches on the input width, which torch.export cannot keep symbolic: its graph
    # is fixed at `seconds` (the length it was trained on). Towers that crop padding get any length.
    fixed = not model.audio_tower.crops_padding
    samples = None if fixed else torch.export.Dim("samples", min=int(MIN_SECONDS * sr), max=int(MAX_SECONDS * sr))
    with torch.no_grad():
        torch.onnx.export(
            _AudioGraph(model.cpu()).eval(),
            (wave, lengths),
            str(out / GRAPH),
            input_names=["waveforms", "lengths"],
            output_names=["audio_vector"],
            dynamic_shapes={"waveforms": {0: batch, 1: samples} if samples else {0: batch}, "lengths": {0: batch}},
            dynamo=True,
            external_data=False,
        )
    meta = {
        "fingerprint": model.fingerprint,
        "dim": model.config.embed_dim,
        "sample_rate": sr,
        "samples": n if fixed else None,
    }
    (out / META).write_text(json.dumps(meta))
    return out


class OnnxAudioEncoder:
    """Runs an exported audio graph on waveforms already at the model's rate and padded to one width."""

    def __init__(self, directory: str | Path, model: DualEncoder, threads: int | None = None) -> None:
        self._open(Path(directory), model.fingerprint, threads)

    def _open(self, directory: Path, fingerprint: str, threads: int | None) -> None:
        import onnxruntime as ort

        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ModelLoadError(f"{directory}: not an ONNX audio export ({err})") from None
        if meta.get("fingerprint") != fingerprint:
            raise ModelLoadError(
                f"{directory}: audio exported from model {meta.get('fingerprint')}, not {fingerprint}; export again"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or (os.cpu_count() or 1)
        opts.inter_op_num_threads = 1
        # Idle workers would spin for the next call, taking the CPU from the indexer's decode thread.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(directory / GRAPH), opts, providers=["CPUExecutionProvider"])
        # The exporter drops inputs the graph never reads (PaSST ignores lengths), so feed only declared ones.
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.sample_rate = int(meta["sample_rate"])
        self.samples: int | None = meta.get("samples")
        self._args = (str(directory), fingerprint, threads)

    def __reduce__(self) -> tuple:
        # A session cannot be pickled or deep-copied (Ray workers, model copies): reopen the file instead.
        return (_reopen, self._args)

    def accepts(self, width: int) -> bool:
        """Whether a batch padded to `width` samples fits the graph (a fixed-length one takes only its own)."""
        if self.samples is not None:
            return width == self.samples
        return MIN_SECONDS * self.sample_rate <= width <= MAX_SECONDS * self.sample_rate

    def embed(self, waveforms: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(B, T) float32 at `sample_rate`, (B,) real lengths -> (B, dim) unit vectors."""
        feeds = {
            "waveforms": np.ascontiguousarray(waveforms, dtype=np.float32),
            "lengths": np.asarray(lengths, dtype=np.int64),
        }
        feeds = {k: v for k, v in feeds.items() if k in self.inputs}
        return self.session.run(["audio_vector"], feeds)[0].astype(np.float32)


def _reopen(directory: str, fingerprint: str, threads: int | None) -> OnnxAudioEncoder:
    enc = OnnxAudioEncoder.__new__(OnnxAudioEncoder)
    enc._open(Path(directory), fingerprint, threads)
    return enc


def attach_audio_onnx(model: DualEncoder, directory: str | Path | None = None) -> bool:
    """Route `model.encode_audio` through `directory`'s audio export, if it has one; True if attached.

    The default directory is $AUDIOSEARCH_ONNX_DIR, the variable that gives the service its text export, so one
    `export-onnx --audio` directory serves both sides and `audiosearch index` picks the audio graph up too.
    A directory with only a text export is left alone; one exported from another model is refused.
    """
    directory = directory or os.environ.get(ENV)
    if not directory or not (Path(directory) / META).is_file():
        return False
    model.audio_runtime = OnnxAudioEncoder(directory, model)
    return True
