"""The aux-only map's model: where records are, learnt from the aux bands alone (no record as input).

scikit-learn's HistGradientBoostingClassifier on each aux band and its Gaussian local mean and
standard deviation at :data:`AUX_SIGMAS` cells. It sees no record, so it ranks cells far from any
survey; it also learns where surveys were kept, since records are survey-biased. On the discovery
test (README) it ranks some held-out surveys better than blurred records and every M3 model so
far: the product offers its map beside M3's (``train_cli.py aux-map``), and the discovery test
scores it as a rival.

Cost and memory, whatever the grid's size:

- each target's fit sees a sample of its cells (:func:`fit_sample`): the cells holding its records
  (at most :data:`POSITIVES`) and about :data:`NEGATIVES` random cells without one, each weighted
  by the inverse of its chance of being drawn, so the fitted probabilities stay those of a fit on
  every cell;
- all targets draw their samples from one pool of cells, whose features are computed in one pass
  over the grid, shared by all targets, seeds and folds (:func:`fit_models`);
- maps are predicted strip by strip (:func:`strip_features`, :data:`STRIP_ROWS` rows), at most
  :data:`PREDICT_CELLS` cells per call to the classifier (scikit-learn runs each tree over all the
  cells it is given: 1,024 cells stay in the cache from tree to tree, about 1.8 times less CPU
  time than 65,536 for the same probabilities).

Features are filtered on a block of rows and columns with a halo of the Gaussian's full radius,
which gives the values of filtering the whole grid at once.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import numpy as np
from scipy import ndimage

from ..data.stack import Stack
from ..errors import InputError
from ..progress import Progress, SilentProgress, check_cancelled

AUX_SIGMAS = (5.0, 10.0)        # cells
NEGATIVES = 300_000             # cells without a record in each fit's sample
POSITIVES = 100_000             # at most this many cells of a target's records in its fit's sample
MIN_RECORD_CELLS = 10           # fewer cells of a target: too few to learn from
POLL_SECONDS = 0.2              # between two looks at the cancel button during a fit
STRIP_ROWS = 256
PREDICT_CELLS = 1_024           # cells per predict_proba call: they stay in the CPU's cache from tree to tree
TRUNCATE = 4.0                  # scipy's default Gaussian radius, in σ

Window = tuple[int, int, int, int]  # row0, col0, height, width


def feature_names(aux_names: Sequence[str], sigmas: Sequence[float] = AUX_SIGMAS) -> list[str]:
    out = []
    for name in aux_names:
        out.append(name)
        for s in sigmas:
            out += [f"{name}_mean_s{s:g}", f"{name}_std_s{s:g}"]
    return out


def feature_count(stack: Stack, sigmas: Sequence[float] = AUX_SIGMAS) -> int:
    return len(stack.aux_bands) * (1 + 2 * len(sigmas))


def _halo(sigmas: Sequence[float]) -> int:
    return max(int(TRUNCATE * s + 0.5) for s in sigmas) if sigmas else 0


def _block_features(stack: Stack, rows: np.ndarray, cols: np.ndarray, sigmas: Sequence[float]) -> np.ndarray:
    """(N, F) features at cells (rows, cols), filtered on their bounding block and a halo."""
    halo = _halo(sigmas)
    h, w = stack.grid.shape
    r0, r1 = max(0, int(rows.min()) - halo), min(h, int(rows.max()) + 1 + halo)
    c0, c1 = max(0, int(cols.min()) - halo), min(w, int(cols.max()) + 1 + halo)
    at = (rows - r0, cols - c0)
    valid = stack.valid[r0:r1, c0:c1].astype(np.float64)

    def smooth(a: np.ndarray, s: float) -> np.ndarray:
        return ndimage.gaussian_filter(a, s, mode="constant", truncate=TRUNCATE)[at]

    dens = [np.maximum(smooth(valid, s), 1e-6) for s in sigmas]
    x = np.empty((len(rows), feature_count(stack, sigmas)), np.float32)
    j = 0
    for band in stack.aux:
        a = band[r0:r1, c0:c1].astype(np.float64) * valid
        x[:, j] = a[at]
        j += 1
        for s, den in zip(sigmas, dens):
            m = smooth(a, s) / den
            m2 = smooth(a * a, s) / den
            x[:, j], x[:, j + 1] = m, np.sqrt(np.clip(m2 - m * m, 0, None))
            j += 2
    return x


def strip_starts(height: int, row0: int = 0) -> range:
    return range(row0, row0 + height, STRIP_ROWS)


def aux_features(stack: Stack, rows: np.ndarray, cols: np.ndarray, sigmas: Sequence[float] = AUX_SIGMAS,
                 progress: Optional[Progress] = None) -> np.ndarray:
    """(N, A × (1 + 2·len(sigmas))) features at cells (:func:`feature_names` order): each aux
    band, its Gaussian local mean and standard deviation at each scale, over valid cells. One
    ``progress`` step per strip of the grid's rows; cancel looked at between strips."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    x = np.zeros((len(rows), feature_count(stack, sigmas)), np.float32)
    for r0 in strip_starts(stack.grid.height):
        check_cancelled(progress)
        at = np.nonzero((rows >= r0) & (rows < r0 + STRIP_ROWS))[0]
        if len(at):
            x[at] = _block_features(stack, rows[at], cols[at], sigmas)
        if progress is not None:
            progress.advance()
    return x


