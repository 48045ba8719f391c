"""Tiles of a stack and the spatial hold-out.

The grid is cut into square geographic blocks. A seeded split sends some blocks with enough
land to validation and some to test; the rest is for training. No training tile overlaps (or,
with ``buffer``, comes within ``buffer`` cells of) a validation or test block: random tiles from
the same area would leak the held-out records into training. Validation and test tiles lie on a
lattice inside their blocks.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np
import torch

from ..data.grid import WINDOW_MULTIPLE
from ..data.stack import Stack
from ..errors import InputError

TRAIN, VAL, TEST = 0, 1, 2
PART_CODES = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class HoldoutSplit:
    """Blocks of ``block_size`` cells from the grid's top-left corner; of the blocks whose land
    share is at least ``min_land``, a seeded draw sends ``test_fraction`` to test and
    ``val_fraction`` to validation (test first, so the test blocks do not depend on the
    validation fraction)."""

    block_size: int = 128
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    min_land: float = 0.5
    buffer: int = 0

    def __post_init__(self) -> None:
        if self.block_size < 1:
            raise InputError("Hold-out block size must be at least 1 cell.")
        if self.val_fraction < 0 or self.test_fraction < 0 or self.val_fraction + self.test_fraction >= 1:
            raise InputError(f"Hold-out fractions val={self.val_fraction}, test={self.test_fraction} must be "
                             "non-negative and sum to less than 1.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "HoldoutSplit":
        return cls(**d)

    def block_labels(self, valid: np.ndarray) -> np.ndarray:
        """(blocks_y, blocks_x) int8 of TRAIN/VAL/TEST."""
        h, w = valid.shape
        b = self.block_size
        ny, nx = -(-h // b), -(-w // b)
        padded = np.zeros((ny * b, nx * b), np.float64)
        padded[:h, :w] = valid
        area = np.full((ny, nx), b * b, np.float64)
        area[-1, :] = (h - (ny - 1) * b) * b
        area[:, -1] = area[:, -1] / b * (w - (nx - 1) * b)
        land = padded.reshape(ny, b, nx, b).sum(axis=(1, 3)) / area
        eligible = np.flatnonzero(land.ravel() >= self.min_land)
        labels = np.full(ny * nx, TRAIN, np.int8)
        rng = np.random.default_rng([self.seed, 7])
        order = rng.permutation(eligible)
        n_test = int(round(self.test_fraction * len(order)))
        n_val = int(round(self.val_fraction * len(order)))
        if self.test_fraction > 0 and len(order) >= 3:
            n_test = max(1, n_test)
        if self.val_fraction > 0 and len(order) >= 3:
            n_val = max(1, n_val)
        labels[order[:n_test]] = TEST
        labels[order[n_test:n_test + n_val]] = VAL
        return labels.reshape(ny, nx)

    def cell_labels(self, valid: np.ndarray) -> np.ndarray:
        """(H, W) int8 of TRAIN/VAL/TEST for every cell."""
        h, w = valid.shape
        blocks = self.block_labels(valid)
        return np.repeat(np.repeat(blocks, self.block_size, 0), self.block_size, 1)[:h, :w]

    def summary(self, valid: np.ndarray) -> dict[str, Any]:
        """Block counts and the (row, col) indices of the held-out blocks, for the model card."""
        blocks = self.block_labels(valid)
        return {"blocks": list(blocks.shape),
                "val_blocks": np.argwhere(blocks == VAL).tolist(),
                "test_blocks": np.argwhere(blocks == TEST).tolist()}


def _window_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums of every k x k window (top-left origin) of a 2-D array: (H-k+1, W-k+1)."""
    ii = np.zeros((a.shape[0] + 1, a.shape[1] + 1), np.int64)
    np.cumsum(np.cumsum(a, 0, dtype=np.int64), 1, out=ii[1:, 1:])
    return ii[k:, k:] - ii[:-k, k:] - ii[k:, :-k] + ii[:-k, :-k]


def check_tile_size(tile_size: int, stack: Stack) -> None:
    if tile_size < WINDOW_MULTIPLE or tile_size % WINDOW_MULTIPLE:
        raise InputError(f"Tile size {tile_size} must be a multiple of {WINDOW_MULTIPLE} (the U-Net halves it 5 times).")
    if tile_size > min(stack.grid.shape):
        raise InputError(f"Tile size {tile_size} is larger than the stack ({stack.grid.height} x "
                         f"{stack.grid.width} cells); use a smaller --tile-size.")


def training_tiles(stack: Stack, split: HoldoutSplit, tile_size: int, n: int, seed: int,
                   min_valid: float = 0.25, require_record: bool = True) -> np.ndarray:
    """(n, 2) int64 top-left (row, col) of training tiles: inside the grid, at least ``min_valid``
    land, at least one record when asked, and clear of validation/test blocks (plus ``buffer``).
    Drawn without replacement by ``seed``; fewer than ``n`` when fewer positions fit."""
    check_tile_size(tile_size, stack)
    k = tile_size
    held = split.cell_labels(stack.valid) != TRAIN
    b = split.buffer
    if b > 0:
        held = np.pad(held, b)
        held_sum = _window_sums(held, k + 2 * b)
    else:
        held_sum = _window_sums(held, k)
    ok = held_sum == 0
    ok &= _window_sums(stack.valid, k) >= min_valid * k * k
    if require_record:
        records = stack.presence.any(axis=0) & stack.valid
        ok &= _window_sums(records, k) > 0
    rows, cols = np.nonzero(ok)
    if len(rows) == 0:
        raise InputError("No training tile fits the stack: lower --min-valid, the tile size or the hold-out "
                         "fractions, or drop --require-record.")
    rng = np.random.default_rng([seed, 11])
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    pick.sort()
    return np.stack([rows[pick], cols[pick]], axis=1).astype(np.int64)


