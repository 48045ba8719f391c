"""Which cells a run flags: by default the top share of the region's cells by probability (pooled
over the species asked about), so that every run flags something to look at whatever the scale;
or at a probability the user sets. One rule, used by the dock, Processing and the report."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

DEFAULT_TOP_SHARE = 0.01   # the default: the top 1 % of the region's cells


@dataclass(frozen=True)
class FlagRule:
    """``share`` of the region flagged (the default), or a fixed ``threshold`` when set."""

    share: float = DEFAULT_TOP_SHARE
    threshold: Optional[float] = None

    def __post_init__(self) -> None:
        if self.threshold is None and not 0.0 < self.share <= 1.0:
            raise ValueError(f"the share of the region to flag must lie in (0, 1]; got {self.share!r}")
        if self.threshold is not None and not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"a probability threshold must lie in [0, 1]; got {self.threshold!r}")

    def threshold_for(self, maps: Iterable[np.ndarray], region_cells: np.ndarray) -> float:
        """The probability at or above which cells are flagged."""
        if self.threshold is not None:
            return float(self.threshold)
        return top_share_threshold(maps, region_cells, self.share)

    def describe(self, threshold: float, flagged_share: float) -> str:
        if self.threshold is not None:
            return f"probability ≥ {threshold:.3g} (set by hand; {100 * flagged_share:.2g} % of the region flagged)"
        return f"top {100 * self.share:.2g} % of the region (probability ≥ {threshold:.3g})"


def top_share_threshold(maps: Iterable[np.ndarray], region_cells: np.ndarray, share: float) -> float:
    """The probability of the cell at rank ``share`` among the region's predicted cells of every
    map pooled (ties flag together, so slightly more may be flagged); 1.0 when nothing was predicted."""
    values = np.concatenate([m[region_cells][np.isfinite(m[region_cells])] for m in maps] or [np.zeros(0)])
    if values.size == 0:
        return 1.0
    k = max(1, int(np.ceil(share * values.size)))
    return float(np.partition(values, values.size - k)[values.size - k])


def flagged_share(maps: Iterable[np.ndarray], region_cells: np.ndarray, threshold: float) -> float:
    """The share of the region's predicted cells (all maps pooled) at or above ``threshold``."""
    values = np.concatenate([m[region_cells][np.isfinite(m[region_cells])] for m in maps] or [np.zeros(0)])
    return float(np.mean(values >= threshold)) if values.size else 0.0
