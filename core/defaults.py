"""The embedded default data set (resources/data) and the default grid settings."""
from __future__ import annotations

import os
from pathlib import Path

from .grid import DEFAULT_CRS, MILE_M


def resources_dir() -> Path:
    """``resources/`` of the repository, or of the installed plugin (where core is ``m3_plugin/core``)."""
    here = Path(__file__).resolve().parent
    for cand in (here.parent / "resources", here.parent.parent / "resources"):
        if (cand / "data").is_dir():
            return cand
    return here.parent / "resources"


DATA_DIR = resources_dir() / "data"
RECORDS = DATA_DIR / "records" / "mineral_sites_us.csv.gz"
AUX_RASTERS = tuple(DATA_DIR / "aux" / n for n in (
    "gravity_disturbance_10arcmin.tif",
    "geoid_height_10arcmin.tif",
    "topography_10arcmin.tif",
    "elevation_5arcmin.tif",
    "magnetic_br_lithosphere_0p25deg.tif",
))
# Units of the embedded rasters (their files carry none; see resources/data/README.md).
AUX_UNITS = {"gravity_disturbance_10arcmin": "mGal", "geoid_height_10arcmin": "m",
             "topography_10arcmin": "m", "elevation_5arcmin": "m", "magnetic_br_lithosphere_0p25deg": "nT"}
FAULTS = DATA_DIR / "vectors" / "active_faults.gpkg"
OUTLINE = DATA_DIR / "vectors" / "conus_outline.gpkg"
GRID_CRS = DEFAULT_CRS
RESOLUTION_M = MILE_M
MODELS_DIR = resources_dir() / "models"
BUNDLED_MODEL = MODELS_DIR / "m3_unet_conus.safetensors"


def cache_dir() -> Path:
    """Where derived files (the default stack) are cached: $M3_CACHE or ~/.cache/m3."""
    return Path(os.environ.get("M3_CACHE", Path.home() / ".cache" / "m3"))


def default_stack_path() -> Path:
    """The default CONUS stack, built from the embedded data on first use and cached."""
    path = cache_dir() / "conus_stack_1mile.tif"
    if not path.exists():
        from .build_stack import build_stack
        from .progress import TqdmProgress

        path.parent.mkdir(parents=True, exist_ok=True)
        build_stack(path, progress=TqdmProgress())
    return path
