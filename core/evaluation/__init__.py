"""Evaluation: scores on held-out blocks, baselines and kriging, compare, sweeps, interdependence, the discovery test, benchmarks, the demo run."""
