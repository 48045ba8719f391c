"""Sliding windows over a grid with overlapping, blended seams.

Along each axis, windows of ``size`` cells step by ``size - overlap``. Each window's prediction
is weighted by a separable taper: 1 in the middle; over the ``overlap`` cells it shares with a
neighbour, 0 on the outer quarter (the cells nearest its edge, where a convolutional model sees
the least context), a cosine-squared ramp over the middle half, 1 on the inner quarter (no
taper on a side with no neighbour). Neighbouring tapers sum to exactly 1 (sin² + cos²), so the
weights are a partition of unity: a blended map has no visible window edges, and away from the
overlaps each cell comes from one window's interior.

The window side along each axis is fitted to the grid (:func:`fit_size`): the fewest cells of
computation that cover the axis with windows no larger than asked, so small grids and regions
do not pay for windows hanging far over their edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..data.grid import WINDOW_MULTIPLE
from ..errors import InputError


def round_up(n: float, multiple: int = WINDOW_MULTIPLE) -> int:
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


def fit_size(length: int, max_size: int, overlap: int, offset: int = 0,
             multiple: int = WINDOW_MULTIPLE) -> int:
    """The window side (a multiple of ``multiple``, at most ``max_size``, at least twice the
    overlap) whose windows cover ``length`` cells with the fewest cells computed."""
    max_size = max(round_up(max_size, multiple), round_up(2 * overlap + 1, multiple))
    span = length + offset
    if span <= max_size:
        return round_up(max(span, 2 * overlap + 1), multiple)
    n_min = math.ceil((span - overlap) / (max_size - overlap))
    best = None
    for n in (n_min, n_min + 1):
        size = min(max_size, max(round_up((span - overlap) / n + overlap, multiple),
                                 round_up(2 * overlap + 1, multiple)))
        cost = len(window_starts(length, size, overlap, offset)) * size
        if best is None or cost < best[0]:
            best = (cost, size)
    return best[1]


@lru_cache(maxsize=64)
def taper(size: int, overlap: int, ramp_before: bool, ramp_after: bool) -> np.ndarray:
    """(size,) float32 weights along one axis (see the module docstring). Inside an overlap the
    outer quarter is dropped (weight 0: those cells are near the window's zero-padded edge, where
    a convolutional model sees the least context), the middle half ramps, the inner quarter is 1."""
    w = np.ones(size, np.float64)
    if overlap > 0:
        margin = overlap // 4
        n = overlap - 2 * margin
        ramp = np.concatenate([np.zeros(margin), np.sin(0.5 * np.pi * (np.arange(n) + 0.5) / n) ** 2,
                               np.ones(margin)])
        if ramp_before:
            w[:overlap] = ramp
        if ramp_after:
            w[size - overlap:] = ramp[::-1]
    return w.astype(np.float32)


@dataclass(frozen=True)
class AxisWindows:
    """Windows along one axis of ``length`` cells."""

    length: int
    size: int
    overlap: int
    offset: int = 0

    @property
    def starts(self) -> list[int]:
        return window_starts(self.length, self.size, self.overlap, self.offset)

    @property
    def stride(self) -> int:
        return self.size - self.overlap

    def weights(self, i: int) -> np.ndarray:
        return taper(self.size, self.overlap, i > 0, i < len(self.starts) - 1)

    @classmethod
    def fitted(cls, length: int, max_size: int, overlap: int, offset: int = 0) -> "AxisWindows":
        return cls(length, fit_size(length, max_size, overlap, offset), overlap, offset)


@dataclass(frozen=True)
class WindowLayout:
    """Windows over a grid: strips of ``rows.size`` cells, windows ``cols.size`` cells wide."""

    rows: AxisWindows
    cols: AxisWindows

    @classmethod
    def fitted(cls, height: int, width: int, max_size: int, overlap: int,
               offset: tuple[int, int] = (0, 0)) -> "WindowLayout":
        return cls(AxisWindows.fitted(height, max_size, overlap, offset[0]),
                   AxisWindows.fitted(width, max_size, overlap, offset[1]))

    def weights(self, i: int, j: int) -> np.ndarray:
        """(rows.size, cols.size) float32 blend weights of window (i, j)."""
        return np.outer(self.rows.weights(i), self.cols.weights(j))

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    def describe(self) -> str:
        return (f"{len(self.rows.starts)} x {len(self.cols.starts)} windows of {self.rows.size} x "
                f"{self.cols.size} cells, overlap {self.rows.overlap}")
