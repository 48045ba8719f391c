"""Inference: window arithmetic, blended seams, ensembles, cancel, windowed I/O, the predict command.

Arithmetic tests use a small fully convolutional stand-in (one 5x5 convolution: a receptive
field small enough that the blended result can be compared with a seamless reference); the
plumbing tests use a real U-Net model file with random weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from core.cli import main as cli_main
from core.errors import Cancelled, InputError, ModelMismatchError
from core.masks.hiding import HideSpec, RasterRegion, region_from_bounds, region_from_vector
from core.inference.infer import EnsembleMember, infill
from core.model.model_file import ModelCard, save_model
from core.model.models import ModelConfig, build_model
from core.data.prediction_io import PREDICTION_TAG, write_quicklook
from core.progress import SilentProgress
from core.inference.sliding_windows import WindowLayout, fit_size, window_starts
from core.data.stack_sources import GeoTiffStackSource, open_stack_source
from core.data.synthetic import synthetic_stack

S, A = 4, 2


def card_for(stack, tile: int = 32, arch: str = "unet") -> ModelCard:
    cfg = ModelConfig(arch=arch, in_channels=2 * len(stack.species) + len(stack.aux_bands),
                      classes=len(stack.species), encoder_depth=18)
    return ModelCard(species=list(stack.species), aux_bands=[vars(b) for b in stack.aux_bands],
                     grid={"crs": stack.grid.crs.to_string(), "resolution": stack.grid.resolution},
                     tile_size=tile, model=cfg.to_dict(), threshold=0.4,
                     masking={"scenarios": {"region": 1.0, "species": 1.0, "both": 1.0}, "species_k": [1, 2],
                              "region_fraction": 0.5, "region_shape": "mixed", "blob_scale": 8})


class Counting(nn.Module):
    """Wraps a model and counts forward passes."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, x):
        self.calls += 1
        return self.inner(x)


def local_member(stack, seed: int = 0) -> EnsembleMember:
    """A 5x5 convolution standing in for a model: fully convolutional, receptive field 5."""
    torch.manual_seed(seed)
    conv = nn.Conv2d(2 * S + A, S, 5, padding=2)
    with torch.no_grad():
        conv.weight.mul_(3.0)
    return EnsembleMember(Counting(conv.eval()), card_for(stack), "conv5")


@pytest.fixture(scope="module")
def stack():
    return synthetic_stack(160, 200, n_species=S, n_aux=A, seed=3)


@pytest.fixture(scope="module")
def unet_file(stack, tmp_path_factory) -> Path:
    torch.manual_seed(0)
    card = card_for(stack)
    model = build_model(card.model_config)
    return save_model(tmp_path_factory.mktemp("models") / "unet.safetensors", model, card)


@pytest.fixture(scope="module")
def stack_file(stack, tmp_path_factory) -> Path:
    return stack.write(tmp_path_factory.mktemp("stack") / "stack.tif")


# -- window arithmetic ----------------------------------------------------------------------------

@pytest.mark.parametrize("length,size,overlap,offset", [(200, 64, 16, 0), (200, 64, 16, 9), (97, 64, 32, 5),
                                                        (1805, 256, 32, 0), (50, 64, 16, 0)])
def test_window_weights_are_a_partition_of_unity(length, size, overlap, offset):
    size = fit_size(length, size, overlap, offset)
    lay = WindowLayout.fitted(length, length, size, overlap, (offset, offset))
    total = np.zeros(length + 2 * size)
    for i, start in enumerate(lay.rows.starts):
        total[start + size: start + 2 * size] += lay.rows.weights(i)
    np.testing.assert_allclose(total[size:size + length], 1.0, atol=1e-6)
    assert lay.rows.starts[0] <= 0 and lay.rows.starts[-1] + lay.rows.size >= length


def test_fitted_windows_do_not_hang_far_over_the_grid():
    assert fit_size(512, 256, 32) == 192                # 3 windows of 192 instead of 3 of 256
    assert fit_size(1805, 256, 32) == 256
    assert fit_size(100, 256, 32) == 128                # one window
    assert window_starts(100, 128, 32) == [0]
    with pytest.raises(InputError):
        window_starts(100, 64, 64)


# -- seams and ensembles --------------------------------------------------------------------------

def seamless(stack, member) -> np.ndarray:
    """The stand-in applied to the whole grid at once, all species hidden: no windows, no seams."""
    from core.model.inputs import model_inputs

    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))[None]  # noqa: E731
    hidden = torch.ones((1, S) + stack.grid.shape, dtype=torch.bool)
    with torch.no_grad():
        p = torch.sigmoid(member.model(model_inputs(t(stack.presence), hidden, t(stack.aux), t(stack.valid))))
    return np.where(stack.valid, p[0].numpy(), np.nan)


