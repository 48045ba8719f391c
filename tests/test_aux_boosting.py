"""The aux-only map: features by strips equal whole-grid filtering; it learns what an aux band says;
the stratified sample keeps its probabilities; prediction by strips equals one-shot prediction; an
extent limits what is read, fitted and mapped; progress runs to 100 % and a cancel stops it."""
import numpy as np
import pytest
from scipy import ndimage

import core.inference.aux_boosting as ab
from core.cli import main
from core.data.prediction_io import read_band, read_prediction_info
from core.data.synthetic import synthetic_stack


@pytest.fixture(autouse=True)
def one_openmp_thread():
    """scikit-learn's OpenMP threads spin-wait badly on a busy 2-core machine; tiny fits need one."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def _whole_grid_features(stack, rows, cols, sigmas):
    valid = stack.valid.astype(np.float64)
    out = []
    for band in stack.aux:
        a = band.astype(np.float64) * valid
        out.append(a[rows, cols])
        for s in sigmas:
            d = np.maximum(ndimage.gaussian_filter(valid, s, mode="constant"), 1e-6)
            m = ndimage.gaussian_filter(a, s, mode="constant") / d
            m2 = ndimage.gaussian_filter(a * a, s, mode="constant") / d
            out += [m[rows, cols], np.sqrt(np.clip(m2 - m * m, 0, None))[rows, cols]]
    return np.stack(out, axis=1).astype(np.float32)


def test_features_by_strips_equal_filtering_the_whole_grid(monkeypatch):
    stack = synthetic_stack(90, 70, n_species=2, n_aux=2, seed=3)
    monkeypatch.setattr(ab, "STRIP_ROWS", 16)          # many strips, halo (20 rows) wider than a strip
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 90, 500), rng.integers(0, 70, 500)
    got = ab.aux_features(stack, rows, cols, (2.0, 5.0))
    assert got.shape == (500, 2 * 5) and len(ab.feature_names(stack.aux_names, (2.0, 5.0))) == 10
    np.testing.assert_allclose(got, _whole_grid_features(stack, rows, cols, (2.0, 5.0)), rtol=1e-5, atol=1e-6)


def test_the_aux_only_map_ranks_where_the_aux_band_says_records_are():
    stack = synthetic_stack(128, 128, n_species=1, n_aux=2, seed=4)
    stack.aux[0] = np.where(stack.valid, np.linspace(-1, 1, 128)[None, :], 0).astype(np.float32)
    stack.presence[0] = ((np.random.default_rng(1).random((128, 128)) < 0.08)
                         & (stack.aux[0] > 0.3) & stack.valid).astype(np.uint8)
    mean, std = ab.aux_boosting_maps(stack, stack.presence.astype(bool), [0, 1])
    east, west = mean[0][:, 100:][stack.valid[:, 100:]], mean[0][:, :40][stack.valid[:, :40]]
    assert np.nanmean(east) > 5 * np.nanmean(west)
    assert np.isnan(mean[0][~stack.valid]).all() and np.isfinite(std[0][stack.valid]).all()


def test_aux_map_command_writes_a_prediction_the_readers_take(tmp_path, capsys):
    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=5)
    stack_path = tmp_path / "stack.tif"
    stack.write(stack_path)
    out = tmp_path / "aux_map.tif"
    assert main(["aux-map", "--stack", str(stack_path), "--species", "Ag", "--out", str(out)]) == 0
    grid, species, meta = read_prediction_info(out)
    assert species == ["Ag"] and meta["method"] == "aux-only gradient boosting"
    p = read_band(out, "mean_Ag")
    assert np.isfinite(p[stack.valid]).all() and np.isnan(p[~stack.valid]).all()
    assert (tmp_path / "aux_map.png").exists()
    assert main(["clusters", "--prediction", str(out), "--stack", str(stack_path),
                 "--out", str(tmp_path / "clusters.gpkg")]) == 0
    assert main(["aux-map", "--stack", str(stack_path), "--out", str(stack_path)]) != 0
    assert "is the input --stack" in capsys.readouterr().err


def fitting_cells(monkeypatch) -> list:
    """The ``cells`` of each fit later given to :func:`fit_models`, in order (the fits still run)."""
    seen = []
    real = ab.fit_models

    def spy(stack_, targets, fits, *args, **kw):
        seen.extend(None if f.cells is None else f.cells.copy() for f in fits)
        return real(stack_, targets, fits, *args, **kw)

    monkeypatch.setattr(ab, "fit_models", spy)
    return seen


def test_out_of_fold_map_never_fits_a_cell_to_its_own_records(monkeypatch):
    """Each fold is mapped by a classifier whose fitting cells exclude that fold."""
    stack = synthetic_stack(96, 96, n_species=1, n_aux=2, seed=6)
    fold = ab.spatial_folds(stack.grid.shape, 3, 32, seed=0)
    assert set(np.unique(fold)) <= {0, 1, 2} and fold.shape == (96, 96)
    seen = fitting_cells(monkeypatch)
    out, _ = ab.out_of_fold_maps(stack, stack.presence.astype(bool), seeds=[0], folds=3, block=32)
    assert len(seen) == len(np.unique(fold))
    for k, cells in zip(np.unique(fold), seen):
        assert not cells[fold == k].any() and cells[fold != k].all()
    assert np.isfinite(out[0][stack.valid]).all() and np.isnan(out[0][~stack.valid]).all()


def test_aux_map_stack_out_adds_the_map_as_aux_bands(tmp_path, capsys):
    from core.data.stack import Stack

    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=5)
    stack_path = tmp_path / "stack.tif"
    stack.write(stack_path)
    assert main(["aux-map", "--stack", str(stack_path), "--out", str(tmp_path / "m.tif"),
                 "--stack-out", str(tmp_path / "s2.tif"), "--no-quicklook"]) != 0
    assert "--out-of-fold" in capsys.readouterr().err and not (tmp_path / "m.tif").exists()
    assert main(["aux-map", "--stack", str(stack_path), "--out", str(tmp_path / "m.tif"), "--out-of-fold", "2",
                 "--fold-block", "16", "--stack-out", str(tmp_path / "s2.tif"), "--no-quicklook"]) == 0
    got = Stack.read(tmp_path / "s2.tif")
    assert got.aux_names == stack.aux_names + [f"aux_map_{s}" for s in stack.species]
    np.testing.assert_array_equal(got.presence, stack.presence)
    np.testing.assert_allclose(got.aux[:2], stack.aux)
    new = got.aux[2:][:, got.valid]
    assert np.abs(new.mean(axis=1)).max() < 1e-3 and np.all(new.std(axis=1) > 0.5)
    assert (got.aux[2:][:, ~got.valid] == 0).all()
    assert "out of fold" in read_prediction_info(tmp_path / "m.tif")[2]["method"]


def test_region_aux_map_is_fitted_around_the_region_never_on_it(monkeypatch):
    from core.evaluation.run_summary import top_share_capture
    from core.inference.aux_map import region_aux_map

    stack = synthetic_stack(96, 96, n_species=2, n_aux=2, seed=7)
    hidden = np.zeros(stack.grid.shape, bool)
    hidden[30:60, 30:60] = True
    seen = fitting_cells(monkeypatch)
    out = region_aux_map(stack, [stack.species[1]], hidden)
    assert len(seen) == 1 and not seen[0][hidden].any() and seen[0][~hidden].all()
    assert out.shape == (1, 96, 96)
    assert np.isfinite(out[0][hidden & stack.valid]).all() and np.isnan(out[0][~hidden]).all()
    # the capture in the top share: the sites of the best-ranked cells, NaN ranked last
    scores, sites = np.array([0.9, np.nan, 0.5, 0.1]), np.array([1, 1, 0, 2])
    assert top_share_capture(scores, sites, 0.25) == 0.25 and top_share_capture(scores, sites, 0.75) == 0.75
    assert top_share_capture(scores, np.zeros(4), 0.5) is None


def _boosting_data(seed: int = 0, n: int = 30_000):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8))
    y = (x[:, 0] + 0.5 * x[:, 1] ** 2 + rng.normal(size=n) > 1.5).astype(float)
    return x, y, np.where(y > 0, 1.0, 3.0)


def test_fit_cancellable_is_the_plain_fit():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from core.progress import SilentProgress

    x, y, w = _boosting_data()
    kw = dict(max_iter=60, random_state=3)
    plain = HistGradientBoostingClassifier(**kw).fit(x, y, sample_weight=w)
    watched = HistGradientBoostingClassifier(**kw)
    ab.fit_cancellable(watched, x, y, w, SilentProgress(lambda: False), poll=0.01)
    np.testing.assert_array_equal(watched.predict_proba(x), plain.predict_proba(x))


def test_fit_is_cancelled_while_it_runs():
    """A cancel during a fit is answered at the next look (every ``poll`` seconds), not when the fit ends."""
    import threading
    import time

    from sklearn.ensemble import HistGradientBoostingClassifier

    from core.progress import Cancelled, SilentProgress

    x, y, w = _boosting_data(n=60_000)
    slow = dict(max_iter=400, early_stopping=False, max_leaf_nodes=63, random_state=0)
    t0 = time.perf_counter()
    HistGradientBoostingClassifier(**{**slow, "max_iter": 20}).fit(x, y, sample_weight=w)
    twenty = time.perf_counter() - t0  # a 400-iteration fit takes about 20 times this
    start = time.perf_counter()
    progress = SilentProgress(lambda: time.perf_counter() - start > 2 * twenty)
    with pytest.raises(Cancelled):
        ab.fit_cancellable(HistGradientBoostingClassifier(**slow), x, y, w, progress, poll=0.01)
    # answered before the fit ended: the abandoned fit is still running
    assert any(t.name == "m3-aux-boosting" and t.is_alive() for t in threading.enumerate())


def test_an_error_in_the_fit_reaches_the_caller():
    from sklearn.ensemble import HistGradientBoostingClassifier

    from core.progress import SilentProgress

    x, y, w = _boosting_data()
    with pytest.raises(ValueError):
        ab.fit_cancellable(HistGradientBoostingClassifier(), x, y[:10], w, SilentProgress(lambda: False), poll=0.01)
