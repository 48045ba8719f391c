"""Which source data sets recorded each cell (the records' ``dataset`` column), as bits.

The ``unrecorded`` masking scenario can hide a whole source at a time (``MaskSpec.hide_by =
"source"``): in the region, only the cells that another source recorded stay visible. That is
how the discovery test holds out a survey, so the model learns where one survey's records lie
given the others' and the aux layers (:mod:`core.masks.masking`).
"""
from __future__ import annotations

from collections import Counter
from typing import Sequence

import numpy as np

from ..errors import InputError
from .grid import Grid
from .rasterize import record_cells
from .records import Records

MAX_SOURCES = 62  # bits of an int64 (sign bit left alone)


def source_bits(records: Records, grid: Grid, recorded: np.ndarray,
                exclude: Sequence[str] = ()) -> tuple[list[str], np.ndarray]:
    """The sources (commonest first, at most :data:`MAX_SOURCES`; the rest left out) and an
    (H, W) int64 raster whose bit ``i`` is set where source ``i`` has a record, on cells of
    ``recorded`` (the stack's cells with a record of any species) only. ``exclude``: sources
    the stack holds out (a discovery stack's), never counted."""
    if not records.datasets or not any(records.datasets):
        raise InputError("The records have no 'dataset' column: hiding by source needs one (or use "
                         "--unrecorded-by share).")
    rows, cols, inside = record_cells(records, grid)
    names, held = list(records.datasets), set(exclude)
    keep = inside & np.array([bool(d) and d not in held for d in names])
    keep[keep] = recorded[rows[keep], cols[keep]]
    counts = Counter(d for d, k in zip(names, keep) if k)
    sources = [d for d, _ in counts.most_common(MAX_SOURCES)]
    index = {d: i for i, d in enumerate(sources)}
    bits = np.zeros(grid.shape, np.int64)
    for d, r, c, k in zip(names, rows, cols, keep):
        if k and d in index:
            bits[r, c] |= np.int64(1) << np.int64(index[d])
    return sources, bits