def test_shifting_the_windows_changes_the_map_by_less_than_a_small_tolerance(stack):
    member = local_member(stack)
    hide = HideSpec(tuple(stack.species))
    ref = seamless(stack, member)
    a = infill(stack, [member], hide, window=64, overlap=16).mean
    b = infill(stack, [member], hide, window=64, overlap=16, offset=(7, 23)).mean
    hard = infill(stack, [member], hide, window=64, overlap=0).mean   # tiles with hard edges
    assert np.isnan(a).sum() == np.isnan(ref).sum()
    shift = np.nanmax(np.abs(a - b))
    assert shift < 0.01
    assert np.nanmax(np.abs(a - ref)) < 0.01
    # without blending the tile edges show: the same model is off by much more there
    assert np.nanmax(np.abs(hard - ref)) > 10 * shift


def test_random_draws_are_tied_to_the_grid_not_the_windows(stack):
    """With nothing hidden by the user, random mask draws hide each cell in turn; the draws do not
    depend on where the windows are, so shifting them changes only the window edge effects."""
    member = local_member(stack)
    a = infill(stack, [member], HideSpec(), draws=3, window=64, overlap=16, seed=5)
    b = infill(stack, [member], HideSpec(), draws=3, window=64, overlap=16, seed=5, offset=(11, 3))
    assert a.evaluations == 3
    ok = np.isfinite(a.mean) & np.isfinite(b.mean)
    np.testing.assert_array_equal(np.isfinite(a.mean), np.isfinite(b.mean))
    assert np.abs(a.mean - b.mean)[ok].max() < 0.01
    assert np.all(np.isnan(a.mean[:, ~stack.valid]))
    # every species of most valid cells is hidden in at least one of 3 draws
    assert ok.sum() > 0.5 * S * stack.valid.sum()
    c = infill(stack, [member], HideSpec(), draws=3, window=64, overlap=16, seed=6)
    assert np.nanmax(np.abs(c.mean - a.mean)) > 0.01  # another seed, other draws


def test_ensemble_mean_and_std_over_models(stack):
    m1, m2 = local_member(stack, 1), local_member(stack, 2)
    hide = HideSpec(("Au", "Zn"))
    p1 = infill(stack, [m1], hide, window=64, overlap=16).mean
    p2 = infill(stack, [m2], hide, window=64, overlap=16).mean
    both = infill(stack, [m1, m2], hide, window=64, overlap=16)
    assert both.species == ["Au", "Zn"] and both.evaluations == 2
    np.testing.assert_allclose(both.mean, (p1 + p2) / 2, atol=1e-5)
    # away from the window overlaps the spread is exactly that of the two models
    np.testing.assert_allclose(both.std[:, :40, :40], (np.abs(p1 - p2) / 2)[:, :40, :40], atol=1e-4)


def test_region_hides_only_inside_it(stack):
    member = local_member(stack)
    region = np.zeros(stack.grid.shape, bool)
    region[40:100, 50:150] = True
    res = infill(stack, [member], HideSpec(("Pb",), RasterRegion(region, stack.grid)), window=64, overlap=16)
    assert res.species == ["Pb"]
    np.testing.assert_array_equal(np.isfinite(res.mean[0]), region & stack.valid)
    assert res.predicted_cells["Pb"] == int((region & stack.valid).sum())


def test_region_from_bounds_and_vector(stack, tmp_path):
    g = stack.grid
    x0, y1 = g.transform * (50, 40)
    x1, y0 = g.transform * (150, 100)
    cells = region_from_bounds((x0, y0, x1, y1), g.crs).mask(g)
    assert cells[40:100, 50:150].all() and cells.sum() == 60 * 100
    # a lon/lat rectangle is curved in Albers: the cells whose centres lie inside it in lon/lat
    from rasterio.warp import transform

    lonlat = (-120.5, 46.6, -119.5, 47.2)
    rr, cc = np.mgrid[0:g.height, 0:g.width]
    lon, lat = transform(g.crs, "EPSG:4326", *g.cell_centres(rr.ravel(), cc.ravel()))
    lon, lat = np.reshape(lon, g.shape), np.reshape(lat, g.shape)
    inside = (lon > lonlat[0]) & (lon < lonlat[2]) & (lat > lonlat[1]) & (lat < lonlat[3])
    got = region_from_bounds(lonlat).mask(g)
    assert inside.sum() > 500 and (got != inside).sum() <= 0.01 * inside.sum()
    # a polygon layer
    from osgeo import ogr, osr

    path = tmp_path / "region.gpkg"
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(g.crs.to_wkt())
    lyr = ds.CreateLayer("area", srs, ogr.wkbPolygon)
    f = ogr.Feature(lyr.GetLayerDefn())
    f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0}))"))
    lyr.CreateFeature(f)
    ds = None
    np.testing.assert_array_equal(region_from_vector(path).mask(g), cells)
    with pytest.raises(InputError, match="not longitude/latitude"):
        region_from_bounds((x0, y0, x1, y1))


