"""The kriging baseline: ordinary kriging of each hidden species layer from its visible cells.

Per tile and per species with hidden valid cells, the visible valid cells of that species in
the same tile and mask (values 0/1, coordinates in cells) are the data; an ordinary-kriging
model with an automatically fitted variogram predicts the hidden cells; the estimate is
clipped to [0, 1] and used as a probability-like score, thresholded like every other
predictor (the threshold is chosen on validation blocks). On binary data this is indicator
kriging of presence.

Library: PyKrige (``pykrige.ok.OrdinaryKriging``) rather than GSTools. Both are maintained;
PyKrige does exactly this job in one call — it fits the variogram model to the data's
experimental variogram (``variogram_model``, ``nlags``) and solves the ordinary-kriging
system for a batch of points — has pure NumPy/SciPy dependencies and a small install. GSTools
is a broader random-field toolkit (covariance models, field generation, its own variogram
estimation and a separate fitting step before kriging); we would use only a sliver of it and
assemble the fit ourselves.

Limits, stated:

- At most ``max_points`` visible cells (default 400) enter one kriging system; more are
  subsampled uniformly at random (seeded), which keeps one solve to a few tens of ms.
- A layer with no visible valid cell in the tile (the species is hidden over the whole tile,
  or the tile has no visible land) cannot be kriged: its hidden cells get the species'
  training-block frequency (the known mean of simple kriging). A layer whose visible cells
  are all equal gets that value (what ordinary kriging returns for constant data).
- If the variogram fit or the solve fails numerically, the visible mean is used (the
  pure-nugget ordinary-kriging estimate).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch

FALLBACK_ERRORS = (np.linalg.LinAlgError, ValueError, FloatingPointError, ZeroDivisionError)


def krige_layer(values: np.ndarray, known: np.ndarray, targets: np.ndarray, max_points: int = 400,
                variogram_model: str = "spherical", nlags: int = 8,
                rng: np.random.Generator | None = None) -> np.ndarray:
    """Ordinary-kriging estimates at ``targets`` (H, W) bool from ``values`` at ``known`` (H, W) bool.

    Returns a float64 array of the estimates at the target cells, in ``np.nonzero(targets)``
    order (unclipped). Raises ``ValueError`` when there is no known cell.
    """
    from pykrige.ok import OrdinaryKriging

    kr, kc = np.nonzero(known)
    if len(kr) == 0:
        raise ValueError("no known cell to krige from")
    z = values[kr, kc].astype(np.float64)
    tr, tc = np.nonzero(targets)
    if len(tr) == 0:
        return np.empty(0)
    if np.ptp(z) == 0:
        return np.full(len(tr), z[0])
    if len(z) > max_points:
        rng = rng or np.random.default_rng(0)
        pick = rng.choice(len(z), size=max_points, replace=False)
        kr, kc, z = kr[pick], kc[pick], z[pick]
        if np.ptp(z) == 0:
            return np.full(len(tr), z[0])
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            ok = OrdinaryKriging(kc.astype(float), kr.astype(float), z, variogram_model=variogram_model,
                                 nlags=nlags, pseudo_inv=True, verbose=False, enable_plotting=False)
            est, _ = ok.execute("points", tc.astype(float), tr.astype(float), backend="vectorized")
        est = np.asarray(est, dtype=np.float64)
        if not np.all(np.isfinite(est)):
            raise FloatingPointError("non-finite kriging estimate")
        return est
    except FALLBACK_ERRORS:
        return np.full(len(tr), z.mean())


class KrigingPredictor:
    """Ordinary kriging per (tile, hidden species) as a :class:`core.model.predictors.Predictor`."""

    name = "kriging"

    def __init__(self, frequency: np.ndarray, max_points: int = 400, variogram_model: str = "spherical",
                 seed: int = 0) -> None:
        self.frequency = np.asarray(frequency, dtype=np.float64)
        self.max_points, self.variogram_model, self.seed = int(max_points), variogram_model, int(seed)

    def predict(self, presence, hidden, aux, valid) -> torch.Tensor:
        p, hid, val = (t.cpu().numpy() for t in (presence, hidden, valid))  # inputs may be on the GPU
        b, s, h, w = hid.shape
        out = np.broadcast_to(self.frequency.reshape(1, s, 1, 1), (b, s, h, w)).astype(np.float32).copy()
        for bi in range(b):
            for si in range(s):
                targets = hid[bi, si] & val[bi]
                known = ~hid[bi, si] & val[bi]
                if not targets.any() or not known.any():
                    continue
                rng = np.random.default_rng([self.seed, bi, si])
                est = krige_layer(p[bi, si], known, targets, self.max_points, self.variogram_model, rng=rng)
                out[bi, si][targets] = np.clip(est, 0.0, 1.0)
        return torch.from_numpy(out)
