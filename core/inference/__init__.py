"""Inference: infill by sliding windows, map layers as inputs, clusters, the comparison with known sites, maps."""
