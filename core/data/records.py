"""Mineral occurrence records from CSV: the MinMod-style export and the USGS MRDS format."""
from __future__ import annotations

import csv
import gzip
import io
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from .species import SpeciesCatalog

MINMOD_COLUMNS = ("lon", "lat", "commodities")
MRDS_COLUMNS = ("latitude", "longitude", "commod1")
MRDS_COMMODITY_COLUMNS = ("commod1", "commod2", "commod3")
MRDS_PROCESSING_STATUS = "plant"
# Header spellings recognised for each column (compared lower-case, spaces and hyphens as '_'),
# first match wins; --lon-column etc. name a column outright.
LON_NAMES = ("lon", "longitude", "long", "lng", "decimal_longitude", "longitude_dd", "lon_dd", "dec_long",
             "x_wgs84")
LAT_NAMES = ("lat", "latitude", "decimal_latitude", "latitude_dd", "lat_dd", "dec_lat", "y_wgs84")
COMMODITY_NAMES = ("commodities", "commodity", "commods", "commodity_list", "commodities_list",
                   "main_commodity", "primary_commodity", "commodity_name", "commod")
SOURCE_NAMES = ("dataset", "source_dataset", "data_source", "source")
NAME_NAMES = ("name", "site_name", "deposit_name", "mine_name", "site")
NO_COMMODITY = "(no commodity)"
TOP_SPELLINGS = 5


@dataclass(frozen=True)
class RecordColumns:
    """Columns of a records CSV named by the user (None: recognised from the header). ``commodity``
    may name several columns separated by commas (``commod1,commod2``)."""

    lon: Optional[str] = None
    lat: Optional[str] = None
    commodity: Optional[str] = None
    source: Optional[str] = None
    name: Optional[str] = None


