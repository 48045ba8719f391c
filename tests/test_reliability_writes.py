"""Every output goes through one write path (core.atomic.atomic_path): a write that fails — a full
disk above all — fails the command with a message naming the disk, removes the partial file and
leaves an existing output as it was.

The full-disk tests mount a small tmpfs (Linux, root); where that cannot be done they are skipped
with the reason. The read-back checks are also tested on cut-short files made here, which needs
no mount.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

from core.atomic import atomic_path
from core.cli import main as cli_main
from core.errors import M3Error
from core.model.model_file import save_model
from core.model.models import build_model
from core.data.synthetic import synthetic_stack
from tests.test_file_safety import card_for, write_outline, write_raster, write_records


# -- a small disk, filled ----------------------------------------------------------------------------
def _mount_refusal() -> str:
    """Why a tmpfs cannot be mounted here ('' when it can be tried)."""
    if not sys.platform.startswith("linux"):
        return "mounting a small tmpfs is done on Linux only"
    if os.geteuid() != 0:
        return "mounting a small tmpfs needs root"
    if shutil.which("mount") is None:
        return "no mount command"
    return ""


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KiB tmpfs mounted in the test's folder (unmounted afterwards)."""
    refusal = _mount_refusal()
    if refusal:
        pytest.skip(refusal)
    mnt = tmp_path / "small_disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(disk: Path) -> None:
    """Fill the disk: a filler file grown until the disk refuses a byte more."""
    with open(disk / "filler", "wb", buffering=0) as fh:
        for size in (65536, 4096, 1):
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC


def partial_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# -- small inputs made here ----------------------------------------------------------------------------
@pytest.fixture
def inputs(tmp_path) -> dict[str, Path]:
    d = tmp_path / "inputs"
    d.mkdir()
    return {"outline": write_outline(d / "outline.geojson"), "records": write_records(d / "recs.csv"),
            "aux": write_raster(d / "aux.tif")}


def build_stack(inputs: dict[str, Path], out: Path) -> int:
    return cli_main(["build-stack", "--out", str(out), "--records", str(inputs["records"]),
                     "--aux", str(inputs["aux"]), "--outline", str(inputs["outline"]), "--faults", "none",
                     "--points", "none", "--categories", "none", "--line-attribute", "none",
                     "--resolution", "500", "--species", "Au"])


@pytest.fixture(scope="module")
def stack_and_model(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    stack = synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5)
    torch.manual_seed(0)
    card = card_for(stack)
    model = save_model(d / "m.safetensors", build_model(card.model_config), card)
    return stack.write(d / "stack.tif"), model


def predict(stack: Path, model: Path, out: Path, *extra: str) -> int:
    return cli_main(["predict", "--stack", str(stack), "--models", str(model), "--device", "cpu",
                     "--window", "64", "--overlap", "16", "--out", str(out), *map(str, extra)])


def assert_refused_on_the_disk(err: str, disk: Path) -> None:
    assert f"disk mounted at {disk}" in err, err
    assert "Nothing half-written was kept" in err, err
    assert "wrote" not in err


# -- a full disk -----------------------------------------------------------------------------------------
@pytest.fixture(params=["up front", "while writing"])
def when(request, monkeypatch) -> str:
    """Whether the full disk is seen up front (core.atomic.check_room, before any work) or only by
    the write itself (that check switched off: GDAL prints the error and goes on)."""
    if request.param == "while writing":
        monkeypatch.setattr("core.atomic.check_room", lambda path: None)
    return request.param


def test_build_stack_on_a_full_disk_keeps_the_good_stack(small_disk, inputs, capsys, when):
    out = small_disk / "stack.tif"
    assert build_stack(inputs, out) == 0
    good = out.read_bytes()
    capsys.readouterr()
    fill(small_disk)
    assert build_stack(inputs, out) == 2
    captured = capsys.readouterr()
    assert "wrote" not in captured.out
    assert_refused_on_the_disk(captured.err, small_disk)
    assert "the existing stack.tif was left as it was" in captured.err
    assert out.read_bytes() == good
    assert partial_files(small_disk) == []
    with rasterio.open(out) as src:
        src.read()


def test_predict_on_a_full_disk_keeps_the_good_prediction(small_disk, stack_and_model, capsys, when):
    stack, model = stack_and_model
    out = small_disk / "pred.tif"
    assert predict(stack, model, out, "--no-quicklook") == 0
    good = out.read_bytes()
    capsys.readouterr()
    fill(small_disk)
    assert predict(stack, model, out, "--no-quicklook") == 2
    captured = capsys.readouterr()
    assert "wrote" not in captured.out
    assert_refused_on_the_disk(captured.err, small_disk)
    assert out.read_bytes() == good and partial_files(small_disk) == []


def test_quicklook_on_a_full_disk_is_a_message(small_disk, stack_and_model, tmp_path, capsys, when):
    stack, model = stack_and_model
    fill(small_disk)
    assert predict(stack, model, tmp_path / "pred.tif", "--quicklook", small_disk / "q.png") == 2
    assert_refused_on_the_disk(capsys.readouterr().err, small_disk)
    assert not (small_disk / "q.png").exists() and partial_files(small_disk) == []


