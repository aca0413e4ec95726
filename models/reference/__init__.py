"""Published PaSST-S + RoBERTa-large retrieval checkpoints (DCASE 2025 task 6 baseline, salsa) as model directories.

`import_checkpoint(FILE, "dcase2025" | "salsa", OUT)` is what `audiosearch import-checkpoint` runs; the
imported directory works everywhere a model does (`--model OUT`) and as the start of `audiosearch train`.
"""

from __future__ import annotations

from audiosearch.models.reference.convert import ImportReport, import_checkpoint, plan
from audiosearch.models.reference.layouts import LAYOUTS, ROBERTA_LARGE, import_config

FORMATS = tuple(LAYOUTS)

__all__ = ["FORMATS", "LAYOUTS", "ROBERTA_LARGE", "ImportReport", "import_checkpoint", "import_config", "plan"]
