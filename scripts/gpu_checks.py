"""The GPU checks, prepared so that a short loan of a GPU machine is spent measuring.

The device machine has PyTorch but not rasterio or segmentation-models-pytorch, no GDAL Python
bindings (so it cannot build the default stack: its vector layers need them), and a call may carry
at most 64 MiB with the repository (about 41 MiB tracked). So:

``pack`` (here, with network): writes ``.gpu/`` (git-ignored through ``.git/info/exclude``) with
the wheels the device lacks (about 22 MiB) and ``timing_stack.npz``: the default stack's grid,
valid cells and presence bands, bit-packed (well under 1 MiB).

``unpack`` (there): writes a stack GeoTIFF from it with the bundled model's aux bands *synthetic*
(smooth random fields, 0 outside the valid area, tagged with the model's normalisation so that the
model takes them for its bands). It is a timing stack: the same grid, valid area,
records and band names as the CONUS stack, so the same windows run and are skipped and every
window evaluation costs what it costs on the real stack, but its maps mean nothing.

Then ``scripts/gpu_checks.sh`` runs the checks (``bench infer``, the 150-evaluation CONUS map
end to end, ``bench memory``, ``bench train``) and leaves their logs in ``$OUT``::

    .venv/bin/python scripts/gpu_checks.py pack          # here
    # device run, carry [".gpu"], timeout_s 560:  bash scripts/gpu_checks.sh
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WHEELS = ["rasterio==1.4.3", "segmentation-models-pytorch==0.6.0", "affine==3.0.1", "cligj==0.7.2",
          "click-plugins==1.1.1.2"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]


def pack(folder: Path) -> None:
    from core.data.build_stack import default_stack_path

    folder.mkdir(exist_ok=True)
    exclude = ROOT / ".git" / "info" / "exclude"
    if exclude.parent.parent.is_dir() and f"/{folder.name}/" not in (exclude.read_text().split() if exclude.exists() else []):
        exclude.parent.mkdir(exist_ok=True)
        with exclude.open("a") as f:
            f.write(f"/{folder.name}/\n")
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
                    "3.12", "--implementation", "cp", *platforms, "-d", str(folder / "wheels"), *WHEELS], check=True)
    write_records(default_stack_path(), folder / "timing_stack.npz")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"wrote {folder}: {size / 2 ** 20:.1f} MiB (carry it: the repository's tracked files are about 41 MiB, "
          "the limit 64 MiB)")


def write_records(stack_path: Path, npz: Path) -> None:
    """A stack's grid, valid cells and presence bands, bit-packed into ``npz``."""
    from core.data.stack_sources import GeoTiffStackSource

    with GeoTiffStackSource(stack_path) as src:
        g = src.grid
        presence = np.stack([src.read_presence(k, 0, 0, g.height, g.width) for k in range(len(src.species))])
        valid = src.read_valid(0, 0, g.height, g.width)
        meta = {"crs": g.crs.to_wkt(), "transform": list(g.transform)[:6], "height": g.height, "width": g.width,
                "species": list(src.species), "stack": Path(stack_path).name}
    np.savez_compressed(npz, presence=np.packbits(presence.astype(bool), axis=-1),
                        valid=np.packbits(valid.astype(bool), axis=-1), meta=json.dumps(meta))


def unpack(npz: Path, out: Path, model: Path) -> None:
    from affine import Affine
    from rasterio.crs import CRS

    from core.data.grid import Grid
    from core.data.stack import AuxBand, Stack
    from core.data.synthetic import smooth_field
    from core.model.model_file import read_card

    data = np.load(npz)
    meta = json.loads(str(data["meta"]))
    h, w = meta["height"], meta["width"]
    presence = np.unpackbits(data["presence"], axis=-1, count=w).astype(np.uint8)
    valid = np.unpackbits(data["valid"], axis=-1, count=w).astype(bool)
    card = read_card(model)
    names = card.aux_names
    rng = np.random.default_rng(0)
    aux = np.stack([smooth_field(rng, h, w, 24) * valid for _ in names]).astype(np.float32)
    grid = Grid(CRS.from_wkt(meta["crs"]), Affine(*meta["transform"]), h, w)
    # the model's normalisation, so that it takes the synthetic z-scores as its own bands' values
    bands = [AuxBand(b["name"], b["mean"], b["std"], b.get("units", ""), "synthetic (timing stack)")
             for b in card.aux_bands]
    Stack(grid, meta["species"], presence, bands, aux, valid,
          {"source": f"timing stack: {meta['stack']}'s grid, valid cells and presence; synthetic aux"}).write(out)
    print(f"wrote {out}: {h} x {w} cells, {int(valid.sum())} valid, aux bands {', '.join(names)} (synthetic)")


def main() -> None:
    from core.data.defaults import BUNDLED_MODEL

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    a = sub.add_parser("pack", help="here: wheels and the timing stack's records into a folder to carry")
    a.add_argument("--folder", type=Path, default=ROOT / ".gpu")
    b = sub.add_parser("unpack", help="there: the timing stack GeoTIFF")
    b.add_argument("npz", type=Path)
    b.add_argument("out", type=Path)
    b.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    args = p.parse_args()
    if args.what == "pack":
        pack(args.folder)
    else:
        unpack(args.npz, args.out, args.model)


if __name__ == "__main__":
    main()
