"""The arguments several commands share: the stack to read (``--stack``), the options that name a
records CSV's columns, and the one check of numeric options (:func:`number`)."""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Optional, Union

Number = Union[int, float]


def number(kind: type = float, low: Optional[Number] = None, high: Optional[Number] = None,
           low_open: bool = False, high_open: bool = False) -> Callable[[str], Number]:
    """An argparse ``type``: a finite number of ``kind`` (int or float) in ``[low, high]`` (the ends
    open when ``low_open``/``high_open``); anything else is refused with the range, before any
    work ("argument --lr: must be a finite number > 0, not 'nan'")."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    wanted = f"{'a whole number' if kind is int else 'a finite number'}{' ' + ' and '.join(parts) if parts else ''}"

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except (TypeError, ValueError):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}") from None
        if not math.isfinite(value) or (low is not None and (value < low or (low_open and value == low))) \
                or (high is not None and (value > high or (high_open and value == high))):
            raise argparse.ArgumentTypeError(f"must be {wanted}, not {text!r}")
        return value

    parse.__name__ = wanted  # argparse names the type in its message
    return parse


POSITIVE_INT = number(int, 1)
COUNT = number(int, 0)
POSITIVE = number(float, 0, low_open=True)
NON_NEGATIVE = number(float, 0)
PROBABILITY = number(float, 0, 1)
FINITE = number(float)

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
