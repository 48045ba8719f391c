"""Which Python packages M3 needs that QGIS does not ship, and how to install them into QGIS's Python."""
from __future__ import annotations

import importlib.util
import sys

# import name -> pip name
REQUIRED = {
    "numpy": "numpy",
    "scipy": "scipy",
    "rasterio": "rasterio",
    "torch": "torch",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "safetensors": "safetensors",
}


def missing_packages() -> list[str]:
    """Import names of the required packages that QGIS's Python cannot find."""
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def install_hint(missing: list[str]) -> str:
    """A sentence saying how to install the ``missing`` packages on this platform."""
    pips = " ".join(REQUIRED[name] for name in missing)
    if sys.platform.startswith("win"):
        return f'Open the "OSGeo4W Shell" and run: python -m pip install {pips}, then restart QGIS.'
    if sys.platform == "darwin":
        return f"Run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install {pips}, then restart QGIS."
    return (f'Run: /usr/bin/python3 -m pip install --user {pips} "numpy<2" (add --break-system-packages on '
            "Debian 12 / Ubuntu 24.04; Debian's python3-rasterio and python3-scipy are the best rasterio and "
            "scipy), then restart QGIS.")


def missing_message(missing: list[str]) -> str:
    """What the plugin shows when packages are missing."""
    return f"{', '.join(missing)} not installed in QGIS's Python. {install_hint(missing)}"
