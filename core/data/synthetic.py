"""A small synthetic stack with learnable structure, for tests and benchmarks.

Species share a smooth latent "mineralisation" field (so they co-occur, as real species do),
each with its own response to it and to the first aux band; the valid mask is a rounded
region with some sea. Nothing here is real data.
"""
from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.transform import Affine

from .grid import DEFAULT_CRS, MILE_M, Grid
from .stack import AuxBand, Stack


def smooth_field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Bilinearly interpolated lattice noise, standardised."""
    gh, gw = h // cell + 2, w // cell + 2
    lattice = rng.standard_normal((gh, gw))
    ys = np.arange(h) / cell
    xs = np.arange(w) / cell
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a = lattice[y0][:, x0]
    b = lattice[y0][:, x0 + 1]
    c = lattice[y0 + 1][:, x0]
    d = lattice[y0 + 1][:, x0 + 1]
    f = a * (1 - fy) * (1 - fx) + b * (1 - fy) * fx + c * fy * (1 - fx) + d * fy * fx
    return ((f - f.mean()) / (f.std() + 1e-9)).astype(np.float32)


def synthetic_stack(height: int = 256, width: int = 256, n_species: int = 4, n_aux: int = 2,
                    seed: int = 0, rate: float = 0.03) -> Stack:
    """A stack of ``n_species`` presence bands at roughly ``rate`` of land cells each."""
    rng = np.random.default_rng(seed)
    grid = Grid(CRS.from_user_input(DEFAULT_CRS),
                Affine(MILE_M, 0, -2_000_000.0, 0, -MILE_M, 3_000_000.0), height, width)
    yy, xx = np.mgrid[0:height, 0:width]
    r = np.hypot((yy - height / 2) / (height / 2), (xx - width / 2) / (width / 2))
    valid = (r + 0.15 * smooth_field(rng, height, width, 32)) < 1.05
    aux = np.stack([smooth_field(rng, height, width, 24) for _ in range(n_aux)]) if n_aux else \
        np.zeros((0, height, width), np.float32)
    latent = smooth_field(rng, height, width, 12)
    presence = np.zeros((n_species, height, width), np.uint8)
    for s in range(n_species):
        z = (1.0 + 0.5 * s / max(1, n_species)) * latent + (0.8 * aux[0] if n_aux else 0.0) \
            + 0.5 * smooth_field(rng, height, width, 8)
        cut = np.quantile(z[valid], 1 - 4 * rate)
        p = np.where(z > cut, 0.25, 0.002)
        presence[s] = (rng.random((height, width)) < p) & valid
    aux = (aux * valid).astype(np.float32)
    bands = [AuxBand(f"aux{i}", 0.0, 1.0, "", "synthetic") for i in range(n_aux)]
    species = ["Au", "Ag", "Zn", "Pb", "Cu", "Ni", "Fe", "U", "W", "Mn"][:n_species]
    if n_species > 10:
        species += [f"S{i}" for i in range(10, n_species)]
    return Stack(grid, species, presence, bands, aux, valid, {"source": "synthetic", "seed": seed})
