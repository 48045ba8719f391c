"""Records CSVs are read as written or refused with the line to fix, and a stack that would hold no
record is refused with the reason (exit 2), never written.

Every file is small and made here (points in a 20 x 20 km square in EPSG:5070).
"""
from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from core.data.build_stack import build_stack
from core.data.records import read_records
from core.errors import InputError
from tests.test_input_checks import X0, Y0, build_cli, inside_points


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def refused(tmp_path: Path, records: Path, capsys) -> str:
    """build-stack on ``records``: exit 2, no stack, no traceback; returns the message."""
    assert build_cli(tmp_path, records, "--species", "Au", "Cu") == 2
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err
    assert not (tmp_path / "s.tif").exists()
    return err


# -- columns and quotes -----------------------------------------------------------------------------------
def test_a_column_named_twice_is_refused(tmp_path, capsys):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv", f"lon,lat,commodities,lon\n{x},{y},Gold,-50\n")
    with pytest.raises(InputError, match=r"names column 'lon' twice \(columns 1 and 4\)"):
        read_records(csv)
    assert "twice" in refused(tmp_path, csv, capsys)


def test_two_commodity_columns_are_refused(tmp_path):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv", f"lon,lat,commodities,commodities\n{x},{y},Gold,Copper\n")
    with pytest.raises(InputError, match="'commodities' twice"):
        read_records(csv)


def test_an_unbalanced_quote_is_refused_with_its_line(tmp_path, capsys):
    (x0, y0), (x1, y1), (x2, y2) = inside_points(3)
    csv = write(tmp_path / "r.csv", f'lon,lat,commodities,name\n{x0},{y0},Gold,"Mine A\n{x1},{y1},Copper,Mine B\n'
                                    f'{x2},{y2},Copper,"Mine C"\n')
    with pytest.raises(InputError, match=r"line 2: the name cell runs over several lines"):
        read_records(csv)
    assert "line 2" in refused(tmp_path, csv, capsys)


def test_an_unclosed_quote_at_the_end_is_refused_with_its_line(tmp_path):
    (x0, y0), (x1, y1) = inside_points(2)
    csv = write(tmp_path / "r.csv", f'lon,lat,commodities\n{x0},{y0},Gold\n{x1},{y1},"Copper\n')
    with pytest.raises(InputError, match="line 3"):
        read_records(csv)


def test_a_comma_in_an_unquoted_cell_is_refused(tmp_path):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv", f"lon,lat,commodities\n{x},{y},Gold, Copper\n")
    with pytest.raises(InputError, match="line 2: 4 cells but the header names 3"):
        read_records(csv)


def test_a_commodity_cell_over_128_kib_is_a_message(tmp_path, capsys):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv", f'lon,lat,commodities\n{x},{y},"{"Gold;" * 40_000}"\n')
    with pytest.raises(InputError, match="line 2: cannot be read as CSV"):
        read_records(csv)
    assert "line 2" in refused(tmp_path, csv, capsys)


# -- files that are not CSV text --------------------------------------------------------------------------
def test_a_truncated_csv_gz_is_a_message(tmp_path, capsys):
    pts = inside_points(5)
    data = gzip.compress(("lon,lat,commodities\n" + "".join(f"{x},{y},Gold\n" for x, y in pts) * 200).encode())
    csv = tmp_path / "r.csv.gz"
    csv.write_bytes(data[: len(data) // 2])
    assert "cut short or damaged" in refused(tmp_path, csv, capsys)


def test_a_text_file_named_csv_gz_is_a_message(tmp_path, capsys):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv.gz", f"lon,lat,commodities\n{x},{y},Gold\n")
    assert "rename it to .csv" in refused(tmp_path, csv, capsys)


def test_a_folder_as_records_is_a_message(tmp_path, capsys):
    folder = tmp_path / "records"
    folder.mkdir()
    assert "is a folder" in refused(tmp_path, folder, capsys)


def test_a_geopackage_as_records_says_what_it_is(tmp_path, capsys):
    gpkg = tmp_path / "sites.gpkg"
    con = sqlite3.connect(gpkg)
    con.execute("CREATE TABLE gpkg_contents (table_name TEXT)")
    con.commit()
    con.close()
    err = refused(tmp_path, gpkg, capsys)
    assert "is a GeoPackage" in err and "ogr2ogr" in err and "SQLite format 3" not in err


def test_a_shapefile_as_records_says_what_it_is(tmp_path, capsys):
    shp = tmp_path / "sites.shp"
    shp.write_bytes(b"\x00\x00\x27\x0a" + b"\x00" * 96)
    assert "is a shapefile" in refused(tmp_path, shp, capsys)


# -- no record kept: refused, with the reason -------------------------------------------------------------
def test_swapped_latitude_and_longitude_are_refused_and_named(tmp_path, capsys):
    pts = inside_points(4)
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n" + "".join(f"{y},{x},Gold\n" for x, y in pts))
    err = refused(tmp_path, csv, capsys)
    assert "No record" in err and "swapped" in err and "--lon-column" in err


def test_swapped_coordinates_in_range_are_named_too(tmp_path):
    """Latitude and longitude both in [-90, 90] (a region in Europe or Africa): in range when
    swapped, so only the region tells."""
    # an outline around 10°E 45°N in UTM 32N; records given as lat,lon in the lon,lat columns
    ring = [[570_000, 4_970_000], [600_000, 4_970_000], [600_000, 5_000_000], [570_000, 5_000_000],
            [570_000, 4_970_000]]
    outline = tmp_path / "europe.geojson"
    outline.write_text(json.dumps({"type": "FeatureCollection",
                                   "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32632"}},
                                   "features": [{"type": "Feature", "properties": {},
                                                 "geometry": {"type": "Polygon", "coordinates": [ring]}}]}))
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n45.0,10.0,Gold\n45.05,10.05,Gold\n45.1,10.1,Gold\n")
    with pytest.raises(InputError, match="swapped 3 of them would fall inside"):
        build_stack(tmp_path / "s.tif", records=csv, aux_rasters=[], faults=None, outline=outline,
                    crs="EPSG:32632", resolution=2000, point_samples=(), categorical_polygons=(),
                    line_attributes=())


