"""Training of the dual encoder's projections: data rows, cached tower features, trainer, metrics."""

from models.training.data import (
    CaptionRow,
    DatasetError,
    caption_group,
    group_split,
    load_caption_csv,
    path_stem_group,
    split_rows,
)
from models.training.features import (
    AudioFeatures,
    compute_audio_features,
    compute_text_features,
    project_audio,
    project_text,
)
from models.training.metrics import chance_metrics, precision_at_k, retrieval_metrics
from models.training.trainer import (
    EvalSet,
    PairSet,
    TrainConfig,
    TrainResult,
    eval_set_from_rows,
    evaluate,
    pairs_from_rows,
    reset_projections,
    train_projections,
)

__all__ = [
    "AudioFeatures",
    "CaptionRow",
    "DatasetError",
    "EvalSet",
    "PairSet",
    "TrainConfig",
    "TrainResult",
    "caption_group",
    "chance_metrics",
    "compute_audio_features",
    "compute_text_features",
    "eval_set_from_rows",
    "evaluate",
    "group_split",
    "load_caption_csv",
    "pairs_from_rows",
    "path_stem_group",
    "precision_at_k",
    "project_audio",
    "project_text",
    "reset_projections",
    "retrieval_metrics",
    "split_rows",
    "train_projections",
]