def test_train_on_a_full_disk_is_a_message(small_disk, stack_and_model, capsys, when):
    stack, _ = stack_and_model
    fill(small_disk)
    rc = cli_main(["train", "--stack", str(stack), "--out", str(small_disk / "m.safetensors"), "--steps", "1",
                   "--tiles", "2", "--tile-size", "32", "--batch-size", "2", "--val-every", "0", "--device", "cpu",
                   "--mask-species-k", "1", "1"])
    assert rc == 2
    assert f"disk mounted at {small_disk}" in capsys.readouterr().err
    assert not (small_disk / "m.safetensors").exists() and not (small_disk / "m.json").exists()


def test_model_file_on_a_full_disk_keeps_the_old_model(small_disk, when):
    card = card_for(synthetic_stack(64, 64, n_species=2, n_aux=1, seed=5))
    card.model.update(arch="none", options={"context_sigmas": [2]})  # a small model: its file fits the disk
    target = save_model(small_disk / "m.safetensors", build_model(card.model_config), card)
    before = target.read_bytes(), (small_disk / "m.json").read_bytes()
    fill(small_disk)
    with pytest.raises(M3Error, match=f"disk mounted at {small_disk}"):
        save_model(target, build_model(card.model_config), card)
    assert (target.read_bytes(), (small_disk / "m.json").read_bytes()) == before
    assert partial_files(small_disk) == []


def test_clusters_on_a_full_disk_is_a_message(small_disk, stack_and_model, tmp_path, capsys, when):
    stack, model = stack_and_model
    pred = tmp_path / "pred.tif"
    assert predict(stack, model, pred, "--no-quicklook") == 0
    fill(small_disk)
    capsys.readouterr()
    rc = cli_main(["clusters", "--prediction", str(pred), "--stack", str(stack), "--threshold", "0.01",
                   "--out", str(small_disk / "c.gpkg")])
    assert rc == 2
    assert_refused_on_the_disk(capsys.readouterr().err, small_disk)
    assert not (small_disk / "c.gpkg").exists() and partial_files(small_disk) == []


# -- what the write path checks before the rename (no mount needed) ---------------------------------------
def _good_tiff(path: Path) -> bytes:
    synthetic_stack(64, 64, n_species=2, n_aux=1, seed=1).write(path)
    return path.read_bytes()


@pytest.mark.parametrize("name, make, cut", [
    ("s.tif", "tiff", 0.6), ("q.png", "png", 0.7), ("m.safetensors", "safetensors", 0.8), ("c.json", "json", 0.5)])
def test_a_cut_short_file_never_replaces_the_target(tmp_path, name, make, cut):
    """As a writer that did not notice the disk filling up (GDAL prints and goes on) leaves it."""
    source = tmp_path / f"source_{name}"
    if make == "tiff":
        _good_tiff(source)
    elif make == "png":
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig = plt.figure()
        plt.imshow(np.random.default_rng(0).random((50, 50)))
        fig.savefig(source)
        plt.close(fig)
    elif make == "safetensors":
        from safetensors.torch import save_file

        save_file({"w": torch.arange(1000.0)}, str(source))
    else:
        source.write_text(json.dumps({"a": list(range(100))}))
    data = source.read_bytes()
    target = tmp_path / name
    target.write_bytes(b"the old file")
    with pytest.raises(M3Error, match="Nothing half-written was kept and the existing"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(data[: int(len(data) * cut)])
    assert target.read_bytes() == b"the old file"
    assert partial_files(tmp_path) == []
    with atomic_path(target) as tmp:  # the whole file goes through
        tmp.write_bytes(data)
    assert target.read_bytes() == data


def test_an_empty_geotiff_never_replaces_the_target(tmp_path):
    target = tmp_path / "s.tif"
    good = _good_tiff(target)
    with pytest.raises(M3Error, match="empty"):
        with atomic_path(target):
            pass
    assert target.read_bytes() == good


def test_a_disk_error_raised_by_a_writer_names_the_disk(tmp_path):
    target = tmp_path / "m.safetensors"
    with pytest.raises(M3Error, match=r"No space left on device.*disk mounted at /"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert not target.exists() and partial_files(tmp_path) == []


def test_disk_errors_are_told_from_data_errors():
    from core.atomic import is_disk_error

    assert is_disk_error(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_error(Exception("Error while serializing: I/O error: No space left on device (os error 28)"))
    assert not is_disk_error(OSError(errno.ENOENT, "No such file"))
    assert not is_disk_error(ValueError("bad value"))


def test_the_run_summary_tables_on_a_full_disk_keep_the_old_ones(small_disk, when):
    from core.evaluation.run_summary import write_report_html, write_table_csv

    table, page = small_disk / "table.csv", small_disk / "report.html"
    write_table_csv(table, [])
    write_report_html(page, "old", {}, [])
    before = table.read_bytes(), page.read_bytes()
    fill(small_disk)
    with pytest.raises(M3Error, match=f"disk mounted at {small_disk}"):
        write_report_html(page, "new", {f"setting {i}": "x" * 100 for i in range(100)}, [])
    assert (table.read_bytes(), page.read_bytes()) == before and partial_files(small_disk) == []
