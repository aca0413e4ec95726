"""Training of the dual encoder: data sets, cached tower features, projection and tower trainers, metrics, runs."""

from training.augment import augment_rows, load_extra_captions, template_captions
from training.data import (
    CaptionRow,
    DatasetError,
    caption_group,
    group_split,
    load_caption_csv,
    path_stem_group,
    split_rows,
)
from training.datasets import FORMATS, detect_format, load_rows
from training.features import (
    AudioFeatures,
    compute_audio_features,
    compute_text_features,
    project_audio,
    project_text,
)
from training.metrics import chance_metrics, precision_at_k, retrieval_metrics
from training.run import (
    DataSpec,
    RunConfig,
    RunResult,
    StageConfig,
    load_run_config,
    parse_run_config,
    run_training,
)
from training.towers import set_frozen, train_towers
from training.trainer import (
    EvalSet,
    PairSet,
    StepCheckpoint,
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
    "FORMATS",
    "PairSet",
    "RunConfig",
    "RunResult",
    "StageConfig",
    "StepCheckpoint",
    "TrainConfig",
    "TrainResult",
    "augment_rows",
    "caption_group",
    "chance_metrics",
    "compute_audio_features",
    "compute_text_features",
    "detect_format",
    "eval_set_from_rows",
    "evaluate",
    "group_split",
    "load_caption_csv",
    "load_extra_captions",
    "load_rows",
    "load_run_config",
    "pairs_from_rows",
    "parse_run_config",
    "path_stem_group",
    "precision_at_k",
    "project_audio",
    "project_text",
    "reset_projections",
    "retrieval_metrics",
    "set_frozen",
    "run_training",
    "split_rows",
    "template_captions",
    "train_projections",
    "train_towers",
]
