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


def test_one_target_sample_is_every_record_cell_and_random_empty_cells():
    """For one target the sample is the discovery rival's: every record cell, then ``negatives``
    empty cells drawn with the seed, weighted back to their share."""
    stack = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=8)
    target = stack.presence[0].astype(bool)
    got = ab.fit_sample(stack.valid, target[None], seed=3, negatives=500)
    pr, pc = np.nonzero(target & stack.valid)
    er, ec = np.nonzero(stack.valid & ~target)
    pick = np.random.default_rng(3).choice(len(er), 500, replace=False)
    np.testing.assert_array_equal(got.rows, np.concatenate([pr, er[pick]]))
    np.testing.assert_array_equal(got.cols, np.concatenate([pc, ec[pick]]))
    np.testing.assert_array_equal(got.weights, [np.concatenate([np.ones(len(pr)), np.full(500, len(er) / 500)])])
    assert got.weights.sum() == pytest.approx(stack.valid.sum())


def test_each_target_draws_its_sample_from_one_pool_as_if_alone():
    """Each target: its record cells (at most ``positives``), about ``negatives`` cells without one
    (records of the other targets among them, at the same rate), each weighted back to its share."""
    stack = synthetic_stack(160, 160, n_species=3, n_aux=1, seed=9)
    targets = stack.presence.astype(bool) & stack.valid
    rows, cols = np.nonzero(targets[2])
    targets[2, rows[100:], cols[100:]] = False                  # a rarer target: 100 cells
    counts, usable = targets.sum(axis=(1, 2)), int(stack.valid.sum())
    cap, negatives = 400, 3000
    assert counts[0] > cap and counts[1] > cap and counts[2] == 100
    weighed, sizes = [], []
    for seed in range(20):
        got = ab.fit_sample(stack.valid, targets, seed=seed, negatives=negatives, positives=cap)
        held = targets[:, got.rows, got.cols]
        drawn = got.weights > 0
        # the target under the cap: all its cells, weight 1; the others about `cap` of theirs
        assert (drawn[2] & held[2]).sum() == 100 and np.all(got.weights[2][held[2]] == 1.0)
        assert all(abs((drawn[t] & held[t]).sum() - cap) < 0.2 * cap for t in (0, 1))
        weighed.append([[got.weights[t][held[t]].sum(), got.weights[t].sum()] for t in range(3)])
        sizes.append((drawn & ~held).sum(axis=1))
    # on average over draws: each target's records and all usable cells count in full, and each fit
    # sees about `negatives` cells without its records (one draw is within a few %)
    mean = np.mean(weighed, axis=0)
    np.testing.assert_allclose(mean[:, 0], counts, rtol=0.05)
    np.testing.assert_allclose(mean[:, 1], usable, rtol=0.02)
    np.testing.assert_allclose(np.mean(sizes, axis=0), negatives, rtol=0.02)


def _sloped_stack(size: int, seed: int):
    """A stack whose one species' records follow a logistic of its first aux band."""
    stack = synthetic_stack(size, size, n_species=1, n_aux=2, seed=seed)
    p = 1.0 / (1.0 + np.exp(-(3.0 * stack.aux[0] - 3.5)))
    stack.presence[0] = ((np.random.default_rng(seed).random(p.shape) < p) & stack.valid).astype(np.uint8)
    return stack


