"""Read a stack by windows, from memory or lazily from its GeoTIFF, so that work on grids larger
than memory holds one window at a time. Cells outside the grid read as empty (presence 0, aux 0,
not valid), so windows may hang over the grid's edges."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import rasterio

from ..errors import InputError
from .grid import Grid
from .stack import MAKE_STACK, STACK_TAG, AuxBand, Stack, stack_layout
from .tagged_tiff import open_tagged, unreadable


class StackSource(Protocol):
    """A stack whose windows can be read one at a time."""

    grid: Grid
    species: list[str]
    aux_bands: list[AuxBand]

    @property
    def aux_names(self) -> list[str]: ...

    def read_window(self, row0: int, col0: int, height: int, width: int) -> Stack: ...

    def read_valid(self, row0: int, col0: int, height: int, width: int) -> np.ndarray: ...

    def read_presence(self, index: int, row0: int, col0: int, height: int, width: int) -> np.ndarray: ...

    def close(self) -> None: ...


def _overlap(row0: int, col0: int, height: int, width: int, grid: Grid):
    """The part of a window inside the grid: (grid slices, window slices), or None."""
    r0, r1 = max(row0, 0), min(row0 + height, grid.height)
    c0, c1 = max(col0, 0), min(col0 + width, grid.width)
    if r0 >= r1 or c0 >= c1:
        return None
    return ((slice(r0, r1), slice(c0, c1)),
            (slice(r0 - row0, r1 - row0), slice(c0 - col0, c1 - col0)))


class ArrayStackSource:
    """Windows of a stack already in memory."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.grid = stack.grid
        self.species = list(stack.species)
        self.aux_bands = list(stack.aux_bands)
        self.info = stack.info

    @property
    def aux_names(self) -> list[str]:
        return [b.name for b in self.aux_bands]

    def read_window(self, row0: int, col0: int, height: int, width: int) -> Stack:
        s, a = len(self.species), len(self.aux_bands)
        presence = np.zeros((s, height, width), np.uint8)
        aux = np.zeros((a, height, width), np.float32)
        valid = np.zeros((height, width), bool)
        ov = _overlap(row0, col0, height, width, self.grid)
        if ov is not None:
            (gr, gc), (wr, wc) = ov
            presence[:, wr, wc] = self.stack.presence[:, gr, gc]
            aux[:, wr, wc] = self.stack.aux[:, gr, gc]
            valid[wr, wc] = self.stack.valid[gr, gc]
        return Stack(self.grid.window(row0, col0, height, width), self.species, presence,
                     self.aux_bands, aux, valid, self.info)

    def read_valid(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        valid = np.zeros((height, width), bool)
        ov = _overlap(row0, col0, height, width, self.grid)
        if ov is not None:
            (gr, gc), (wr, wc) = ov
            valid[wr, wc] = self.stack.valid[gr, gc]
        return valid

    def read_presence(self, index: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        out = np.zeros((height, width), bool)
        ov = _overlap(row0, col0, height, width, self.grid)
        if ov is not None:
            (gr, gc), (wr, wc) = ov
            out[wr, wc] = self.stack.presence[index][gr, gc] > 0
        return out

    def close(self) -> None:
        pass


class GeoTiffStackSource:
    """Windows of a stack GeoTIFF (as written by :meth:`Stack.write`), read on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._src, meta, self.grid = open_tagged(self.path, STACK_TAG, "stack", MAKE_STACK)
        try:
            self.species, self.aux_bands = stack_layout(self.path, meta, self._src.count)
        except InputError:
            self._src.close()
            raise
        self.info = meta.get("info", {})

    @property
    def aux_names(self) -> list[str]:
        return [b.name for b in self.aux_bands]

    def _read(self, bands: list[int], row0: int, col0: int, height: int, width: int) -> np.ndarray:
        from rasterio.windows import Window

        out = np.zeros((len(bands), height, width), np.float32)
        ov = _overlap(row0, col0, height, width, self.grid)
        if ov is not None:
            (gr, gc), (wr, wc) = ov
            win = Window(gc.start, gr.start, gc.stop - gc.start, gr.stop - gr.start)
            try:
                out[:, wr, wc] = self._src.read(bands, window=win, out_dtype=np.float32)
            except rasterio.errors.RasterioIOError as e:
                raise InputError(unreadable(self.path, "stack", MAKE_STACK, e)) from None
        return out

    def read_window(self, row0: int, col0: int, height: int, width: int) -> Stack:
        s, a = len(self.species), len(self.aux_bands)
        data = self._read(list(range(1, s + a + 2)), row0, col0, height, width)
        return Stack(self.grid.window(row0, col0, height, width), self.species,
                     (data[:s] > 0.5).astype(np.uint8), self.aux_bands, np.ascontiguousarray(data[s:s + a]),
                     data[s + a] > 0.5, self.info)

    def read_valid(self, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        band = len(self.species) + len(self.aux_bands) + 1
        return self._read([band], row0, col0, height, width)[0] > 0.5

    def read_presence(self, index: int, row0: int, col0: int, height: int, width: int) -> np.ndarray:
        return self._read([index + 1], row0, col0, height, width)[0] > 0.5

    def close(self) -> None:
        self._src.close()

    def __enter__(self) -> "GeoTiffStackSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_stack_source(stack: Stack | StackSource | str | Path) -> StackSource:
    """A window reader for a stack in memory, an existing source, or a stack GeoTIFF path."""
    if isinstance(stack, Stack):
        return ArrayStackSource(stack)
    if isinstance(stack, (str, Path)):
        return GeoTiffStackSource(stack)
    return stack

