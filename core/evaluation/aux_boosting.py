"""The aux-only map: where records are, learnt from the aux bands alone (no record as input).

scikit-learn's HistGradientBoostingClassifier on each aux band and its Gaussian local mean and
standard deviation at :data:`AUX_SIGMAS` cells, fitted to the cells holding a visible record
(positives) against random valid cells without one (negatives, weighted back to their true
share). It sees no record, so it ranks cells far from any survey; it also learns where surveys
were kept, since records are survey-biased. On the discovery test (README) it ranks some held-out
surveys better than blurred records and every M3 model so far: the product offers its map beside
M3's (``train_cli.py aux-map``), and the discovery test scores it as a rival.

Features are computed by strips of rows with a halo of the Gaussian's full radius, which gives
the same values as filtering the whole grid at once in a fraction of the memory.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from ..data.stack import Stack
from ..errors import InputError
from ..progress import Progress, SilentProgress, check_cancelled

AUX_SIGMAS = (5.0, 10.0)        # cells
NEGATIVES = 300_000
POLL_SECONDS = 0.2              # between two looks at the cancel button during a fit
STRIP_ROWS = 256
TRUNCATE = 4.0                  # scipy's default Gaussian radius, in σ


def feature_names(aux_names: Sequence[str], sigmas: Sequence[float] = AUX_SIGMAS) -> list[str]:
    out = []
    for name in aux_names:
        out.append(name)
        for s in sigmas:
            out += [f"{name}_mean_s{s:g}", f"{name}_std_s{s:g}"]
    return out


def _strip_features(stack: Stack, r0: int, r1: int, sigmas: Sequence[float]) -> np.ndarray:
    """(F, r1 - r0, W) features of the rows [r0, r1), filtered on the strip and a halo."""
    halo = max(int(TRUNCATE * s + 0.5) for s in sigmas) if sigmas else 0
    h0, h1 = max(0, r0 - halo), min(stack.grid.height, r1 + halo)
    inner = slice(r0 - h0, r1 - h0)
    valid = stack.valid[h0:h1].astype(np.float64)
    dens = [np.maximum(ndimage.gaussian_filter(valid, s, mode="constant", truncate=TRUNCATE), 1e-6)
            for s in sigmas]
    out = []
    for band in stack.aux:
        a = band[h0:h1].astype(np.float64) * valid
        out.append(a[inner])
        for s, den in zip(sigmas, dens):
            m = ndimage.gaussian_filter(a, s, mode="constant", truncate=TRUNCATE) / den
            m2 = ndimage.gaussian_filter(a * a, s, mode="constant", truncate=TRUNCATE) / den
            out += [m[inner], np.sqrt(np.clip(m2 - m * m, 0, None))[inner]]
    return np.stack(out).astype(np.float32)


def aux_features(stack: Stack, rows: np.ndarray, cols: np.ndarray,
                 sigmas: Sequence[float] = AUX_SIGMAS) -> np.ndarray:
    """(N, A × (1 + 2·len(sigmas))) features at cells (:func:`feature_names` order): each aux
    band, its Gaussian local mean and standard deviation at each scale, over valid cells."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    x = np.zeros((len(rows), len(stack.aux_bands) * (1 + 2 * len(sigmas))), np.float32)
    for r0 in range(0, stack.grid.height, STRIP_ROWS):
        r1 = min(stack.grid.height, r0 + STRIP_ROWS)
        at = np.nonzero((rows >= r0) & (rows < r1))[0]
        if len(at):
            f = _strip_features(stack, r0, r1, sigmas)
            x[at] = f[:, rows[at] - r0, cols[at]].T
    return x


@dataclass
class AuxBoosting:
    """One fitted classifier for one target (a species, or any species)."""

    classifier: object
    sigmas: tuple[float, ...]

    @classmethod
    def fit(cls, stack: Stack, target: np.ndarray, seed: int, negatives: int = NEGATIVES,
            sigmas: Sequence[float] = AUX_SIGMAS, cells: Optional[np.ndarray] = None,
            progress: Optional[Progress] = None) -> "AuxBoosting":
        """Fit to ``target`` (H, W bool: cells with a record) on the stack's valid cells (and only
        on ``cells``, H × W bool, when given: the other folds of an out-of-fold map). Cancel
        through ``progress.cancelled()``, looked at during the fit (:func:`fit_cancellable`)."""
        if not stack.aux_bands:
            raise InputError("The stack has no aux band; the aux-only map needs some (build-stack --aux ...).")
        from sklearn.ensemble import HistGradientBoostingClassifier

        usable = stack.valid if cells is None else stack.valid & cells
        present = target & usable
        pr, pc = np.nonzero(present)
        if len(pr) < 10:
            raise InputError(f"Only {len(pr)} cells hold a record of this target: too few to learn from.")
        rng = np.random.default_rng(seed)
        er, ec = np.nonzero(usable & ~present)
        pick = rng.choice(len(er), min(negatives, len(er)), replace=False)
        rows, cols = np.concatenate([pr, er[pick]]), np.concatenate([pc, ec[pick]])
        y = np.concatenate([np.ones(len(pr)), np.zeros(len(pick))])
        # Negatives are subsampled; their weight restores the true share of empty cells.
        w = np.concatenate([np.ones(len(pr)), np.full(len(pick), len(er) / max(1, len(pick)))])
        clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_leaf_nodes=31,
                                             l2_regularization=1.0, random_state=seed)
        fit_cancellable(clf, aux_features(stack, rows, cols, sigmas), y, w, progress)
        return cls(clf, tuple(sigmas))

    def predict(self, features: np.ndarray) -> np.ndarray:
        return self.classifier.predict_proba(features)[:, 1]


