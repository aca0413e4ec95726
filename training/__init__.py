"""Training of the dual encoder: data sets, cached tower features, projection and tower trainers, metrics, runs.

Exports resolve lazily (core/lazy.py): the service validates training configs without importing torch.
"""

from __future__ import annotations

from audiosearch.core.lazy import lazy_exports

_EXPORTS = {
    "AudioFeatures": "audiosearch.training.features",
    "CaptionRow": "audiosearch.training.data",
    "DataSpec": "audiosearch.training.run",
    "DatasetError": "audiosearch.training.data",
    "EvalSet": "audiosearch.training.trainer",
    "FORMATS": "audiosearch.training.datasets",
    "PairSet": "audiosearch.training.trainer",
    "RunConfig": "audiosearch.training.run",
    "RunResult": "audiosearch.training.run",
    "StageConfig": "audiosearch.training.run",
    "StepCheckpoint": "audiosearch.training.trainer",
    "TrainConfig": "audiosearch.training.trainer",
    "TrainResult": "audiosearch.training.trainer",
    "augment_rows": "audiosearch.training.augment",
    "caption_group": "audiosearch.training.data",
    "chance_metrics": "audiosearch.training.metrics",
    "compute_audio_features": "audiosearch.training.features",
    "compute_text_features": "audiosearch.training.features",
    "detect_format": "audiosearch.training.datasets",
    "eval_set_from_rows": "audiosearch.training.trainer",
    "evaluate": "audiosearch.training.trainer",
    "group_split": "audiosearch.training.data",
    "load_caption_csv": "audiosearch.training.data",
    "load_extra_captions": "audiosearch.training.augment",
    "load_rows": "audiosearch.training.datasets",
    "load_run_config": "audiosearch.training.run",
    "pairs_from_rows": "audiosearch.training.trainer",
    "parse_run_config": "audiosearch.training.run",
    "path_stem_group": "audiosearch.training.data",
    "precision_at_k": "audiosearch.training.metrics",
    "project_audio": "audiosearch.training.features",
    "project_text": "audiosearch.training.features",
    "reset_projections": "audiosearch.training.trainer",
    "retrieval_metrics": "audiosearch.training.metrics",
    "run_training": "audiosearch.training.run",
    "set_frozen": "audiosearch.training.towers",
    "split_rows": "audiosearch.training.data",
    "template_captions": "audiosearch.training.augment",
    "train_projections": "audiosearch.training.trainer",
    "train_towers": "audiosearch.training.towers",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_exports(__name__, _EXPORTS, globals())
