"""Which Python packages M3 needs that QGIS does not ship; where the plugin installs them (a folder
it owns on the QGIS profile, never the system Python) and the pip command that does it."""
from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

# import name -> pip name
REQUIRED = {
    "numpy": "numpy",
    "scipy": "scipy",
    "rasterio": "rasterio",
    "torch": "torch",
    "segmentation_models_pytorch": "segmentation-models-pytorch",
    "safetensors": "safetensors",
}
# what the one-click install offers (numpy, scipy and rasterio come with QGIS or its packages:
# a pip rasterio brings its own GDAL, which clashes with QGIS's)
INSTALLABLE = ("torch", "segmentation_models_pytorch", "safetensors")
DEPS_FOLDER = "m3_dependencies"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def deps_dir() -> Path:
    """The folder the plugin installs packages into: ``python/m3_dependencies`` in the QGIS profile
    (``M3_DEPENDENCIES`` overrides it)."""
    if os.environ.get("M3_DEPENDENCIES"):
        return Path(os.environ["M3_DEPENDENCIES"])
    try:
        from qgis.core import QgsApplication

        return Path(QgsApplication.qgisSettingsDirPath()) / "python" / DEPS_FOLDER
    except ImportError:  # outside QGIS
        return Path.home() / ".m3" / DEPS_FOLDER


def activate(folder: Optional[Path] = None) -> bool:
    """Put the plugin's package folder at the end of ``sys.path`` (QGIS's own packages win, e.g. its
    numpy); True when it is there."""
    folder = Path(folder or deps_dir())
    if not folder.is_dir():
        return False
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
    importlib.invalidate_caches()
    return True


def missing_packages() -> list[str]:
    """Import names of the required packages that QGIS's Python cannot find."""
    activate()
    return [name for name in REQUIRED if importlib.util.find_spec(name) is None]


def installable(missing: Sequence[str]) -> list[str]:
    """Those of ``missing`` the Install button can add."""
    return [m for m in missing if m in INSTALLABLE]


def install_hint(missing: list[str]) -> str:
    """A sentence saying how to install the ``missing`` packages on this platform."""
    if missing and set(missing) <= set(INSTALLABLE):
        return "Click Install in the M3 dock to add them to a folder of the plugin (no restart needed)."
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


def python_executable() -> str:
    """The Python interpreter QGIS embeds (``sys.executable`` is the QGIS program on most systems)."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    names = ["python.exe", "python3.exe"] if sys.platform.startswith("win") else \
        [f"python{sys.version_info.major}.{sys.version_info.minor}", "python3"]
    for base in (Path(sys.exec_prefix), Path(sys.exec_prefix) / "bin", exe.parent):
        for name in names:
            if (base / name).is_file():
                return str(base / name)
    found = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}") or shutil.which("python3")
    return found or "python3"


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA driver answers (then the CUDA torch wheel is worth its size)."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def torch_variant() -> str:
    """``cuda`` where an NVIDIA GPU is found on Linux or Windows, else ``cpu`` (macOS: the default wheel)."""
    if sys.platform == "darwin":
        return "default"
    return "cuda" if has_nvidia_gpu() else "cpu"


def constraints_text() -> str:
    """pip constraints: the numpy QGIS runs (GDAL and QGIS are built against it), else numpy 1.x."""
    try:
        import numpy

        return f"numpy=={numpy.__version__}\n"
    except ImportError:
        return "numpy<2\n"


def pip_command(packages: Sequence[str], target: Path, variant: str = "cpu", constraints: Optional[Path] = None,
                extra_args: Sequence[str] = ()) -> list[str]:
    """``python -m pip install --target <plugin folder> …``: never into QGIS's own site-packages. The
    CPU torch wheel comes from PyTorch's CPU index (PyPI's Linux wheel is the CUDA one)."""
    cmd = [python_executable(), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
           "--target", str(target), "--upgrade"]
    if variant == "cpu" and "torch" in packages:
        cmd += ["--index-url", TORCH_CPU_INDEX, "--extra-index-url", "https://pypi.org/simple"]
    if constraints is not None:
        cmd += ["--constraint", str(constraints)]
    return cmd + list(extra_args) + [REQUIRED.get(p, p) for p in packages]