def strip_features(stack: Stack, cells: np.ndarray, window: Optional[Window] = None,
                   sigmas: Sequence[float] = AUX_SIGMAS, progress: Optional[Progress] = None
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per strip of :data:`STRIP_ROWS` rows of ``window`` (default the whole grid): the rows and
    columns (in the window) of the strip's ``cells`` (window-shaped bool) and their features,
    computed with the whole stack around them. One ``progress`` step per strip; cancel looked at
    between strips. Memory: one strip's features."""
    r0, c0, h, w = window or (0, 0, *stack.grid.shape)
    for s0 in strip_starts(h):
        check_cancelled(progress)
        vr, vc = np.nonzero(cells[s0:s0 + STRIP_ROWS])
        vr = vr + s0
        x = _block_features(stack, vr + r0, vc + c0, sigmas) if len(vr) else \
            np.zeros((0, feature_count(stack, sigmas)), np.float32)
        yield vr, vc, x
        if progress is not None:
            progress.advance()


@dataclass
class FitSample:
    """A pool of cells some fits learn from, and each target's weight of each: the inverse of the
    cell's chance of being drawn for that target's fit (0: not in it)."""

    rows: np.ndarray
    cols: np.ndarray
    weights: np.ndarray     # (T, N)


def fit_sample(usable: np.ndarray, targets: np.ndarray, seed: int, negatives: int = NEGATIVES,
               positives: int = POSITIVES) -> FitSample:
    """Each target's sample of ``usable`` cells (H × W bool), drawn as a fit of that target alone
    draws it: the cells holding its records (all of them, or ``positives`` drawn at random), and
    about ``negatives`` cells without one drawn at random, each weighted back to its share (a
    record of another target is such a cell too). All targets draw from one pool: every usable
    cell holding a record of some target (``targets``: T × H × W bool), then ``negatives`` random
    cells holding none. For one target, the sample the discovery test's rival was always fitted to."""
    recorded = (targets & usable).any(axis=0)
    pr, pc = np.nonzero(recorded)
    er, ec = np.nonzero(usable & ~recorded)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(er), min(negatives, len(er)), replace=False)
    n_usable, n_pool = int(usable.sum()), len(pick)
    in_pool = n_pool / max(1, len(er))              # an empty cell's chance of being in the pool
    weights = np.zeros((len(targets), len(pr) + n_pool))
    for t, own in enumerate(targets[:, pr, pc]):
        n_own = int(own.sum())
        n_without = n_usable - n_own
        drawn_own, drawn_without = min(positives, n_own), min(negatives, n_without)
        chance = np.where(own, drawn_own / max(1, n_own), drawn_without / max(1, n_without))
        # a pool cell is drawn for this target with its chance, given that it is in the pool
        given = np.concatenate([chance, np.full(n_pool, drawn_without / max(1, n_without) / max(in_pool, 1e-12))])
        kept = rng.random(len(given)) < given
        weights[t] = np.where(np.concatenate([own, np.zeros(n_pool, bool)]), n_own / max(1, drawn_own),
                              n_without / max(1, drawn_without)) * kept
    used = weights.any(axis=0)
    return FitSample(np.concatenate([pr, er[pick]])[used], np.concatenate([pc, ec[pick]])[used], weights[:, used])


