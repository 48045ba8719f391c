"""Compare an infill with known sites: how many of the known sites inside the hidden region lie in
cells the model flags (probability at or above the threshold), and how much area it flags."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Optional

import numpy as np

from ..data.grid import Grid
from ..data.rasterize import record_cells
from ..data.records import Records


@dataclass
class SpeciesComparison:
    """One row of the comparison table."""

    species: str
    sites_in_region: int      # known sites of the species inside the hidden region (valid cells)
    sites_flagged: int        # of those, sites in cells at or above the threshold
    flagged_cells: int        # hidden-region cells at or above the threshold
    region_cells: int         # valid cells of the hidden region
    cell_area_km2: float

    @property
    def recall(self) -> Optional[float]:
        """Share of known sites found; None without known sites in the region."""
        return self.sites_flagged / self.sites_in_region if self.sites_in_region else None

    @property
    def flagged_area_km2(self) -> float:
        return self.flagged_cells * self.cell_area_km2

    @property
    def flagged_share(self) -> float:
        """Share of the region's area flagged (recall is cheap when everything is flagged)."""
        return self.flagged_cells / self.region_cells if self.region_cells else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "recall": self.recall, "flagged_area_km2": self.flagged_area_km2,
                "flagged_share": self.flagged_share}


def compare_with_sites(mean: dict[str, np.ndarray], grid: Grid, region: np.ndarray, valid: np.ndarray,
                       threshold: float, sites: Records) -> list[SpeciesComparison]:
    """One :class:`SpeciesComparison` per species of ``mean`` ((H, W) probabilities on ``grid``);
    ``sites`` must know the same species symbols (a site counts for each species it names)."""
    area = (grid.resolution / 1000.0) ** 2
    inside_region = region & valid
    rows, cols, inside = record_cells(sites, grid)
    in_region = np.zeros(len(sites), bool)
    in_region[inside] = inside_region[rows[inside], cols[inside]]
    out = []
    for sym, prob in mean.items():
        flagged = (np.nan_to_num(prob, nan=0.0) >= threshold) & inside_region
        if sym in sites.symbols:
            sel = in_region & sites.species[:, sites.symbols.index(sym)]
        else:
            sel = np.zeros(len(sites), bool)
        hits = int(flagged[rows[sel], cols[sel]].sum()) if sel.any() else 0
        out.append(SpeciesComparison(sym, int(sel.sum()), hits, int(flagged.sum()), int(inside_region.sum()),
                                     area))
    return out
