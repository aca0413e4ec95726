"""Inference cores in numpy / onnxruntime (no torch): each module registers its kinds (audiosearch.models.registry)."""
