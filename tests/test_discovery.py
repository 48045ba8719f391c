"""The discovery test's arithmetic and data handling, and the aux prior's own loss."""
import itertools

import numpy as np
import pytest
import torch

from core.evaluation.discovery import (INFO_KEY, block_max, capture, discovery_stack, held_out_sources, roc_auc,
                            run_discovery, score_map, success_curve)
from core.errors import InputError
from core.data.grid import Grid
from core.training.loss import prior_sum
from core.model.models import ModelConfig, build_model
from core.data.records import Records
from core.data.synthetic import synthetic_stack
from core.training.train import TrainConfig, Trainer
from core.masks.tiles import HoldoutSplit


def test_roc_auc_is_the_share_of_correctly_ordered_pairs_ties_half():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 5, 60).astype(float)
    y = rng.random(60) < 0.3
    pairs = [(a, b) for a, b in itertools.product(s[y], s[~y])]
    brute = np.mean([1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs])
    assert roc_auc(s, y) == pytest.approx(brute)
    assert np.isnan(roc_auc(s, np.zeros(60, bool)))


def test_capture_counts_positives_in_the_top_share_and_gives_a_flat_map_no_credit():
    scores = np.arange(100, dtype=float)[::-1]          # cell 0 ranked first
    labels = np.zeros(100, bool)
    labels[[0, 3, 50, 99]] = True
    cap = capture(scores, labels)
    assert cap == {"top1": 0.25, "top5": 0.5, "top10": 0.5}
    share, curve = success_curve(scores, labels)
    assert curve[0] == 0 and curve[-1] == 1 and np.all(np.diff(curve) >= 0)
    assert capture(np.zeros(100), labels)["top10"] == 0.0


def test_block_max_takes_the_highest_area_cell_and_any_positive():
    score = np.arange(400, dtype=float).reshape(20, 20)
    area = np.ones((20, 20), bool)
    area[10:, 10:] = False                              # one block without area cells
    pos = np.zeros((20, 20), bool)
    pos[2, 3] = True
    s, y = block_max(score, area, pos, block=10)
    assert len(s) == 3 and s.max() == score[19, 9]
    assert y.tolist() == [True, False, False] and s[0] == score[9, 9]


def _records(grid: Grid, cells, species_idx, datasets, symbols):
    from rasterio.crs import CRS
    from rasterio.warp import transform

    xs, ys = grid.cell_centres(np.array([c[0] for c in cells]), np.array([c[1] for c in cells]))
    lon, lat = transform(grid.crs, CRS.from_epsg(4326), list(xs), list(ys))
    sp = np.zeros((len(cells), len(symbols)), bool)
    sp[np.arange(len(cells)), species_idx] = True
    n = len(cells)
    return Records(np.array(lon), np.array(lat), sp, list(symbols), [""] * n, [""] * n, "t", datasets=list(datasets))


def test_discovery_stack_removes_the_held_out_sources_and_scores_only_unknown_cells():
    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=1)
    stack.valid[:] = True
    cells = [(5, 5), (6, 7), (30, 30), (40, 41), (40, 41), (50, 10)]
    recs = _records(stack.grid, cells, [0, 1, 0, 1, 0, 0], ["a", "a", "b", "b", "a", "b"], stack.species)
    disc = discovery_stack(stack, recs, ["b"])
    assert disc.info[INFO_KEY] == ["b"]
    assert disc.presence[0, 5, 5] == 1 and disc.presence[1, 6, 7] == 1 and disc.presence[0, 40, 41] == 1
    assert disc.presence[0, 30, 30] == 0 and disc.presence[0, 50, 10] == 0 and disc.presence.sum() == 3
    (src,) = held_out_sources(disc, recs, ["b"])
    assert src.box == (30, 51, 10, 42) and src.records == 3
    assert src.positives[30, 30] and src.positives[50, 10]
    assert not src.area[40, 41] and src.known_cells == 1        # holds a visible record of source a
    assert src.area.sum() == 21 * 32 - 1
    with pytest.raises(InputError, match="No record of the source"):
        discovery_stack(stack, recs, ["c"])


