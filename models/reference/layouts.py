"""The published checkpoints' state-dict layouts, mapped onto the `paper` DualEncoder, and the config they import as.

Both are PyTorch Lightning checkpoints of PaSST-S (`passt_s_p16_s16_128_ap468`, no patch overlap) + RoBERTa-large
(no pooler) + one Linear per side + a raw temperature `tau`:
- dcase2025: CPJKU/dcase2025_task6_baseline `d25_t6/retrieval_module.py` (audio_projection, text_embedding_model,
  text_projection); trained with `--compile`, so keys may carry torch.compile's `_orig_mod.` component.
- salsa: OptimusPrimus/salsa `experiments/ex_dcase24.py` (project_audio.0, sentence_embedding_model,
  project_sentence.0) plus four tensors its default forward never uses.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from audiosearch.models.config import ModelConfig
from audiosearch.models.profiles import profile

# roberta-large's config.json (huggingface.co/roberta-large): the text tower is built from it and filled from
# the checkpoint, so importing and loading download nothing.
ROBERTA_LARGE = {
    "model_type": "roberta",
    "vocab_size": 50265,
    "hidden_size": 1024,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "hidden_act": "gelu",
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-5,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
}
TOKENIZER_DIR = "tokenizer"  # inside the model directory (audiosearch.models.checkpoint bundles it)
COMPILED = "_orig_mod."  # a torch.compile'd submodule's path component
TAU = "tau"  # raw temperature [1]; ours is log_temperature []


@dataclass(frozen=True)
class Layout:
    name: str
    prefixes: tuple[tuple[str, str], ...]  # (checkpoint prefix, our prefix)
    ignored: dict[str, str] = field(default_factory=dict)  # exact checkpoint key -> why it is not needed
    ignored_patterns: dict[str, str] = field(default_factory=dict)  # fnmatch pattern -> why (derived buffers)
    source: str = ""


_BUFFERS = {  # buffers other library versions stored: derived from the config, nothing learned
    "*.embeddings.position_ids": "RoBERTa position-id buffer (transformers < 4.31 stored it): derived, not learned",
    "*.embeddings.token_type_ids": "RoBERTa token-type buffer: derived, not learned",
    "audio_embedding_model.*mel.*": "mel front-end buffers (window, pre-emphasis): derived from the config",
}
_PASST = ("audio_embedding_model.model.model.", "audio_tower.net.")

LAYOUTS = {
    "dcase2025": Layout(
        "dcase2025",
        (
            _PASST,
            ("audio_projection.", "audio_proj."),
            ("text_embedding_model.", "text_tower.model."),
            ("text_projection.", "text_proj."),
        ),
        ignored_patterns=_BUFFERS,
        source="CPJKU/dcase2025_task6_baseline",
    ),
    "salsa": Layout(
        "salsa",
        (
            _PASST,
            ("project_audio.0.", "audio_proj."),
            ("sentence_embedding_model.", "text_tower.model."),
            ("project_sentence.0.", "text_proj."),
        ),
        ignored={
            "timing_tau": "temperature of salsa's timing loss: training only",
            "audio_token": "sequence-model token: used only with audio_features.sequence_model.num_layers > 0",
            "posencode.w": "positional-encoding weight of the sequence model: unused with num_layers 0",
            "posencode.pe": "positional encodings of the sequence model: unused with num_layers 0",
        },
        ignored_patterns=_BUFFERS,
        source="OptimusPrimus/salsa",
    ),
}
# Top-level entries of a Lightning checkpoint besides its state dict, and why none of them is needed.
TOP_LEVEL_IGNORED = {
    "epoch": "training progress",
    "global_step": "training progress",
    "pytorch-lightning_version": "Lightning bookkeeping",
    "loops": "Lightning loop state",
    "callbacks": "Lightning callback state (ModelCheckpoint)",
    "optimizer_states": "AdamW moments: training only (fine-tuning here starts its own optimizer)",
    "lr_schedulers": "learning-rate schedule: training only",
    "MixedPrecision": "fp16 loss-scaler state: training only",
    "NativeMixedPrecisionPlugin": "fp16 loss-scaler state: training only",
    "hyper_parameters": "the training run's arguments: recorded in import.json, architecture checked by shapes",
    "hparams_name": "Lightning bookkeeping",
}


def import_config(fmt: str) -> ModelConfig:
    """The `paper` profile as the reference code runs it, with the weights all in the model directory."""
    cfg = copy.deepcopy(profile("paper"))
    cfg.name = f"paper-{fmt}"
    cfg.audio.options.update({"checkpoint": None, "pretrained": False})
    cfg.text.options.update({"config": dict(ROBERTA_LARGE), "tokenizer": TOKENIZER_DIR, "dropout": 0.2})
    # the reference's fixed temperature (tau 0.05, not trained): fine-tuning here keeps it unless a run says not
    cfg.temperature_init, cfg.learn_temperature = 0.05, False
    return cfg
