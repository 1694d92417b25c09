"""Analyses of transformers: factored matrices, QK/OV circuits, composition, head detectors, path expansion."""
