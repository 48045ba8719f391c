"""Mineral occurrence records from CSV: the MinMod-style export and the USGS MRDS format."""
from __future__ import annotations

import csv
import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from .errors import InputError
from .species import SpeciesCatalog

MINMOD_COLUMNS = ("lon", "lat", "commodities")
MRDS_COLUMNS = ("latitude", "longitude", "commod1")
MRDS_COMMODITY_COLUMNS = ("commod1", "commod2", "commod3")
MRDS_PROCESSING_STATUS = "plant"


@dataclass
class Records:
    """Point records in WGS84 lon/lat with the species each names (``species`` is (N, S) bool)."""

    lon: np.ndarray
    lat: np.ndarray
    species: np.ndarray
    symbols: list[str]
    names: list[str]
    commodities: list[str]
    source: str = ""
    skipped_out_of_range: int = 0
    skipped_processing: int = 0
    datasets: list[str] = field(default_factory=list)  # each record's source data set ('' if unknown)

    def __len__(self) -> int:
        return len(self.lon)

    def counts(self) -> dict[str, int]:
        return {s: int(self.species[:, i].sum()) for i, s in enumerate(self.symbols)}

    def subset(self, keep: np.ndarray) -> "Records":
        idx = np.flatnonzero(keep)
        return Records(self.lon[idx], self.lat[idx], self.species[idx], self.symbols,
                       [self.names[i] for i in idx], [self.commodities[i] for i in idx], self.source,
                       self.skipped_out_of_range, self.skipped_processing,
                       [self.datasets[i] for i in idx] if self.datasets else [])

    def from_datasets(self, names: Sequence[str]) -> np.ndarray:
        """(N,) bool: records whose source data set (the ``dataset`` column) is one of ``names``."""
        wanted = set(names)
        return np.array([d in wanted for d in self.datasets], bool) if self.datasets else np.zeros(len(self), bool)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="replace", newline="")
    return open(path, encoding="utf-8", errors="replace", newline="")


def detect_format(columns: list[str]) -> str:
    """'minmod' or 'mrds' from the header; an :class:`InputError` naming the expected columns otherwise."""
    cols = {c.strip().lower() for c in columns}
    if all(c in cols for c in MINMOD_COLUMNS):
        return "minmod"
    if all(c in cols for c in MRDS_COLUMNS):
        return "mrds"
    raise InputError(
        "Unknown records format: the CSV needs either the MinMod columns "
        f"({', '.join(MINMOD_COLUMNS)}; commodities separated by ';') or the USGS MRDS columns "
        f"({', '.join(MRDS_COLUMNS)}, optionally commod2, commod3, dev_stat, site_name). "
        f"Found: {', '.join(columns[:20]) or 'no header'}.")


def read_records(path: str | Path, catalog: Optional[SpeciesCatalog] = None,
                 include_processing_sites: bool = False) -> Records:
    """Read records, keep those naming at least one catalog species, skip (and count) rows with
    missing or out-of-range coordinates and, in MRDS files, processing plants (dev_stat 'Plant')."""
    path = Path(path)
    catalog = catalog or SpeciesCatalog()
    if not path.exists():
        raise InputError(f"Records file {path} does not exist.")
    lon_l: list[float] = []
    lat_l: list[float] = []
    sp_l: list[list[bool]] = []
    names: list[str] = []
    comms: list[str] = []
    datasets: list[str] = []
    bad = plants = 0
    symbols = catalog.symbols
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        fmt = detect_format(reader.fieldnames or [])
        lower = {c.strip().lower(): c for c in reader.fieldnames or []}
        if fmt == "minmod":
            xcol, ycol, ccols, ncol = lower["lon"], lower["lat"], [lower["commodities"]], lower.get("name")
        else:
            xcol, ycol, ncol = lower["longitude"], lower["latitude"], lower.get("site_name")
            ccols = [lower[c] for c in MRDS_COMMODITY_COLUMNS if c in lower]
        stat_col = lower.get("dev_stat") if fmt == "mrds" else None
        dataset_col = lower.get("dataset")
        for row in reader:
            if stat_col and not include_processing_sites and \
                    (row.get(stat_col) or "").strip().lower() == MRDS_PROCESSING_STATUS:
                plants += 1
                continue
            fields = [row.get(c) or "" for c in ccols]
            found = catalog.match(fields)
            if not found:
                continue
            try:
                x, y = float(row[xcol]), float(row[ycol])
            except (TypeError, ValueError):
                bad += 1
                continue
            if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0) or (x == 0.0 and y == 0.0):
                bad += 1
                continue
            lon_l.append(x)
            lat_l.append(y)
            sp_l.append([s in found for s in symbols])
            names.append((row.get(ncol) or "") if ncol else "")
            comms.append("; ".join(f for f in fields if f))
            datasets.append((row.get(dataset_col) or "").strip() if dataset_col else "")
    if bad:
        warnings.warn(f"{path.name}: skipped {bad} record(s) with missing or out-of-range coordinates "
                      "(longitude must be in [-180, 180], latitude in [-90, 90], WGS84 degrees).",
                      stacklevel=2)
    species = np.array(sp_l, dtype=bool).reshape(len(sp_l), len(symbols))
    return Records(np.array(lon_l, float), np.array(lat_l, float), species, symbols, names, comms,
                   source=str(path), skipped_out_of_range=bad, skipped_processing=plants,
                   datasets=datasets)
