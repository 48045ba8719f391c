#!/usr/bin/env python3
"""Write the embedded soil-geochemistry extract: the C horizon (about 70–100 cm, closest to bedrock)
of USGS Data Series 801 for the 15 elements of the default stack. Usage:

    .venv/bin/python scripts/extract_geochemistry.py \
        [--gpkg /work/shared/data/geochemistry/usgs_ds801_soil_geochemistry.gpkg] \
        [--out resources/data/geochemistry/usgs_ds801_soil_c_horizon.csv.gz]

Reads layer ``soil_a_c_horizons`` where ``horizon = 'C'`` and writes a gzipped CSV with ``lat``,
``lon`` (WGS84), ``site_id`` and, per element, the value column ``<El>_<unit>`` and its
``<El>_<unit>_cens`` flag (1: below the detection limit, stored as half the limit, as in the
source). Values are written with 6 significant digits (the source's float32 precision); empty
means not analysed.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from core.data.vector_aux import read_features  # noqa: E402

ELEMENTS = ("Cu", "Zn", "Pb", "Ni", "Co", "Cr", "Fe", "Mn", "U", "Th", "W", "Mo", "As", "Sb", "Bi")
PERCENT = ("Fe",)  # elements the survey reports in weight %; the others in mg/kg
LAYER, WHERE = "soil_a_c_horizons", "horizon = 'C'"
DEFAULT_GPKG = Path("/work/shared/data/geochemistry/usgs_ds801_soil_geochemistry.gpkg")
DEFAULT_OUT = REPO / "resources" / "data" / "geochemistry" / "usgs_ds801_soil_c_horizon.csv.gz"


def value_columns() -> list[str]:
    return [f"{el}_{'pct' if el in PERCENT else 'mgkg'}" for el in ELEMENTS]


def fmt(v: float) -> str:
    return "" if v != v else f"{v:.6g}"


def extract(gpkg: Path, out: Path) -> int:
    """Write the extract; returns the number of samples."""
    cols = value_columns()
    fields = ["lat", "lon", "site_id"] + [c for col in cols for c in (col, f"{col}_cens")]
    feats = read_features(gpkg, LAYER, fields, WHERE)
    order = sorted(range(len(feats)), key=lambda i: feats.values["site_id"][i])
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(fields)
    for i in order:
        row = [fmt(feats.values["lat"][i]), fmt(feats.values["lon"][i]), str(int(feats.values["site_id"][i]))]
        for col in cols:
            cens = feats.values[f"{col}_cens"][i]
            row += [fmt(feats.values[col][i]), "" if cens != cens else str(int(cens))]
        w.writerow(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as fh:  # mtime 0: the same input gives the same bytes
        fh.write(buf.getvalue().encode("utf-8"))
    return len(feats)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gpkg", type=Path, default=DEFAULT_GPKG)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()
    n = extract(args.gpkg, args.out)
    print(f"wrote {args.out}: {n} C-horizon samples, {len(ELEMENTS)} elements ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
