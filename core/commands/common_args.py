"""The arguments several commands share: the stack to read (``--stack``) and the options that name a
records CSV's columns."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.records import RecordColumns
from ..data.stack import Stack


def add_column_arguments(p: argparse.ArgumentParser) -> None:
    """``--lon-column``, ``--lat-column``, ``--commodity-column``, ``--source-column``."""
    g = p.add_argument_group("records CSV columns (default: recognised from the header: lon/longitude, "
                             "lat/latitude, commodities/commodity or MRDS commod1-3, dataset/source)")
    g.add_argument("--lon-column", metavar="NAME", help="column of WGS84 longitudes (degrees)")
    g.add_argument("--lat-column", metavar="NAME", help="column of WGS84 latitudes (degrees)")
    g.add_argument("--commodity-column", metavar="NAME[,NAME...]",
                   help="column(s) of commodity names (several names in a cell separated by ; , / or 'and')")
    g.add_argument("--source-column", metavar="NAME", help="column of each record's source data set")


def record_columns(args: argparse.Namespace) -> RecordColumns:
    return RecordColumns(lon=getattr(args, "lon_column", None), lat=getattr(args, "lat_column", None),
                         commodity=getattr(args, "commodity_column", None),
                         source=getattr(args, "source_column", None))


def add_stack_argument(p: argparse.ArgumentParser) -> None:
    """``--stack``: the stack GeoTIFF to read (default: the embedded CONUS stack)."""
    p.add_argument("--stack", type=Path, help="stack GeoTIFF (default: the embedded CONUS stack, built and "
                                               "cached on first use)")


def load_stack(path: Path | None) -> Stack:
    """The stack at ``path``, or the default stack (built and cached on first use)."""
    if path is None:
        from ..data.build_stack import default_stack_path

        path = default_stack_path()
    return Stack.read(path)