def test_records_in_projected_metres_are_refused_and_named(tmp_path, capsys):
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n" + "".join(
        f"{X0 + 2000 * i},{Y0 + 3000 * i},Gold\n" for i in range(1, 4)))
    err = refused(tmp_path, csv, capsys)
    assert "No record" in err and "projected metres" in err


def test_a_header_only_csv_is_refused(tmp_path, capsys):
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n")
    err = refused(tmp_path, csv, capsys)
    assert "No record" in err and "0 row(s) read" in err


def test_records_all_outside_the_outline_are_refused(tmp_path, capsys):
    csv = write(tmp_path / "r.csv", "lon,lat,commodities\n-80.0,35.0,Gold\n")
    err = refused(tmp_path, csv, capsys)
    assert "1 outside the outline" in err


def test_a_normal_csv_still_builds(tmp_path, capsys):
    pts = inside_points(3)
    csv = write(tmp_path / "r.csv", 'lon,lat,commodities,name\n' + "".join(
        f'{x},{y},"Gold, Copper","Mine ""{i}"""\n' for i, (x, y) in enumerate(pts)))
    assert build_cli(tmp_path, csv, "--species", "Au", "Cu") == 0
    recs = read_records(csv)
    assert recs.names == ['Mine "0"', 'Mine "1"', 'Mine "2"'] and recs.counts()["Cu"] == 3


@pytest.mark.parametrize("sep, decimal", [(";", ","), (";", "."), ("\t", "."), ("|", ".")])
def test_a_spreadsheet_export_with_another_separator_reads_as_the_comma_csv(tmp_path, sep, decimal):
    """Spreadsheets set to a language that writes decimal commas export CSVs separated by
    semicolons; tabs and bars are common too. They read as the same records as the comma file."""
    pts = inside_points(3)
    rows = [[f"Mine {i}", str(x), str(y), "Gold, Copper"] for i, (x, y) in enumerate(pts)]
    comma = write(tmp_path / "comma.csv", "name,lon,lat,commodities\n" + "".join(
        f'{n},{x},{y},"{c}"\n' for n, x, y, c in rows))
    other = write(tmp_path / "other.csv", sep.join(["name", "lon", "lat", "commodities"]) + "\n" + "".join(
        sep.join([n, x.replace(".", decimal), y.replace(".", decimal), c]) + "\n" for n, x, y, c in rows))
    a, b = read_records(comma), read_records(other)
    assert len(b) == 3 and b.names == a.names
    assert b.lon.tolist() == a.lon.tolist() and b.lat.tolist() == a.lat.tolist()
    assert b.species.tolist() == a.species.tolist() and b.counts()["Cu"] == 3


def test_a_decimal_comma_reads_only_as_a_number():
    from core.data.records import delimiter_of, parse_number

    assert parse_number("-110,5") == -110.5 and parse_number(" 33.25 ") == 33.25
    for text in ("1,000,5", "1.000,5", "abc", ""):
        with pytest.raises(ValueError):
            parse_number(text)
    assert delimiter_of("lon,lat,commodities\n") == "," and delimiter_of("lon;lat;name, site\n") == ";"
    assert delimiter_of("lonlat\n") == ","


def test_a_separator_in_an_unquoted_cell_is_named_as_the_file_uses_it(tmp_path):
    (x, y), = inside_points(1)
    csv = write(tmp_path / "r.csv", f"lon;lat;commodities\n{x};{y};Gold; Copper\n")
    with pytest.raises(InputError, match="line 2: 4 cells but the header names 3; a cell holding a semicolon"):
        read_records(csv)