def test_empty_region_and_unknown_species_are_user_errors(stack):
    member = local_member(stack)
    far = region_from_bounds((0, 0, 1, 1))  # lon/lat off Africa: outside the grid
    with pytest.raises(InputError, match="Nothing to predict"):
        infill(stack, [member], HideSpec(("Au",), far))
    with pytest.raises(InputError, match="Cannot hide Mo"):
        infill(stack, [member], HideSpec(("Mo",)))


# -- the real model file, windowed files, cancel ---------------------------------------------------

def test_unet_file_from_stack_file_matches_in_memory(stack, stack_file, unet_file, tmp_path):
    hide = HideSpec(("Au", "Ag"))
    mem = infill(stack, [unet_file], hide, draws=2, window=96, overlap=16)
    out = tmp_path / "pred.tif"
    disk = infill(stack_file, [unet_file], hide, draws=2, window=96, overlap=16, out=out)
    assert disk.mean is None and disk.path == out
    mean, std = disk.read()
    np.testing.assert_allclose(mean, mem.mean, atol=1e-6, equal_nan=True)
    np.testing.assert_allclose(std, mem.std, atol=1e-6, equal_nan=True)
    assert np.all((mean[np.isfinite(mean)] >= 0) & (mean[np.isfinite(mean)] <= 1))
    assert np.nanmax(std) > 0  # two draws of extra masking around the hidden species vary the context


def test_prediction_geotiff_is_georeferenced_described_and_tiled(stack, stack_file, unet_file, tmp_path):
    out = tmp_path / "pred.tif"
    res = infill(stack_file, [unet_file], HideSpec(("Zn", "Au")), out=out, window=96, overlap=16)
    with rasterio.open(out) as src:
        assert src.crs == stack.grid.crs
        assert src.transform == stack.grid.transform
        assert (src.height, src.width) == stack.grid.shape
        assert src.bounds == pytest.approx(stack.grid.bounds)
        assert list(src.descriptions) == ["mean_Au", "mean_Zn", "std_Au", "std_Zn"]
        assert np.isnan(src.nodata)
        assert src.profile["tiled"] and src.compression.name.lower() == "deflate"
        meta = json.loads(src.tags()[PREDICTION_TAG])
        band = src.read(1)
    assert meta["models"] == ["unet.safetensors"] and meta["threshold"] == pytest.approx(0.4)
    assert np.all(np.isnan(band[~stack.valid])) and np.all(np.isfinite(band[stack.valid]))
    png = write_quicklook(out, tmp_path / "pred.png", stack_file)
    assert png.stat().st_size > 10_000
    assert res.predicted_cells == {"Au": int(stack.valid.sum()), "Zn": int(stack.valid.sum())}


def test_cancel_stops_within_one_batch_and_leaves_no_file(stack, tmp_path):
    member = local_member(stack)
    counter = member.model
    progress = SilentProgress(is_cancelled=lambda: counter.calls >= 1)
    out = tmp_path / "pred.tif"
    with pytest.raises(Cancelled):
        infill(stack, [member], HideSpec(("Au",)), batch_size=2, window=64, overlap=16, out=out, progress=progress)
    assert counter.calls == 1
    assert list(tmp_path.iterdir()) == []


def test_model_for_other_species_is_refused(stack, tmp_path):
    other = synthetic_stack(64, 64, n_species=3, n_aux=A)
    card = card_for(other)
    path = save_model(tmp_path / "other.safetensors", build_model(card.model_config), card)
    with pytest.raises(ModelMismatchError, match="other.safetensors"):
        infill(stack, [path], HideSpec(("Au",)))


def test_windowed_stack_reader_pads_outside_the_grid(stack, stack_file):
    with GeoTiffStackSource(stack_file) as src:
        win = src.read_window(-10, 190, 40, 30)
    ref = open_stack_source(stack).read_window(-10, 190, 40, 30)
    np.testing.assert_array_equal(win.presence, ref.presence)
    np.testing.assert_allclose(win.aux, ref.aux)
    np.testing.assert_array_equal(win.valid, ref.valid)
    assert not win.valid[:10].any() and not win.valid[:, 10:].any()
    np.testing.assert_array_equal(win.valid[10:, :10], stack.valid[0:30, 190:200])


