"""The embedded default data set (resources/data) and the default grid settings."""
from __future__ import annotations

import os
from pathlib import Path

from .grid import DEFAULT_CRS, MILE_M
from .vector_aux import CategoricalPolygonsSpec, LineAttributeSpec, PointSamplesSpec


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
# USGS DS-801 soil geochemistry, C horizon (closest to bedrock; scripts/extract_geochemistry.py):
# log10 concentrations by IDW, soilC_Cu ... soilC_Bi, and soilC_sample_distance_km.
GEOCHEMISTRY = DATA_DIR / "geochemistry" / "usgs_ds801_soil_c_horizon.csv.gz"
GEOCHEMISTRY_ELEMENTS = ("Cu", "Zn", "Pb", "Ni", "Co", "Cr", "Fe", "Mn", "U", "Th", "W", "Mo", "As", "Sb", "Bi")
POINT_SAMPLES = (PointSamplesSpec(GEOCHEMISTRY, tuple(f"{el}_{'pct' if el == 'Fe' else 'mgkg'}"
                                                      for el in GEOCHEMISTRY_ELEMENTS), prefix="soilC"),)
# USGS principal aquifers: ROCK_TYPE one-hot, rock_type_100 ... rock_type_999.
ROCK_TYPE = DATA_DIR / "vectors" / "principal_aquifers_rock_type.gpkg"
CATEGORICAL_POLYGONS = (CategoricalPolygonsSpec(ROCK_TYPE, "ROCK_TYPE", prefix="rock_type"),)
# NSHM 2023 Quaternary faults of the western US: slip-rate-weighted fault density.
FAULT_SLIP = DATA_DIR / "vectors" / "quaternary_faults_slip_rate_wus.gpkg"
LINE_ATTRIBUTES = (LineAttributeSpec(FAULT_SLIP, "slip_pref_mm_yr", layer="nshm23_geologic_deformation_model",
                                     sigma_km=10.0, name="fault_slip_density"),)
GRID_CRS = DEFAULT_CRS
RESOLUTION_M = MILE_M
MODELS_DIR = resources_dir() / "models"
BUNDLED_MODEL = MODELS_DIR / "m3_unet_conus.safetensors"


# The cached default stack's file name; the version changes with its bands or records, so that a
# stack cached by an older version is not taken for today's (v1: six geophysics bands; v2: 30 aux
# bands; v3: commodity names read word by word, e.g. "U V" and "Gold-Silver" now match).
DEFAULT_STACK_NAME = "conus_stack_1mile_v3.tif"


def cache_dir() -> Path:
    """Where derived files (the default stack) are cached: $M3_CACHE or ~/.cache/m3."""
    return Path(os.environ.get("M3_CACHE", Path.home() / ".cache" / "m3"))
