"""Training: the loop, its loss, checkpoints, presets and the validation that picks thresholds."""
