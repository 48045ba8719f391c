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
    src = rasterio.open(path)
    text = src.tags().get(tag)
    if text is None:
        src.close()
        raise InputError(f"{path} is not an M3 {what} (no {tag} tag). Make one with: {make}")
    return src, json.loads(text), Grid(src.crs, src.transform, src.height, src.width)
