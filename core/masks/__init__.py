"""Masks: hold-out tiles, the mask draws of training and evaluation, and what a user hides."""