def _key(column: str) -> str:
    return column.replace("\ufeff", "").strip().lower().replace(" ", "_").replace("-", "_")


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
    skipped_no_species: int = 0                          # rows whose commodities name no catalog species
    unmatched_spellings: dict[str, int] = field(default_factory=dict)  # their commodity text → rows

    def __len__(self) -> int:
        return len(self.lon)

    def counts(self) -> dict[str, int]:
        return {s: int(self.species[:, i].sum()) for i, s in enumerate(self.symbols)}

    def subset(self, keep: np.ndarray) -> "Records":
        idx = np.flatnonzero(keep)
        return Records(self.lon[idx], self.lat[idx], self.species[idx], self.symbols,
                       [self.names[i] for i in idx], [self.commodities[i] for i in idx], self.source,
                       self.skipped_out_of_range, self.skipped_processing,
                       [self.datasets[i] for i in idx] if self.datasets else [],
                       self.skipped_no_species, self.unmatched_spellings)

    def unmatched_note(self, top: int = TOP_SPELLINGS) -> str:
        """One line on the rows left out because they name no species, with the commonest
        spellings ('' when there are none)."""
        if not self.skipped_no_species:
            return ""
        common = sorted(self.unmatched_spellings.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
        listed = ", ".join(f"{k!r} ({v})" for k, v in common)
        more = len(self.unmatched_spellings) - len(common)
        return (f"{Path(self.source).name or 'records'}: {self.skipped_no_species} record(s) name none of the "
                f"species {', '.join(self.symbols)} and were left out; commonest commodity spellings: {listed}"
                + (f" and {more} other(s)" if more > 0 else "")
                + ". To count a spelling as a species add it with --extra-species (e.g. 'Au=Aurum|oro').")

    def from_datasets(self, names: Sequence[str]) -> np.ndarray:
        """(N,) bool: records whose source data set (the ``dataset`` column) is one of ``names``."""
        wanted = set(names)
        return np.array([d in wanted for d in self.datasets], bool) if self.datasets else np.zeros(len(self), bool)


def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8 text; a byte-order mark (Excel's 'CSV UTF-8') is dropped."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


def resolve_columns(columns: Sequence[str], given: Optional[RecordColumns] = None) -> dict[str, object]:
    """The header's columns for lon, lat, commodities (a list), source data set, site name and
    MRDS dev_stat: those the user named (``given``), else the first recognised spelling (MinMod,
    USGS MRDS with commod1-3, and common others: longitude, commodity, ...). An
    :class:`InputError` names what is missing, what was found and the options that name columns."""
    given = given or RecordColumns()
    keys = {_key(c): c for c in columns}

    def named(option: str, value: Optional[str]) -> Optional[str]:
        if value is None:
            return None
        if value in columns:
            return value
        if _key(value) in keys:
            return keys[_key(value)]
        raise InputError(f"--{option}-column {value!r} is not a column of the records CSV; its columns: "
                         f"{', '.join(columns[:30]) or 'none (no header)'}.")

    def find(option: str, value: Optional[str], spellings: Sequence[str]) -> Optional[str]:
        return named(option, value) if value is not None else next((keys[k] for k in spellings if k in keys), None)

    lon = find("lon", given.lon, LON_NAMES)
    lat = find("lat", given.lat, LAT_NAMES)
    if given.commodity is not None:
        commodity = [named("commodity", c.strip()) for c in given.commodity.split(",") if c.strip()]
    elif any(c in keys for c in MRDS_COMMODITY_COLUMNS):
        commodity = [keys[c] for c in MRDS_COMMODITY_COLUMNS if c in keys]
    else:
        commodity = [keys[k] for k in COMMODITY_NAMES if k in keys][:1]
    missing = [what for what, col in (("longitude", lon), ("latitude", lat), ("commodity", commodity)) if not col]
    if missing:
        raise InputError(
            f"Unknown records format: no {', '.join(missing)} column. The CSV needs either the MinMod columns "
            f"({', '.join(MINMOD_COLUMNS)}; commodities separated by ';') or the USGS MRDS columns "
            f"({', '.join(MRDS_COLUMNS)}, optionally commod2, commod3, dev_stat, site_name), or name its "
            "columns with --lon-column, --lat-column and --commodity-column (WGS84 degrees). "
            f"Found: {', '.join(columns[:20]) or 'no header'}.")
    return {"lon": lon, "lat": lat, "commodity": commodity,
            "source": find("source", given.source, SOURCE_NAMES), "name": find("name", given.name, NAME_NAMES),
            "dev_stat": keys.get("dev_stat")}


def detect_format(columns: list[str]) -> str:
    """'mrds' (commod1-3 columns) or 'minmod' (any other recognised header); an
    :class:`InputError` naming the expected columns otherwise."""
    cols = resolve_columns(columns)
    return "mrds" if any(_key(c) in MRDS_COMMODITY_COLUMNS for c in cols["commodity"]) else "minmod"


def read_records(path: str | Path, catalog: Optional[SpeciesCatalog] = None,
                 include_processing_sites: bool = False, columns: Optional[RecordColumns] = None) -> Records:
    """Read records, keep those naming at least one catalog species, skip (and count) rows with
    missing or out-of-range coordinates and processing plants (MRDS dev_stat 'Plant'). Rows naming
    no species are counted with their spelling and reported in a warning (:meth:`Records.unmatched_note`).
    ``columns``: columns named by the user (see :func:`resolve_columns`)."""
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
    unmatched: Counter = Counter()
    symbols = catalog.symbols
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        cols = resolve_columns(list(reader.fieldnames or []), columns)
        xcol, ycol, ccols, ncol = cols["lon"], cols["lat"], cols["commodity"], cols["name"]
        stat_col, dataset_col = cols["dev_stat"], cols["source"]
        for row in reader:
            if stat_col and not include_processing_sites and \
                    (row.get(stat_col) or "").strip().lower() == MRDS_PROCESSING_STATUS:
                plants += 1
                continue
            fields = [row.get(c) or "" for c in ccols]
            found = catalog.match(fields)
            if not found:
                unmatched["; ".join(f.strip() for f in fields if f.strip()) or NO_COMMODITY] += 1
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
    records = Records(np.array(lon_l, float), np.array(lat_l, float), species, symbols, names, comms,
                      source=str(path), skipped_out_of_range=bad, skipped_processing=plants,
                      datasets=datasets, skipped_no_species=sum(unmatched.values()),
                      unmatched_spellings=dict(unmatched))
    if records.skipped_no_species:
        warnings.warn(records.unmatched_note(), stacklevel=2)
    return records
