"""Inference: infill by sliding windows, map layers as inputs, known sites and clusters, the comparison with known sites."""
