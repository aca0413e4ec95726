"""The slim runtime: inference without torch for models whose towers all have numpy / onnxruntime cores.

Audio: the tower's core (audiosearch.models.towers) and the projection in numpy, from the model's stored weights. Text:
the kind's runtime side, for the transformers towers their ONNX export (models.towers.cores.hf_text_onnx). Vectors equal
the torch model's (the same cores run inside it; the text export is checked against torch to cosine 0.999),
and so does the fingerprint, so an index built by either answers queries from both. `lite` runs here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audiosearch.core.errors import ModelLoadError
from audiosearch.models import provenance
from audiosearch.models.batching import Waveforms, chunks, model_batches
from audiosearch.models.config import ModelConfig
from audiosearch.models.model_dir import ModelSource
from audiosearch.models.projection import projection_from
from audiosearch.models.registry import core_builder
from audiosearch.models.text import check_texts


@dataclass
class TextContext:
    """What a slim text side may need beyond its tower options."""

    name_or_path: str | Path
    fingerprint: str
    weights: dict[str, np.ndarray]
    config: ModelConfig
    onnx_dir: Path | None = None
    threads: int = 0
    directory: Path | None = None  # the model's folder (None: a bare profile), for files it carries


def supports(config: ModelConfig) -> bool:
    """Whether both towers have numpy cores (checked without importing torch)."""
    return core_builder("audio", config.audio.kind) is not None and core_builder("text", config.text.kind) is not None


class SlimEncoder:
    """Same inference API as the torch DualEncoder (audiosearch.models.encoder.Encoder): numpy in, unit vectors out."""

    def __init__(
        self, name_or_path: str | Path, source: ModelSource, onnx_dir: Path | None = None, threads: int = 0
    ) -> None:
        self.config, self.fingerprint = source.config, source.fingerprint
        self.provenance = provenance.of_source(source)
        audio, text = core_builder("audio", self.config.audio.kind), core_builder("text", self.config.text.kind)
        if audio is None or text is None:
            raise ModelLoadError(f"model {self.config.name}: a tower has no numpy core (use the torch model)")
        weights = source.weights()
        self.audio_core = audio(**self.config.audio.options)
        self.audio_proj = projection_from(self.config, "audio", weights, self.audio_core.dim)
        ctx = TextContext(name_or_path, self.fingerprint, weights, self.config, onnx_dir, threads, source.directory)
        self.text_side = text(ctx, **self.config.text.options)

    @property
    def sample_rate(self) -> int:
        return int(self.audio_core.sample_rate)

    @property
    def dim(self) -> int:
        return self.config.embed_dim

    def encode_audio(
        self,
        waveforms: Waveforms,
        sample_rate: int,
        lengths: Sequence[int] | np.ndarray | None = None,
        batch_size: int = 32,
        normalize: bool = True,
    ) -> np.ndarray:
        """Waveforms (B, T) or a list of 1-D arrays at `sample_rate` -> (B, embed_dim) float32 unit vectors
        (`normalize=False`: before normalisation, for audiosearch.models.aggregate)."""
        crop = self.audio_core.crops_padding
        batches = model_batches(waveforms, sample_rate, lengths, self.sample_rate, batch_size, crop)
        return np.concatenate([self.audio_proj(self.audio_core(waves, lens), normalize) for waves, lens in batches])

    def encode_text(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Captions or queries -> (B, embed_dim) float32 unit vectors."""
        texts = check_texts(texts)
        return np.concatenate([self.text_side.encode(texts[r]) for r in chunks(len(texts), batch_size)])
