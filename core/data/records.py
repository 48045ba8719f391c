"""Mineral occurrence records from CSV: the MinMod-style export and the USGS MRDS format."""
from __future__ import annotations

import csv
import gzip
import io
import itertools
import warnings
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence

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
# first bytes of files that are not CSV text, and what they are
BINARY_SIGNATURES = ((b"SQLite format 3\x00", "a GeoPackage (SQLite)"), (b"\x00\x00\x27\x0a", "a shapefile (.shp)"),
                     (b"PK\x03\x04", "a zip archive (an Excel .xlsx or zipped files)"),
                     (b"\xd0\xcf\x11\xe0", "an old Excel (.xls) workbook"), (b"%PDF", "a PDF"),
                     (b"II*\x00", "a GeoTIFF"), (b"MM\x00*", "a GeoTIFF"), (b"\x89PNG", "a PNG image"),
                     (b"\x1f\x8b", "gzip-compressed (name it .csv.gz)"))
EXPORT_HINT = ("Export the points to CSV with WGS84 lon/lat columns, e.g. `ogr2ogr -f CSV -t_srs EPSG:4326 "
               "-lco GEOMETRY=AS_XY records.csv layer.gpkg` (then --lon-column X --lat-column Y).")


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
    rows_read: int = 0                                   # data rows of the file
    skipped_swapped: int = 0      # of skipped_out_of_range: in range with longitude and latitude swapped
    skipped_projected: int = 0    # of skipped_out_of_range: values of projected metres (|v| > 1000)

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
                       self.skipped_no_species, self.unmatched_spellings, self.rows_read, self.skipped_swapped,
                       self.skipped_projected)

    def coordinates_note(self) -> str:
        """What the skipped coordinates look like, when they say why ('' otherwise)."""
        return coordinates_note(self.skipped_out_of_range, self.skipped_swapped, self.skipped_projected)


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


def coordinates_note(skipped: int, swapped: int, projected: int) -> str:
    """Why ``skipped`` rows' coordinates were out of range, when most say the same: ``swapped`` of
    them are in range with longitude and latitude swapped, ``projected`` hold metres ('' otherwise)."""
    if swapped and swapped >= skipped / 2:
        return (f"{swapped} of them would be in range with longitude and latitude swapped: the columns look "
                "swapped; name them with --lon-column and --lat-column")
    if projected and projected >= skipped / 2:
        return (f"{projected} of them hold values of projected metres, not degrees: reproject the records to "
                "WGS84 lon/lat (e.g. `ogr2ogr -f CSV -t_srs EPSG:4326 -lco GEOMETRY=AS_XY ...`)")
    return ""


def check_text_file(path: Path, what: str = "Records file") -> None:
    """Refuse, with what it is, a path that is not a CSV text file: missing, a folder, or binary
    (a GeoPackage, a shapefile, a workbook ...; a .gz name that is not gzip)."""
    if not path.exists():
        raise InputError(f"{what} {path} does not exist.")
    if path.is_dir():
        raise InputError(f"{what} {path} is a folder; give the CSV file (.csv or .csv.gz).")
    with open(path, "rb") as fh:
        head = fh.read(4096)
    gz = path.suffix.lower() == ".gz"
    if gz and not head.startswith(b"\x1f\x8b"):
        raise InputError(f"{what} {path} is not gzip-compressed although its name ends in .gz; if it is a plain "
                         "CSV, rename it to .csv.")
    if gz:
        return
    kind = next((k for sig, k in BINARY_SIGNATURES if head.startswith(sig)), None)
    if kind is None and b"\x00" in head:
        kind = "a binary file"
    if kind is not None:
        raise InputError(f"{what} {path} is {kind}, not a CSV text file. {EXPORT_HINT}")