@dataclass(frozen=True)
class FitCells:
    """One fit of every target: its seed and the cells it may learn from (None: every valid cell)."""

    seed: int
    cells: Optional[np.ndarray] = None


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
        on ``cells``, H × W bool, when given: the other folds of an out-of-fold map)."""
        return fit_models(stack, target[None], [FitCells(seed, cells)], negatives, sigmas, progress)[0][0]

    def predict(self, features: np.ndarray, progress: Optional[Progress] = None) -> np.ndarray:
        """Probability of the target at each row of ``features``, :data:`PREDICT_CELLS` rows at a time."""
        out = np.empty(len(features), np.float64)
        for i in range(0, len(features), PREDICT_CELLS):
            check_cancelled(progress)
            out[i:i + PREDICT_CELLS] = self.classifier.predict_proba(features[i:i + PREDICT_CELLS])[:, 1]
        return out


def fit_models(stack: Stack, targets: np.ndarray, fits: Sequence[FitCells], negatives: int = NEGATIVES,
               sigmas: Sequence[float] = AUX_SIGMAS, progress: Optional[Progress] = None,
               positives: int = POSITIVES) -> list[list[AuxBoosting]]:
    """Per fit, one classifier per target (T × H × W bool), each on its fit's sample
    (:func:`fit_sample`). The features of all samples are computed in one pass over the grid
    (one ``progress`` step per strip), then each fit is one step. Cancel through
    ``progress.cancelled()``, looked at during each fit (:func:`fit_cancellable`)."""
    if not stack.aux_bands:
        raise InputError("The stack has no aux band; the aux-only map needs some (build-stack --aux ...).")
    from sklearn.ensemble import HistGradientBoostingClassifier

    samples = []
    for f in fits:
        usable = stack.valid if f.cells is None else stack.valid & f.cells
        held = (targets & usable).sum(axis=(1, 2))
        if held.min() < MIN_RECORD_CELLS:
            raise InputError(f"Only {int(held.min())} cells hold a record of this target: too few to learn from.")
        samples.append(fit_sample(usable, targets, f.seed, negatives, positives))
    width = stack.grid.width
    keys = np.concatenate([s.rows.astype(np.int64) * width + s.cols for s in samples])
    unique, inverse = np.unique(keys, return_inverse=True)
    shared = aux_features(stack, unique // width, unique % width, sigmas, progress)
    out, start = [], 0
    for f, s in zip(fits, samples):
        at = inverse[start:start + len(s.rows)]
        start += len(s.rows)
        models = []
        for target, weights in zip(targets, s.weights):
            use = np.nonzero(weights)[0]
            x = shared[at[use]].astype(np.float64)  # the dtype the classifier fits in
            clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.1, max_leaf_nodes=31,
                                                 l2_regularization=1.0, random_state=f.seed)
            fit_cancellable(clf, x, target[s.rows[use], s.cols[use]].astype(np.float64), weights[use], progress)
            models.append(AuxBoosting(clf, tuple(sigmas)))
            if progress is not None:
                progress.advance()
        out.append(models)
    return out


def fit_steps(stack: Stack, targets: int, fits: int) -> int:
    """Progress steps of :func:`fit_models`: a strip of the features' pass, or a fit."""
    return len(strip_starts(stack.grid.height)) + targets * fits


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


