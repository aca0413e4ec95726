"""Small randomly initialised paper-profile configs: the real PaSST/RoBERTa code paths, no download."""

from __future__ import annotations

from audiosearch.models.config import ModelConfig, TowerConfig
from audiosearch.models.towers.modules.hf_text import minilm_path

TINY_ROBERTA = {
    "model_type": "roberta",
    "vocab_size": 30522,  # the MiniLM (BERT) tokenizer ships offline; RoBERTa's own vocab does not
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 72,
    "pad_token_id": 0,
}


def tiny_paper_config(depth: int = 1, embed_dim: int = 64) -> ModelConfig:
    return ModelConfig(
        name="tiny-paper",
        audio=TowerConfig("passt", {"depth": depth, "embed_dim": embed_dim, "num_heads": 2}),
        text=TowerConfig("roberta", {"source": "roberta-tiny", "config": TINY_ROBERTA, "tokenizer": minilm_path()}),
        embed_dim=48,
    )