def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8 text; a byte-order mark (Excel's 'CSV UTF-8') is dropped."""
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", errors="replace", newline="")
    return open(path, encoding="utf-8-sig", errors="replace", newline="")


DELIMITERS = ",;\t|"  # a comma first: it wins a tie


def delimiter_of(header: str) -> str:
    """The cell separator a CSV's header line uses: of comma, semicolon (spreadsheets set to a
    language that writes decimal commas), tab and bar, the one it holds most of; a comma if none."""
    counts = [header.count(d) for d in DELIMITERS]
    return DELIMITERS[counts.index(max(counts))] if max(counts) else ","


SEPARATOR_NAMES = {",": "a comma", ";": "a semicolon", "\t": "a tab", "|": "a bar"}


def separator_name(path: Path) -> str:
    """How the separator of the CSV at ``path`` is called, for messages ("a semicolon")."""
    with _open_text(path) as fh:
        return SEPARATOR_NAMES[delimiter_of(fh.readline())]


def parse_number(text: str) -> float:
    """A number as a CSV cell holds it, with a decimal point or, as written where the separator is a
    semicolon, a decimal comma ("-110,5"); :class:`ValueError` otherwise."""
    try:
        return float(text)
    except ValueError:
        t = text.strip()
        if t.count(",") == 1 and "." not in t:
            return float(t.replace(",", "."))
        raise


def csv_rows(path: Path, what: str = "Records file") -> Iterator[tuple[int, list[str]]]:
    """The rows of a CSV file (the header first) with the line each starts on, its cells separated as
    its header is (:func:`delimiter_of`). A row that cannot be read — a cell past the csv module's
    limit (128 KiB, most often an unclosed quote swallowing the file), a cut-short or damaged .gz — is
    an :class:`InputError` naming the line."""
    check_text_file(path, what)
    line = 1
    with _open_text(path) as fh:
        try:
            header = fh.readline()
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise InputError(f"{path} is cut short or damaged ({e}); download or compress it again.") from None
        reader = csv.reader(itertools.chain([header], fh), delimiter=delimiter_of(header))
        try:
            for row in reader:
                yield line, row
                line = reader.line_num + 1
        except csv.Error as e:
            raise InputError(f"{path}, line {line}: cannot be read as CSV ({e}). A quote opened there and not "
                             "closed swallows the lines after it: close or remove it.") from None
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise InputError(f"{path} is cut short or damaged after line {line} ({e}); download or compress it "
                             "again.") from None


def check_header(path: Path, columns: Sequence[str]) -> None:
    """Refuse a header naming a column twice (compared as the column spellings are: case, spaces
    and hyphens aside): the reader would keep one and drop the other without a word."""
    seen: dict[str, int] = {}
    for i, c in enumerate(columns):
        k = _key(c)
        if k and k in seen:
            raise InputError(f"{path}: the header names column {c.strip()!r} twice (columns {seen[k] + 1} and {i + 1}); "
                             "M3 would read one and drop the other. Rename or remove one of them.")
        seen[k] = i


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
    lon_l: list[float] = []
    lat_l: list[float] = []
    sp_l: list[list[bool]] = []
    names: list[str] = []
    comms: list[str] = []
    datasets: list[str] = []
    bad = plants = 0
    unmatched: Counter = Counter()
    symbols = catalog.symbols
    rows = csv_rows(path)
    first = next(rows, None)
    header = [c.replace("\ufeff", "") for c in (first[1] if first else [])]
    check_header(path, header)
    cols = resolve_columns(header, columns)
    index = {c: i for i, c in enumerate(header)}
    xcol, ycol, ncol = index[cols["lon"]], index[cols["lat"]], index.get(cols["name"])
    ccols = [index[c] for c in cols["commodity"]]
    stat_col, dataset_col = index.get(cols["dev_stat"]), index.get(cols["source"])
    read_cols = [c for c in (xcol, ycol, ncol, stat_col, dataset_col, *ccols) if c is not None]
    n_rows = swapped = projected = 0

    def cell(row: list[str], i: Optional[int]) -> str:
        return row[i] if i is not None and i < len(row) else ""

    for line, row in rows:
        if not any(f.strip() for f in row):
            continue
        n_rows += 1
        if len(row) > len(header) and any(f.strip() for f in row[len(header):]):
            raise InputError(f"{path}, line {line}: {len(row)} cells but the header names {len(header)}; a cell "
                             f"holding {separator_name(path)} (the separator) must be quoted (\"Gold, Silver\"). "
                             "Fix the line or quote the cell.")
        broken = next((header[i] for i in read_cols if "\n" in cell(row, i) or "\r" in cell(row, i)), None)
        if broken is not None:
            raise InputError(f"{path}, line {line}: the {broken} cell runs over several lines: a quote opened "
                             "there is closed on a later line, so the lines between would be read as one record. "
                             "Close or remove the quote.")
        if stat_col is not None and not include_processing_sites and \
                cell(row, stat_col).strip().lower() == MRDS_PROCESSING_STATUS:
            plants += 1
            continue
        fields = [cell(row, c) for c in ccols]
        found = catalog.match(fields)
        if not found:
            unmatched["; ".join(f.strip() for f in fields if f.strip()) or NO_COMMODITY] += 1
            continue
        try:
            x, y = parse_number(cell(row, xcol)), parse_number(cell(row, ycol))
        except (TypeError, ValueError):
            bad += 1
            continue
        if not (-180.0 <= x <= 180.0 and -90.0 <= y <= 90.0) or (x == 0.0 and y == 0.0) \
                or not (np.isfinite(x) and np.isfinite(y)):
            bad += 1
            swapped += int(-180.0 <= y <= 180.0 and -90.0 <= x <= 90.0 and (x, y) != (0.0, 0.0))
            projected += int(max(abs(x), abs(y)) > 1000.0 and np.isfinite(x) and np.isfinite(y))
            continue
        lon_l.append(x)
        lat_l.append(y)
        sp_l.append([s in found for s in symbols])
        names.append(cell(row, ncol))
        comms.append("; ".join(f for f in fields if f))
        datasets.append(cell(row, dataset_col).strip())
    note = ""
    if bad:
        note = coordinates_note(bad, swapped, projected)
        warnings.warn(f"{path.name}: skipped {bad} record(s) with missing or out-of-range coordinates "
                      "(longitude must be in [-180, 180], latitude in [-90, 90], WGS84 degrees)"
                      + (f"; {note}." if note else "."), stacklevel=2)
    species = np.array(sp_l, dtype=bool).reshape(len(sp_l), len(symbols))
    records = Records(np.array(lon_l, float), np.array(lat_l, float), species, symbols, names, comms,
                      source=str(path), skipped_out_of_range=bad, skipped_processing=plants,
                      datasets=datasets, skipped_no_species=sum(unmatched.values()),
                      unmatched_spellings=dict(unmatched), rows_read=n_rows, skipped_swapped=swapped,
                      skipped_projected=projected)
    if records.skipped_no_species:
        warnings.warn(records.unmatched_note(), stacklevel=2)
    return records
