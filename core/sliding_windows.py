"""Sliding windows over a grid with overlapping, blended seams.

Windows of ``size`` cells step by ``size - overlap``. Each window's prediction is weighted by a
separable taper: 1 in the middle, a cosine-squared ramp over the ``overlap`` cells it shares
with a neighbour (no ramp on a side with no neighbour). Neighbouring ramps sum to exactly 1
(sin² + cos²), so the weights are a partition of unity: a blended map has no visible tile
edges, and away from the ramps each cell comes from one window's interior.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import InputError

UNET_MULTIPLE = 32  # the U-Net halves its input 5 times: window sides must be multiples of 32


def round_up(n: int, multiple: int = UNET_MULTIPLE) -> int:
    return int(math.ceil(n / multiple) * multiple)


def window_starts(length: int, size: int, overlap: int, offset: int = 0) -> list[int]:
    """Starts of windows covering ``[0, length)``: ``-offset, -offset + stride, ...`` until the
    last window reaches the end. ``offset`` in ``[0, stride)`` shifts the window lattice."""
    stride = size - overlap
    if stride <= 0:
        raise InputError(f"Overlap {overlap} must be smaller than the window ({size} cells).")
    if not 0 <= offset < stride:
        raise InputError(f"Window offset {offset} must be in [0, {stride}).")
    starts = [-offset]
    while starts[-1] + size < length:
        starts.append(starts[-1] + stride)
    return starts


@lru_cache(maxsize=64)
def taper(size: int, overlap: int, ramp_before: bool, ramp_after: bool) -> np.ndarray:
    """(size,) float32 weights of one axis (see the module docstring)."""
    w = np.ones(size, np.float64)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        if ramp_before:
            w[:overlap] = ramp
        if ramp_after:
            w[size - overlap:] = ramp[::-1]
    return w.astype(np.float32)


@dataclass(frozen=True)
class WindowLayout:
    """Window origins over a (height, width) grid and each window's blend weights."""

    height: int
    width: int
    size: int
    overlap: int
    row_offset: int = 0
    col_offset: int = 0

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    @property
    def rows(self) -> list[int]:
        return window_starts(self.height, self.size, self.overlap, self.row_offset)

    @property
    def cols(self) -> list[int]:
        return window_starts(self.width, self.size, self.overlap, self.col_offset)

    def weights(self, i: int, j: int) -> np.ndarray:
        """(size, size) float32 blend weights of the window in row ``i``, column ``j`` of the lattice."""
        ni, nj = len(self.rows), len(self.cols)
        wr = taper(self.size, self.overlap, i > 0, i < ni - 1)
        wc = taper(self.size, self.overlap, j > 0, j < nj - 1)
        return np.outer(wr, wc)

    def __len__(self) -> int:
        return len(self.rows) * len(self.cols)