def test_predict_command_writes_geotiff_and_quicklook(stack, stack_file, unet_file, tmp_path, capsys):
    g = stack.grid
    x0, y1 = g.transform * (20, 20)
    x1, y0 = g.transform * (120, 100)
    out = tmp_path / "cli.tif"
    rc = cli_main(["predict", "--stack", str(stack_file), "--models", str(unet_file), "--hide-species", "Pb",
                   "--hide-bounds", str(x0), str(y0), str(x1), str(y1), "--bounds-crs", "grid",
                   "--window", "96", "--overlap", "16", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "wrote" in text and "mean_Pb/std_Pb" in text
    assert out.exists() and out.with_suffix(".png").exists()
    with rasterio.open(out) as src:
        mean = src.read(1)
    expect = np.zeros(g.shape, bool)
    expect[20:100, 20:120] = True
    np.testing.assert_array_equal(np.isfinite(mean), expect & stack.valid)


def test_folding_batchnorm_keeps_the_model_output(stack, unet_file):
    from core.inference.infer import prepare_for_inference
    from core.model.model_file import load_model

    model, card = load_model(unet_file)
    for m in model.modules():  # non-trivial statistics, as a trained model has
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, card.model_config.in_channels, 64, 96)
    with torch.inference_mode():
        ref = model(x)
        fused = prepare_for_inference(model)
        out = fused(x.contiguous(memory_format=torch.channels_last))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_bench_infer_runs_both_pipelines_on_the_same_cells(stack_file):
    from core.evaluation.bench_infer import bench_infer

    lines: list[str] = []
    out = bench_infer(stack_file, device="cpu", repeats=1, part=(16, 16, 128, 128), log=lines.append)
    assert out["cells"] == 128 * 128
    assert out["mcells_per_s_ours"] > 0 and out["mcells_per_s_naive"] > 0
    assert out["ratio"] == pytest.approx(out["mcells_per_s_ours"] / out["mcells_per_s_naive"])
    assert out["conus_150_evaluations_hours_ours"] > 0 and out["conus_windows"] >= 1
    assert any(line.startswith("ratio:") for line in lines)


def test_hide_unrecorded_predicts_every_cell_without_a_record_and_shows_the_records(stack, stack_file, unet_file, tmp_path):
    out = tmp_path / "unrecorded.tif"
    rc = cli_main(["predict", "--stack", str(stack_file), "--models", str(unet_file), "--hide-unrecorded",
                   "--window", "96", "--overlap", "16", "--device", "cpu", "--no-quicklook", "--out", str(out)])
    assert rc == 0
    recorded = stack.presence.astype(bool).any(0)
    assert recorded.any() and (stack.valid & ~recorded).any()
    with rasterio.open(out) as src:
        names = list(src.descriptions)
        mean, std = (src.read(names.index(f"{k}_{stack.species[0]}") + 1) for k in ("mean", "std"))
    predicted = stack.valid & ~recorded
    known = stack.presence[0].astype(bool)                     # the first species' own records show as 1
    np.testing.assert_array_equal(np.isfinite(mean), predicted | known)
    assert np.all(mean[known] == 1.0) and np.all(std[known] == 0.0)
    assert np.all(mean[predicted] < 1.0)


def test_arithmetic_floor_counts_at_least_the_first_convolution(stack_file):
    from core.data.stack_sources import GeoTiffStackSource
    from core.evaluation.bench_infer import _random_member, arithmetic_floor
    from core.inference.infer import inference_member

    source = GeoTiffStackSource(stack_file)
    try:
        raw = _random_member(source)
    finally:
        source.close()
    member = inference_member(raw.model, raw.card, raw.name)
    conv = member.shared.stem.conv
    stem_per_cell = conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1] / 4
    f = arithmetic_floor(member, 64, draws=4, device=torch.device("cpu"), repeats=1)
    assert f["macs_per_cell"] > stem_per_cell          # the stem and the rest of the U-Net
    assert f["stem_gmacs_per_s"] > 0
    assert f["seconds_per_cell"] == pytest.approx(f["macs_per_cell"] / (f["stem_gmacs_per_s"] * 1e9))
    assert arithmetic_floor(inference_member(raw.model, raw.card, raw.name, shared_aux=False), 64, 4,
                            torch.device("cpu")) is None


def test_quicklook_colours_show_low_probabilities_on_one_scale_for_every_map():
    """A calibrated map lies mostly near 0: the quick-look's log scale keeps 0.002 and 0.05 far
    apart (a linear 0–1 scale puts them 5 % apart), sends 0 and NaN where they belong, and is the
    same whatever the map's largest value."""
    from core.data.prediction_io import QUICKLOOK_FLOOR, probability_colours

    shown, norm = probability_colours(np.array([0.0, 0.002, 0.05, 1.0, np.nan]))
    scaled = np.asarray(norm(shown))
    assert scaled[0] == pytest.approx(0.0) and scaled[3] == pytest.approx(1.0)
    assert scaled[2] - scaled[1] > 0.4
    assert np.isnan(shown[4])
    other, other_norm = probability_colours(np.array([0.0, 0.01]))
    assert (other_norm.vmin, other_norm.vmax) == (norm.vmin, norm.vmax) == (QUICKLOOK_FLOOR, 1.0)