def test_discover_refuses_a_stack_that_still_holds_the_records():
    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=1)
    recs = _records(stack.grid, [(5, 5)], [0], ["a"], stack.species)
    with pytest.raises(InputError, match="discovery-stack"):
        run_discovery(stack, recs, ["a"], {}, log=lambda s: None)


def test_score_map_ranks_a_perfect_map_first():
    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=1)
    stack.valid[:] = True
    cells = [(20, 20), (25, 22), (30, 40), (10, 10)]
    recs = _records(stack.grid, cells, [0, 0, 1, 1], ["h", "h", "h", "v"], stack.species)
    (src,) = held_out_sources(discovery_stack(stack, recs, ["h"]), recs, ["h"])
    win = src.window(stack.grid.shape, margin=4)
    r0, c0, h, w = win
    perfect = src.positives[r0:r0 + h, c0:c0 + w].astype(float)
    m = score_map(perfect, src, win)
    assert m["auc_cell"] == 1.0 and m["top10"] == 1.0 and m["auc_10cell"] == 1.0


def test_aux_prior_sees_only_aux_and_learns_from_every_valid_cell():
    cfg = ModelConfig("unet", 2 * 3 + 2, 3, 18, {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [2],
                                                 "aux_sigmas": [2], "aux_prior": 8})
    model = build_model(cfg).eval()
    x = torch.randn(2, 8, 32, 32)
    model(x)
    prior = model.last_prior.clone()
    x2 = x.clone()
    x2[:, :6] = torch.randn(2, 6, 32, 32)                 # other records and masks, same aux
    model(x2)
    assert torch.allclose(model.last_prior, prior)
    target = torch.zeros(1, 3, 4, 4)
    valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid[0, :2] = True
    logits = torch.zeros(1, 3, 4, 4)
    assert prior_sum(logits, target, valid).item() == pytest.approx(3 * 8 * np.log(2), rel=1e-5)


def test_prior_loss_trains_the_prior_branch():
    stack = synthetic_stack(128, 128, n_species=3, n_aux=2, seed=4)
    opts = {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [2], "aux_sigmas": [2], "aux_prior": 8}
    cfg = TrainConfig(steps=2, tiles=10, tile_size=32, batch_size=2, holdout=HoldoutSplit(block_size=32),
                      val_every=0, model_options=opts)
    cfg = cfg.with_overrides({"loss.prior": 1.0})
    t = Trainer(stack, cfg, torch.device("cpu"))
    before = [p.clone() for p in t.model.prior.parameters()]
    assert np.isfinite(t.train_step())
    assert any(not torch.equal(a, b) for a, b in zip(before, t.model.prior.parameters()))


def test_a_model_reads_its_aux_bands_by_name_from_a_stack_with_more():
    from core.errors import ModelMismatchError
    from core.inference.infer import infill
    from core.model.model_file import ModelCard, save_model

    stack = synthetic_stack(64, 64, n_species=2, n_aux=3, seed=2)
    small = stack.select_aux([stack.aux_names[2], stack.aux_names[0]])
    cfg = ModelConfig("unet", 2 * 2 + 2, 2, 18, {"decoder_channels": [16, 16, 8, 8, 8]})
    torch.manual_seed(0)
    model = build_model(cfg)
    card = ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in small.aux_bands],
                     grid={"resolution": stack.grid.resolution}, tile_size=32, model=cfg.to_dict(),
                     masking={}, training={}, metrics={}, threshold=0.5)
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "m.safetensors"
    save_model(path, model, card)
    assert card.aux_index(stack.aux_names) == [2, 0] and card.fit_stack(stack).aux_names == small.aux_names
    from core.masks.hiding import HideSpec

    hide = HideSpec(species=[stack.species[0]])
    a = infill(stack, [path], hide=hide, device="cpu").mean
    b = infill(small, [path], hide=hide, device="cpu").mean
    assert np.allclose(a, b, equal_nan=True, atol=1e-6)
    with pytest.raises(ModelMismatchError, match="lacks"):
        card.check_stack(stack.select_aux([stack.aux_names[0]]))


