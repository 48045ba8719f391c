"""Opening a GeoTIFF that M3 wrote (a stack or a prediction) by its JSON metadata tag."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from .grid import Grid


def open_tagged(path: str | Path, tag: str, what: str, make: str) -> tuple[Any, dict[str, Any], Grid]:
    """The open rasterio dataset (the caller closes it), its parsed ``tag`` and its grid.
    ``what`` names the kind of file and ``make`` the command that makes one, for the errors."""
    import rasterio

    path = Path(path)
    if not path.exists():
        raise InputError(f"No {what} at {path}. Make one with: {make} --out {path}")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an M3 {what}; give the GeoTIFF file.")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(unreadable(path, what, make, e)) from None
    text = src.tags().get(tag)
    if text is None:
        src.close()
        raise InputError(f"{path} is not an M3 {what} (no {tag} tag). Make one with: {make}")
    try:
        meta = json.loads(text)
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        src.close()
        raise InputError(f"{path}: its {tag} tag is damaged ({e}). Make the {what} again with: {make}") from None
    return src, meta, Grid(src.crs, src.transform, src.height, src.width)


def unreadable(path: Path, what: str, make: str, error: Exception) -> str:
    """The message for an M3 GeoTIFF GDAL cannot read (cut short by a full disk or a copy, damaged)."""
    return (f"{path} cannot be read as a GeoTIFF ({error}): the {what} is cut short or damaged (a copy or a write that "
            f"did not finish?). Copy it again or make it again with: {make}")
