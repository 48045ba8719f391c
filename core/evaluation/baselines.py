"""Baselines that need no training, each a :class:`core.model.predictors.Predictor`.

- ``frequency``: every hidden cell gets its species' share of presence cells among the valid
  cells of the training blocks.
- ``neighbour_density``: a hidden cell gets the Gaussian-weighted share of present cells among
  the *visible* valid cells of the same species around it (a Nadaraya-Watson smoother of the
  visible records); where no visible cell is in reach, the species' frequency.
- ``co_presence``: per species, a logistic regression on the *other* species recorded in the
  same cell and in its 3×3 neighbourhood, fitted on the training blocks. Where another species
  is hidden at the cell, its same-cell value is replaced by its visible 3×3 share, and where
  nothing of it is visible in the 3×3 window, by its frequency.

All see only visible cells (hidden presence is never read) and return probability-like values
that evaluation thresholds like any model's.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import minimize

from ..model.predictors import visible_only

EPS = 1e-6


def species_frequency(presence: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """(S,) share of ``cells`` (H, W) bool that hold each species' presence."""
    n = max(int(cells.sum()), 1)
    return np.array([(p[cells] > 0).sum() / n for p in presence], dtype=np.float64)


def visible_share(visible_presence: np.ndarray, visible: np.ndarray,
                  smooth: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed share of present cells among visible cells: ``smooth(p*v) / smooth(v)``, and the
    smoothed weight of visible cells (0 where none is in reach). Arrays (..., H, W)."""
    num = smooth(visible_presence * visible)
    den = smooth(visible.astype(np.float64))
    share = np.where(den > EPS, num / np.maximum(den, EPS), 0.0)
    return np.clip(share, 0.0, 1.0), den


def gaussian_smoother(sigma: float) -> Callable[[np.ndarray], np.ndarray]:
    """Gaussian filter over the last two axes (``sigma`` in cells); outside the tile counts as 0."""
    def smooth(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a.astype(np.float64), [0] * (a.ndim - 2) + [sigma, sigma],
                                       mode="constant", cval=0.0)
    return smooth


def box_smoother(size: int) -> Callable[[np.ndarray], np.ndarray]:
    """Mean over a ``size``×``size`` window on the last two axes; outside the tile counts as 0."""
    def smooth(a: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(a.astype(np.float64), [1] * (a.ndim - 2) + [size, size],
                                      mode="constant", cval=0.0)
    return smooth


def _numpy_batch(presence, hidden, valid):
    """Visible presence and visibility as numpy arrays, from tensors on any device."""
    vis_p = visible_only(presence, hidden, valid).cpu().numpy().astype(np.float64)
    vis = (~hidden & valid.unsqueeze(1)).cpu().numpy()
    return vis_p, vis


class FrequencyPredictor:
    """The species' overall frequency on the training blocks, everywhere."""

    name = "frequency"

    def __init__(self, frequency: np.ndarray | dict[str, float], species: Optional[list[str]] = None) -> None:
        """``frequency``: (S,) values, or {species: value} with the ``species`` order."""
        if isinstance(frequency, dict):
            frequency = [frequency[s] for s in (species or list(frequency))]
        self.frequency = np.asarray(frequency, dtype=np.float64)

    @classmethod
    def fit(cls, presence: np.ndarray, train_cells: np.ndarray) -> "FrequencyPredictor":
        return cls(species_frequency(presence, train_cells))

    def predict(self, presence, hidden, aux, valid) -> torch.Tensor:
        b, s, h, w = hidden.shape
        f = torch.as_tensor(self.frequency, dtype=torch.float32).view(1, s, 1, 1)
        return f.expand(b, s, h, w).clone()


class NeighbourDensityPredictor:
    """Gaussian-smoothed share of visible records of the same species (``sigma`` in cells)."""

    name = "neighbour_density"

    def __init__(self, frequency: np.ndarray, sigma: float = 3.0) -> None:
        self.frequency = np.asarray(frequency, dtype=np.float64)
        self.sigma = float(sigma)

    def predict(self, presence, hidden, aux, valid) -> torch.Tensor:
        vis_p, vis = _numpy_batch(presence, hidden, valid)
        share, den = visible_share(vis_p, vis, gaussian_smoother(self.sigma))
        prob = np.where(den > EPS, share, self.frequency.reshape(1, -1, 1, 1))
        return torch.from_numpy(prob.astype(np.float32))


def co_presence_features(vis_p: np.ndarray, vis: np.ndarray, frequency: np.ndarray) -> np.ndarray:
    """(B, S, 2, H, W) per species: same-cell value (visible presence, or where hidden the 3×3
    visible share, or the frequency), and the 3×3 visible share (or the frequency)."""
    share, den = visible_share(vis_p, vis, box_smoother(3))
    f = frequency.reshape(1, -1, 1, 1)
    around = np.where(den > EPS, share, f)
    cell = np.where(vis, vis_p, around)
    return np.stack([cell, around], axis=2)


def fit_logistic(x: np.ndarray, y: np.ndarray, weight: np.ndarray, l2: float = 1e-4) -> np.ndarray:
    """Weighted L2-regularised logistic regression; returns (F+1,) coefficients, intercept last."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    wsum = weight.sum()

    def loss(beta: np.ndarray):
        z = xb @ beta
        p = 1.0 / (1.0 + np.exp(-z))
        nll = (weight * (np.logaddexp(0.0, z) - y * z)).sum() / wsum + 0.5 * l2 * (beta[:-1] ** 2).sum()
        grad = xb.T @ (weight * (p - y)) / wsum
        grad[:-1] += l2 * beta[:-1]
        return nll, grad

    prior = np.clip(np.average(y, weights=weight), 1e-6, 1 - 1e-6)
    beta0 = np.zeros(xb.shape[1])
    beta0[-1] = np.log(prior / (1 - prior))
    return minimize(loss, beta0, jac=True, method="L-BFGS-B", options={"maxiter": 500}).x


class CoPresencePredictor:
    """Per-species logistic regression on the other species in the same and neighbouring cells."""

    name = "co_presence"

    def __init__(self, coefficients: np.ndarray, frequency: np.ndarray) -> None:
        self.coefficients = np.asarray(coefficients, dtype=np.float64)   # (S, 2(S-1)+1)
        self.frequency = np.asarray(frequency, dtype=np.float64)

    @classmethod
    def fit(cls, presence: np.ndarray, train_cells: np.ndarray, max_negatives: int = 200_000,
            seed: int = 0) -> "CoPresencePredictor":
        """Fit on ``train_cells`` (H, W) bool with every record visible. All presence cells are
        kept; absence cells are subsampled to ``max_negatives`` and re-weighted to their count."""
        s = presence.shape[0]
        frequency = species_frequency(presence, train_cells)
        rows, cols = np.nonzero(train_cells)
        # with every record visible, the same-cell value is the presence itself; the 3x3 share is
        # computed over the training cells, one species at a time (float32, the grid can be large)
        cell = np.stack([(p[rows, cols] > 0) for p in presence]).astype(np.float32)       # (S, N)
        around = np.empty_like(cell)
        box = box_smoother(3)
        for j in range(s):
            share, _ = visible_share(((presence[j] > 0) & train_cells).astype(np.float32), train_cells, box)
            around[j] = share[rows, cols]
        rng = np.random.default_rng(seed)
        coefs = []
        for i in range(s):
            y = cell[i].astype(np.float64)
            pos, neg = np.nonzero(y > 0)[0], np.nonzero(y == 0)[0]
            take = rng.choice(neg, size=min(max_negatives, len(neg)), replace=False) if len(neg) else neg
            idx = np.concatenate([pos, take])
            weight = np.concatenate([np.ones(len(pos)), np.full(len(take), len(neg) / max(len(take), 1))])
            others = [j for j in range(s) if j != i]
            x = np.stack([cell[others][:, idx], around[others][:, idx]], axis=1).reshape(2 * (s - 1), -1).T
            coefs.append(fit_logistic(x.astype(np.float64), y[idx], weight))
        return cls(np.stack(coefs), frequency)

    def predict(self, presence, hidden, aux, valid) -> torch.Tensor:
        vis_p, vis = _numpy_batch(presence, hidden, valid)
        feats = co_presence_features(vis_p, vis, self.frequency)     # (B, S, 2, H, W)
        b, s, _, h, w = feats.shape
        out = np.empty((b, s, h, w))
        for i in range(s):
            others = [j for j in range(s) if j != i]
            x = feats[:, others].reshape(b, 2 * (s - 1), h, w)
            z = np.einsum("bfhw,f->bhw", x, self.coefficients[i, :-1]) + self.coefficients[i, -1]
            out[:, i] = 1.0 / (1.0 + np.exp(-z))
        return torch.from_numpy(out.astype(np.float32))