def test_a_sampled_fit_gives_the_probabilities_of_a_fit_on_every_cell():
    """Every cell (about 45,000) against a third of the empty cells, and also only half of the record
    cells. Samples stay above 10,000 cells, where the classifier stops early on held-out cells as
    on the real grids' samples (300,000 empty cells); a small sample fitted to 300 rounds overfits."""
    stack = _sloped_stack(256, 10)
    targets = stack.presence.astype(bool)
    prevalence = targets[0][stack.valid].mean()
    empty = int((stack.valid & ~targets[0]).sum())
    full = ab.fit_models(stack, targets, [ab.FitCells(0)], negatives=10 ** 9)[0][0]
    sampled = ab.fit_models(stack, targets, [ab.FitCells(0)], negatives=empty // 3)[0][0]
    capped = ab.fit_models(stack, targets, [ab.FitCells(0)], negatives=empty // 3,
                           positives=int(targets.sum()) // 2)[0][0]
    maps = [ab.window_map(m, stack)[stack.valid] for m in (full, sampled, capped)]
    assert full.classifier.n_features_in_ == ab.feature_count(stack)
    for m in maps:                      # calibrated: the mean probability is the share of record cells
        assert m.mean() == pytest.approx(prevalence, rel=0.08)
    for m in maps[1:]:                  # and the same map, cell by cell
        assert np.abs(m - maps[0]).mean() < 0.25 * prevalence
        assert np.corrcoef(m, maps[0])[0, 1] > 0.9


def test_prediction_by_strips_equals_one_shot_prediction(monkeypatch):
    stack = synthetic_stack(100, 90, n_species=2, n_aux=2, seed=11)
    targets = stack.presence.astype(bool)
    models = ab.fit_models(stack, targets, [ab.FitCells(0)])[0]
    vr, vc = np.nonzero(stack.valid)
    x = ab.aux_features(stack, vr, vc)
    one_shot = [m.classifier.predict_proba(x)[:, 1] for m in models]
    monkeypatch.setattr(ab, "STRIP_ROWS", 7)
    monkeypatch.setattr(ab, "PREDICT_CELLS", 100)
    mean, std = ab.aux_boosting_maps(stack, targets, [0])
    for t in range(2):
        np.testing.assert_array_equal(mean[t][vr, vc], one_shot[t].astype(np.float32))
        assert np.isnan(mean[t][~stack.valid]).all() and (std[t][vr, vc] == 0).all()
    r0, c0, h, w = 10, 20, 50, 40
    part = ab.window_map(models[1], stack, (r0, c0, h, w))
    inside = (vr >= r0) & (vr < r0 + h) & (vc >= c0) & (vc < c0 + w)
    np.testing.assert_array_equal(part[vr[inside] - r0, vc[inside] - c0], one_shot[1][inside])


def test_every_fit_shares_one_pass_of_features(monkeypatch):
    stack = synthetic_stack(80, 80, n_species=2, n_aux=2, seed=12)
    monkeypatch.setattr(ab, "STRIP_ROWS", 16)
    calls = []
    real = ab._block_features
    monkeypatch.setattr(ab, "_block_features", lambda *a, **k: calls.append(1) or real(*a, **k))
    models = ab.fit_models(stack, stack.presence.astype(bool), [ab.FitCells(0), ab.FitCells(1)])
    assert len(models) == 2 and len(models[0]) == 2
    assert len(calls) <= 80 // 16           # one filtering of each strip for 2 seeds × 2 species


def test_progress_runs_to_100_and_a_cancel_stops_the_map(monkeypatch):
    from core.progress import CallbackProgress, Cancelled

    stack = synthetic_stack(80, 80, n_species=2, n_aux=2, seed=13)
    targets = stack.presence.astype(bool)
    monkeypatch.setattr(ab, "STRIP_ROWS", 16)
    seen: list[float] = []
    ab.aux_boosting_maps(stack, targets, [0], progress=CallbackProgress(seen.append))
    assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(seen)
    assert len(set(seen)) == 5 + 2 + 5 + 1   # 5 strips of features, 2 fits, 5 strips mapped, and 0 %
    stopped: list[float] = []
    with pytest.raises(Cancelled):
        ab.aux_boosting_maps(stack, targets, [0], progress=CallbackProgress(stopped.append, lambda: len(stopped) > 6))
    assert 0 < len(stopped) <= 8 and max(stopped) < 100


def _same_grid(a, b) -> bool:
    return a.shape == b.shape and a.crs == b.crs and a.transform.almost_equals(b.transform, precision=1e-6)


def test_an_extent_limits_what_is_read_fitted_and_mapped(tmp_path, monkeypatch, capsys):
    from rasterio.warp import transform_bounds

    from core.inference.aux_map import extent_window, read_for_extent

    stack = synthetic_stack(120, 120, n_species=2, n_aux=2, seed=14)
    path = tmp_path / "stack.tif"
    stack.write(path)
    g = stack.grid
    left, top = g.transform * (40.2, 50.3)          # inside cell (row 50, col 40)
    right, bottom = g.transform * (59.7, 61.6)      # inside cell (row 61, col 59)
    assert extent_window(g, (left, bottom, right, top)) == (50, 40, 12, 20)
    fitted_on = []
    real = ab.fit_models
    monkeypatch.setattr(ab, "fit_models", lambda s, *a, **k: fitted_on.append(s.grid) or real(s, *a, **k))
    out = tmp_path / "extent.tif"
    assert main(["aux-map", "--stack", str(path), "--extent", str(left), str(bottom), str(right), str(top),
                 "--out", str(out), "--no-quicklook"]) == 0
    grid, species, meta = read_prediction_info(out)
    assert _same_grid(grid, g.window(50, 40, 12, 20)) and species == stack.species
    assert "fitted on the extent and the cells around it" in meta["method"]
    # fitted on the extent grown by its larger side (20 cells) on every side, and on nothing else
    assert len(fitted_on) == 1 and _same_grid(fitted_on[0], g.window(30, 20, 52, 60))
    p = read_band(out, "mean_Au")
    assert np.isfinite(p[stack.valid[50:62, 40:60]]).all() and np.isnan(p[~stack.valid[50:62, 40:60]]).all()
    # the same extent in lon/lat gives the cells around it; one at a corner is clipped; off the stack refused
    lonlat = transform_bounds(g.crs, "EPSG:4326", left, bottom, right, top)
    sub, window = read_for_extent(path, lonlat, "EPSG:4326")
    r0, c0, h, w = window
    assert h >= 12 and w >= 20 and sub.grid.window(r0, c0, h, w).bounds[0] <= left
    x0, y0 = g.transform * (-5, -5)
    x1, y1 = g.transform * (3.5, 3.5)
    assert extent_window(g, (x0, y1, x1, y0)) == (0, 0, 4, 4)
    assert main(["aux-map", "--stack", str(path), "--extent", "0", "0", "10", "10", "--out",
                 str(tmp_path / "off.tif")]) != 0
    assert "does not overlap the stack" in capsys.readouterr().err and not (tmp_path / "off.tif").exists()
