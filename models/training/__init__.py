"""Training of the dual encoder's projections: data rows, cached tower features, trainer, metrics, runs."""

from models.training.augment import augment_rows, load_extra_captions, template_captions
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
from models.training.run import (
    DataSpec,
    RunConfig,
    RunResult,
    StageConfig,
    load_run_config,
    parse_run_config,
    run_training,
)
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
    "DataSpec",
    "DatasetError",
    "EvalSet",
    "PairSet",
    "RunConfig",
    "RunResult",
    "StageConfig",
    "TrainConfig",
    "TrainResult",
    "augment_rows",
    "caption_group",
    "chance_metrics",
    "compute_audio_features",
    "compute_text_features",
    "eval_set_from_rows",
    "evaluate",
    "group_split",
    "load_caption_csv",
    "load_extra_captions",
    "load_run_config",
    "pairs_from_rows",
    "parse_run_config",
    "path_stem_group",
    "precision_at_k",
    "project_audio",
    "project_text",
    "reset_projections",
    "retrieval_metrics",
    "run_training",
    "split_rows",
    "template_captions",
    "train_projections",
]
