"""Training of the dual encoder: data sets, cached tower features, projection and tower trainers, metrics, runs.

Exports resolve lazily (models/lazy.py): the service validates training configs without importing torch.
"""

from __future__ import annotations

from models.lazy import lazy_exports

_EXPORTS = {
    "AudioFeatures": "training.features",
    "CaptionRow": "training.data",
    "DataSpec": "training.run",
    "DatasetError": "training.data",
    "EvalSet": "training.trainer",
    "FORMATS": "training.datasets",
    "PairSet": "training.trainer",
    "RunConfig": "training.run",
    "RunResult": "training.run",
    "StageConfig": "training.run",
    "StepCheckpoint": "training.trainer",
    "TrainConfig": "training.trainer",
    "TrainResult": "training.trainer",
    "augment_rows": "training.augment",
    "caption_group": "training.data",
    "chance_metrics": "training.metrics",
    "compute_audio_features": "training.features",
    "compute_text_features": "training.features",
    "detect_format": "training.datasets",
    "eval_set_from_rows": "training.trainer",
    "evaluate": "training.trainer",
    "group_split": "training.data",
    "load_caption_csv": "training.data",
    "load_extra_captions": "training.augment",
    "load_rows": "training.datasets",
    "load_run_config": "training.run",
    "pairs_from_rows": "training.trainer",
    "parse_run_config": "training.run",
    "path_stem_group": "training.data",
    "precision_at_k": "training.metrics",
    "project_audio": "training.features",
    "project_text": "training.features",
    "reset_projections": "training.trainer",
    "retrieval_metrics": "training.metrics",
    "run_training": "training.run",
    "set_frozen": "training.towers",
    "split_rows": "training.data",
    "template_captions": "training.augment",
    "train_projections": "training.trainer",
    "train_towers": "training.towers",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