def holdout_tiles(stack: Stack, split: HoldoutSplit, tile_size: int, part: str,
                  min_valid: float = 0.25) -> np.ndarray:
    """(m, 2) int64 origins of the lattice tiles inside the ``part`` ('val' or 'test') blocks,
    with at least ``min_valid`` land, in row-major order."""
    check_tile_size(tile_size, stack)
    k = tile_size
    code = PART_CODES[part]
    blocks = split.block_labels(stack.valid)
    cells = split.cell_labels(stack.valid) == code
    out = []
    for by, bx in np.argwhere(blocks == code):
        r0, c0 = by * split.block_size, bx * split.block_size
        for r in range(r0, r0 + split.block_size - k + 1, k):
            for c in range(c0, c0 + split.block_size - k + 1, k):
                if r + k > stack.grid.height or c + k > stack.grid.width:
                    continue
                if cells[r:r + k, c:c + k].all() and stack.valid[r:r + k, c:c + k].mean() >= min_valid:
                    out.append((r, c))
    return np.asarray(out, np.int64).reshape(-1, 2)


def train_frequency(stack: Stack, split: HoldoutSplit) -> dict[str, float]:
    """Each species' share of land cells with a record, over the training blocks."""
    cells = (split.cell_labels(stack.valid) == TRAIN) & stack.valid
    n = max(1, int(cells.sum()))
    return {s: float(stack.presence[i][cells].sum()) / n for i, s in enumerate(stack.species)}


@dataclass
class TileBatch:
    """Tiles as tensors: presence (B, S, K, K) uint8, aux (B, A, K, K) float32, valid (B, K, K) bool;
    optionally the records' sources (B, K, K) int64 bits (:mod:`core.data.record_sources`)."""

    presence: torch.Tensor
    aux: torch.Tensor
    valid: torch.Tensor
    sources: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return self.presence.shape[0]

    def slice(self, start: int, stop: int) -> "TileBatch":
        return TileBatch(self.presence[start:stop], self.aux[start:stop], self.valid[start:stop],
                         None if self.sources is None else self.sources[start:stop])


class StackTensors:
    """A stack's arrays as tensors on one device, channels last, for fast tile gathering."""

    def __init__(self, stack: Stack, device: torch.device, sources: Optional[np.ndarray] = None) -> None:
        self.device = device
        self.sources = None if sources is None else torch.from_numpy(np.ascontiguousarray(sources, np.int64)).to(device)
        self.presence = torch.from_numpy(np.ascontiguousarray(np.moveaxis(stack.presence, 0, -1), np.uint8)).to(device)
        self.aux = torch.from_numpy(np.ascontiguousarray(np.moveaxis(stack.aux, 0, -1), np.float32)).to(device)
        self.valid = torch.from_numpy(np.ascontiguousarray(stack.valid, bool)).to(device)

    def gather(self, origins: torch.Tensor, tile_size: int, codes: Optional[torch.Tensor] = None) -> TileBatch:
        """The tiles at (B, 2) top-left origins, one indexing operation per array.

        ``codes`` (B,) in 0..7 apply the 8 symmetries of the square at no extra cost, by
        permuting the gather indices: bit 0 flips rows, bit 1 flips columns, bit 2 then
        transposes.
        """
        origins = origins.to(self.device)
        b, k = origins.shape[0], tile_size
        ar = torch.arange(k, device=self.device).expand(b, k)
        rows_1d, cols_1d = ar, ar
        if codes is not None:
            codes = codes.to(self.device).view(b, 1)
            rows_1d = torch.where((codes & 1).bool(), k - 1 - ar, ar)
            cols_1d = torch.where((codes & 2).bool(), k - 1 - ar, ar)
        r_i, r_j = rows_1d.unsqueeze(2).expand(b, k, k), rows_1d.unsqueeze(1).expand(b, k, k)
        c_i, c_j = cols_1d.unsqueeze(2).expand(b, k, k), cols_1d.unsqueeze(1).expand(b, k, k)
        if codes is not None:
            t = (codes & 4).bool().view(b, 1, 1)
            rows, cols = torch.where(t, r_j, r_i), torch.where(t, c_i, c_j)
        else:
            rows, cols = r_i, c_j
        rows = rows + origins[:, 0].view(b, 1, 1)
        cols = cols + origins[:, 1].view(b, 1, 1)
        presence = self.presence[rows, cols].permute(0, 3, 1, 2).contiguous()
        aux = self.aux[rows, cols].permute(0, 3, 1, 2).contiguous()
        return TileBatch(presence, aux, self.valid[rows, cols],
                         None if self.sources is None else self.sources[rows, cols])