def test_prior_map_is_the_models_own_aux_prior(tmp_path):
    from core.evaluation.discovery import any_species, prior_map
    from core.model.model_file import ModelCard, save_model

    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=3)
    stack.valid[:] = True
    cfg = ModelConfig("unet", 2 * 2 + 2, 2, 18, {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [2],
                                                 "aux_sigmas": [2], "aux_prior": 8})
    torch.manual_seed(1)
    model = build_model(cfg).eval()
    card = ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"resolution": stack.grid.resolution}, tile_size=32, model=cfg.to_dict(), threshold=0.5)
    path = tmp_path / "p.safetensors"
    save_model(path, model, card)
    got = prior_map(stack, path, (0, 0, 64, 64))
    from core.model.aux_prior import aux_prior_map

    mean, std, _ = aux_prior_map(stack, [path, path])
    assert np.allclose(any_species(mean), got, atol=1e-6) and np.nanmax(std) == 0
    written, _, _ = aux_prior_map(stack, [path], out=tmp_path / 'prior.tif')
    from core.data.prediction_io import read_band

    assert written is None and np.allclose(read_band(tmp_path / 'prior.tif', 'mean_' + stack.species[0]), mean[0], atol=1e-6)
    x = torch.cat([torch.from_numpy(stack.presence.astype(np.float32)), torch.ones(2, 64, 64),
                   torch.from_numpy(stack.aux)])[None]
    with torch.no_grad():
        model(x)
    want = any_species(torch.sigmoid(model.last_prior)[0].numpy())
    assert np.allclose(got, want, atol=1e-5)


def test_aux_prior_map_in_strips_equals_one_pass(tmp_path, monkeypatch):
    import core.model.aux_prior as aux_prior
    from core.model.model_file import ModelCard, save_model

    stack = synthetic_stack(96, 64, n_species=2, n_aux=2, seed=5)
    cfg = ModelConfig("unet", 6, 2, 18, {"decoder_channels": [16, 16, 8, 8, 8], "context_sigmas": [2],
                                         "aux_sigmas": [2, 4], "aux_prior": 8})
    torch.manual_seed(2)
    card = ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"resolution": stack.grid.resolution}, tile_size=32, model=cfg.to_dict(), threshold=0.5)
    path = save_model(tmp_path / "p.safetensors", build_model(cfg), card)
    whole, _, _ = aux_prior.aux_prior_map(stack, [path])
    monkeypatch.setattr(aux_prior, "STRIP", 16)
    strips, _, _ = aux_prior.aux_prior_map(stack, [path])
    assert np.allclose(whole, strips, atol=1e-6, equal_nan=True)


def test_a_map_on_a_coarser_grid_is_scored_on_the_stack_cells_it_covers(tmp_path):
    from core.evaluation.discovery import map_on_grid
    from core.data.prediction_io import prediction_file

    stack = synthetic_stack(64, 64, n_species=2, n_aux=2, seed=1)
    stack.valid[:] = True
    cells = [(20, 20), (25, 22), (30, 40), (10, 10)]
    recs = _records(stack.grid, cells, [0, 0, 1, 1], ["h", "h", "h", "v"], stack.species)
    disc = discovery_stack(stack, recs, ["h"])
    # A map on cells twice as wide: 0.9 for Au on the coarse cells holding a held-out record.
    g, t = stack.grid, stack.grid.transform
    coarse = Grid(g.crs, t * t.scale(2, 2), 32, 32)
    mean = np.full((2, 32, 32), 0.01, np.float32)
    for r, c in cells[:3]:
        mean[0, r // 2, c // 2] = 0.9
    path = tmp_path / "coarse.tif"
    with prediction_file(path, coarse, stack.species, {"species": stack.species}) as w:
        w.write_rows(0, mean, np.zeros_like(mean))
    fine = map_on_grid(path, disc)
    assert fine.shape == (64, 64)
    assert fine[20, 20] == pytest.approx(1 - 0.1 * 0.99, abs=1e-6) and fine[21, 21] == fine[20, 20]
    assert fine[0, 0] == pytest.approx(1 - 0.99 * 0.99, abs=1e-6)
    res = run_discovery(disc, recs, ["h"], {}, rival_seeds=0, log=lambda s: None,
                        maps={"coarse": [[path], [path, path]]})
    row = res.rows["coarse"]["h"]
    assert row["auc_cell"]["mean"] > 0.95 and row["auc_cell"]["n"] == 2 and row["auc_cell"]["std"] < 1e-9