def fit_cancellable(clf, x: np.ndarray, y: np.ndarray, w: np.ndarray, progress: Optional[Progress],
                    poll: float = POLL_SECONDS) -> None:
    """``clf.fit(x, y, sample_weight=w)``, looking at the cancel button every ``poll`` seconds
    meanwhile: the fit runs in a worker thread (scikit-learn's boosting releases the GIL), and on
    a cancel :class:`core.progress.Cancelled` is raised at once; the abandoned fit ends on its own
    and nothing of it is kept. The same model as a plain fit (fitting by warm-started chunks
    instead cost 60 % more time: each chunk bins the data and predicts the trees so far again)."""
    check_cancelled(progress)
    if progress is None:
        clf.fit(x, y, sample_weight=w)
        return
    failed: list[BaseException] = []

    def work() -> None:
        try:
            clf.fit(x, y, sample_weight=w)
        except BaseException as e:  # noqa: BLE001 — handed to the caller's thread
            failed.append(e)

    worker = threading.Thread(target=work, name="m3-aux-boosting", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(poll)
        if worker.is_alive():
            check_cancelled(progress)
    if failed:
        raise failed[0]


def window_features(stack: Stack, window: Optional[tuple[int, int, int, int]] = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows and columns (in the window) of the window's valid cells, and their features."""
    r0, c0, h, w = window or (0, 0, *stack.grid.shape)
    vr, vc = np.nonzero(stack.valid[r0:r0 + h, c0:c0 + w])
    return vr, vc, aux_features(stack, vr + r0, vc + c0)


def aux_boosting_maps(stack: Stack, targets: np.ndarray, seeds: Sequence[int],
                      window: Optional[tuple[int, int, int, int]] = None,
                      progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per target (T, H, W bool), the mean and standard deviation over ``seeds`` of the aux-only
    probability on ``window`` (row0, col0, height, width; default the whole grid), NaN outside
    valid cells. Features of the window's cells are computed once for all targets and seeds."""
    progress = progress or SilentProgress()
    _, _, h, w = window or (0, 0, *stack.grid.shape)
    vr, vc, x = window_features(stack, window)
    mean = np.full((len(targets), h, w), np.nan, np.float32)
    std = np.full_like(mean, np.nan)
    progress.start(len(targets) * len(seeds), "aux-only gradient boosting")
    try:
        for t, target in enumerate(targets):
            runs = []
            for seed in seeds:
                check_cancelled(progress)
                runs.append(AuxBoosting.fit(stack, target, seed, progress=progress).predict(x))
                progress.advance()
            mean[t, vr, vc] = np.mean(runs, axis=0)
            std[t, vr, vc] = np.std(runs, axis=0)
    finally:
        progress.close()
    return mean, std


def spatial_folds(shape: tuple[int, int], folds: int, block: int, seed: int) -> np.ndarray:
    """(H, W) fold index of each cell: square blocks of ``block`` cells dealt to ``folds`` folds
    at random (seeded), so a fold's cells lie in blocks whose records the other folds never see."""
    h, w = shape
    bh, bw = -(-h // block), -(-w // block)
    blocks = np.random.default_rng(seed).integers(0, folds, (bh, bw))
    return np.repeat(np.repeat(blocks, block, 0), block, 1)[:h, :w]


def out_of_fold_maps(stack: Stack, targets: np.ndarray, seeds: Sequence[int], folds: int = 3, block: int = 64,
                     progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per target (T, H, W bool), the mean and standard deviation over ``seeds`` of the aux-only
    probability of each valid cell from a classifier fitted on the other folds' cells only
    (:func:`spatial_folds`, dealt anew for each seed), NaN outside valid cells. Features are
    computed once for all targets, seeds and folds.

    A map a model may take as an input band: no cell's value was fitted to that cell's records
    (nor to those of its block), so a model trained to fill hidden records cannot read them back
    from it. An in-sample fit would hand them over."""
    if folds < 2:
        raise InputError("An out-of-fold map needs at least 2 folds.")
    progress = progress or SilentProgress()
    vr, vc, x = window_features(stack)
    runs = np.full((len(seeds), len(targets), len(vr)), np.nan, np.float32)
    progress.start(len(seeds) * len(targets) * folds, f"aux-only gradient boosting, {folds} spatial folds")
    try:
        for i, seed in enumerate(seeds):
            fold = spatial_folds(stack.grid.shape, folds, block, seed)
            for t, target in enumerate(targets):
                for k in range(folds):
                    check_cancelled(progress)
                    at = fold[vr, vc] == k
                    if at.any():
                        runs[i, t, at] = AuxBoosting.fit(stack, target, seed, cells=fold != k,
                                                         progress=progress).predict(x[at])
                    progress.advance()
    finally:
        progress.close()
    mean = np.full((len(targets),) + stack.grid.shape, np.nan, np.float32)
    std = np.full_like(mean, np.nan)
    mean[:, vr, vc] = runs.mean(axis=0)
    std[:, vr, vc] = runs.std(axis=0)
    return mean, std