def window_map(model: AuxBoosting, stack: Stack, window: Optional[Window] = None,
               progress: Optional[Progress] = None) -> np.ndarray:
    """(H, W) probability of one fitted model on ``window`` (default the whole grid), NaN outside
    valid cells; predicted strip by strip."""
    r0, c0, h, w = window or (0, 0, *stack.grid.shape)
    out = np.full((h, w), np.nan)
    for vr, vc, x in strip_features(stack, stack.valid[r0:r0 + h, c0:c0 + w], window, model.sigmas, progress):
        out[vr, vc] = model.predict(x, progress)
    return out


def aux_boosting_maps(stack: Stack, targets: np.ndarray, seeds: Sequence[int], window: Optional[Window] = None,
                      progress: Optional[Progress] = None, fit_on: Optional[np.ndarray] = None,
                      map_on: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """Per target (T, H, W bool), the mean and standard deviation over ``seeds`` of the aux-only
    probability on ``window`` (row0, col0, height, width; default the whole grid): on its valid
    cells, or only on ``map_on`` (window-shaped bool); NaN elsewhere. Each seed's fit learns from
    the stack's valid cells, only from ``fit_on`` (H × W bool) when given. Fits first, then the
    window strip by strip, every model on each strip: one strip's features in memory at a time."""
    progress = progress or SilentProgress()
    r0, c0, h, w = window or (0, 0, *stack.grid.shape)
    cells = stack.valid[r0:r0 + h, c0:c0 + w]
    if map_on is not None:
        cells = cells & map_on
    mean = np.full((len(targets), h, w), np.nan, np.float32)
    std = np.full_like(mean, np.nan)
    progress.start(fit_steps(stack, len(targets), len(seeds)) + len(strip_starts(h)), "aux-only gradient boosting")
    try:
        models = fit_models(stack, targets, [FitCells(s, fit_on) for s in seeds], progress=progress)
        for vr, vc, x in strip_features(stack, cells, window, progress=progress):
            for t in range(len(targets)):
                runs = np.stack([m[t].predict(x, progress) for m in models])
                mean[t, vr, vc], std[t, vr, vc] = runs.mean(axis=0), runs.std(axis=0)
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
    (:func:`spatial_folds`, dealt anew for each seed), NaN outside valid cells.

    A map a model may take as an input band: no cell's value was fitted to that cell's records
    (nor to those of its block), so a model trained to fill hidden records cannot read them back
    from it. An in-sample fit would hand them over."""
    if folds < 2:
        raise InputError("An out-of-fold map needs at least 2 folds.")
    progress = progress or SilentProgress()
    fold = {seed: spatial_folds(stack.grid.shape, folds, block, seed) for seed in seeds}
    plan = [(i, seed, k) for i, seed in enumerate(seeds) for k in range(folds) if (fold[seed] == k).any()]
    runs = np.full((len(seeds), len(targets)) + stack.grid.shape, np.nan, np.float32)
    progress.start(fit_steps(stack, len(targets), len(plan)) + len(strip_starts(stack.grid.height)),
                   f"aux-only gradient boosting, {folds} spatial folds")
    try:
        models = fit_models(stack, targets, [FitCells(seed, fold[seed] != k) for _, seed, k in plan], progress=progress)
        for vr, vc, x in strip_features(stack, stack.valid, progress=progress):
            for (i, seed, k), per_target in zip(plan, models):
                at = fold[seed][vr, vc] == k
                if at.any():
                    for t, model in enumerate(per_target):
                        runs[i, t, vr[at], vc[at]] = model.predict(x[at], progress)
    finally:
        progress.close()
    return runs.mean(axis=0), runs.std(axis=0)
