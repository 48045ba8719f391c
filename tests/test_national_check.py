"""The national check's coarse cells and scores (docs/results/discovery/national_check), on synthetic arrays."""
import numpy as np
import pytest

from script_support import load_script

nc = load_script("docs/results/discovery/national_check/national_check.py")


def test_national_sources_are_the_usgs_compilations():
    names = ["usgs_mrds_california", "mrdata_nicrpge", "earth_mri_usa", "mrdata_pp577", "mrdata_nicrpge", "ardf"]
    assert nc.national_sources(names) == ["earth_mri_usa", "mrdata_nicrpge", "mrdata_pp577"]


def test_coarse_score_uses_valid_cells_with_a_value_only():
    score = np.arange(16, dtype=np.float32).reshape(4, 4)
    score[0, 1] = np.nan
    valid = np.ones((4, 4), bool)
    valid[1, 1] = False          # 5 in the top-left block: not counted
    valid[2:, 2:] = False        # the bottom-right block has no valid cell
    mx = nc.coarse_score(score, valid, "max", block=2)
    mean = nc.coarse_score(score, valid, "mean", block=2)
    assert mx[0, 0] == 4 and mean[0, 0] == pytest.approx((0 + 4) / 2)
    assert mx[0, 1] == 7 and mean[0, 1] == pytest.approx((2 + 3 + 6 + 7) / 4)
    assert np.isnan(mx[1, 1]) and np.isnan(mean[1, 1])
    with pytest.raises(ValueError):
        nc.coarse_score(score, valid, "median", block=2)


def test_coarse_cells_at_the_grid_edge_are_partial_blocks():
    mask = np.zeros((3, 5), bool)
    mask[2, 4] = True
    assert nc.coarse_any(mask, block=2).tolist() == [[False, False, False], [False, False, True]]
    held = np.ones((3, 5), bool)
    held[0, 0] = False
    assert nc.coarse_all(held, block=2).tolist() == [[False, True, True], [True, True, True]]


def test_score_species_leaves_out_cells_a_map_does_not_cover():
    pos = np.array([True, True, False, False, False])
    good = np.array([0.9, 0.8, 0.1, 0.2, np.nan])
    flat = np.array([0.5, 0.5, 0.5, 0.5, 0.5])
    r = nc.score_species({"good": good, "flat": flat}, np.ones(5, bool), pos)
    assert (r["positives"], r["negatives"]) == (2, 2)
    assert r["auc"] == {"good": 1.0, "flat": 0.5}


def test_resampled_interval_separates_a_better_map_and_straddles_a_tie():
    rng = np.random.default_rng(1)
    labels, better, worse = [], [], []
    for _ in range(4):
        y = rng.random(300) < 0.2
        labels.append(y)
        better.append(y + rng.normal(0, 0.5, 300))
        worse.append(y + rng.normal(0, 3.0, 300))
    lo, hi = nc.resampled_mean_difference(better, worse, labels, reps=200)
    assert 0 < lo < hi
    lo, hi = nc.resampled_mean_difference(better, better, labels, reps=50)
    assert lo == hi == 0.0
    assert np.isnan(nc.resampled_mean_difference([better[0]], [worse[0]], [np.zeros(300, bool)])[0])
