"""The audio side (front end + tower + projection + normalisation) in onnxruntime, for towers that run in torch.

Exports come from audiosearch.models.onnx.export (PaSST, aiSFX); YAMNet runs in onnxruntime already. The graph takes the
padded waveforms (B, T) at the tower's rate and the real lengths (B,), the same inputs as
`DualEncoder.embed_audio`, with batch and length dynamic. bench/onnx_audio.py measures whether it pays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from audiosearch.core.errors import ModelLoadError

if TYPE_CHECKING:
    from audiosearch.models.dual_encoder import DualEncoder

GRAPH, META = "audio.onnx", "export_audio.json"
MIN_SECONDS, MAX_SECONDS = 1.0, 30.0  # the exported length range; the indexer's windows are 10 s


# Towers whose export is worth using (bench/onnx_audio.py measures it): aiSFX's CNN is faster in onnxruntime
# at every batch size; PaSST gains only at batch 1, where the indexer embeds in batches; YAMNet runs in
# onnxruntime already.
WIRED_TOWERS = frozenset({"aisfx"})


class OnnxAudioSide:
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


def _reopen(directory: str, fingerprint: str, threads: int | None) -> OnnxAudioSide:
    enc = OnnxAudioSide.__new__(OnnxAudioSide)
    enc._open(Path(directory), fingerprint, threads)
    return enc


def attach_audio_onnx(model: DualEncoder, directory: str | Path | None) -> bool:
    """Route `model.encode_audio` through `directory`'s audio export, if it has one; True if attached.

    The directory is the ONNX setting (`--onnx` / $AUDIOSEARCH_ONNX_DIR) that also gives the text export, so one
    `export-onnx --audio` directory serves both sides. A directory with only a text export is left alone; one
    exported from another model is refused.
    """
    if not directory or not (Path(directory) / META).is_file():
        return False
    model.audio_onnx = OnnxAudioSide(directory, model)
    return True
