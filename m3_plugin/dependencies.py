"""Which Python packages M3 needs that QGIS does not ship; where the plugin installs them (a folder it
owns on the QGIS profile, first on ``sys.path``; never QGIS's or the system's site-packages); which
torch build comes from where; the pip commands; and the tidying after pip, so that QGIS's own numpy,
GDAL, scipy and Qt stay QGIS's. No Qt here."""
from __future__ import annotations

import csv
import importlib
import importlib.machinery
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Optional, Sequence
from urllib.parse import urlparse
from urllib.request import url2pathname

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
# Packages QGIS's Python brings, built against its GDAL, Qt and numpy: when pip puts a copy of one in the
# plugin's folder (as a dependency of torch & co.), the copy is removed, so that QGIS's own stays in use.
QGIS_OWNED = ("numpy", "scipy", "osgeo", "rasterio", "PyQt5", "PyQt6", "sip", "qgis", "shapely", "pyproj",
              "pandas", "matplotlib", "fiona")
# torch.compile's compiler: M3 never uses it, and its LLVM crashed the QGIS app (it clashed with Mesa's LLVM).
NOT_USED = ("triton",)
TORCH_INDEX = "https://download.pytorch.org/whl"
WINDOWS_CUDA_TAG = "cu128"  # PyPI's Windows torch is the CPU build; the CUDA one comes from PyTorch's index
# torch + torchvision + what they pull, in GB: (download, on disk), measured on Linux x86-64, Python 3.11:
# CPU = torch 2.13.0+cpu, CUDA = torch 2.14.1+cu130 with its nvidia-* libraries (docs: installer notes).
TORCH_SIZES_GB = {"cpu": (0.2, 0.9), "cuda": (3.1, 4.6)}


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
    """Put the plugin's package folder FIRST on ``sys.path``, so that torch imports what pip installed beside it
    (its sympy, networkx...) rather than older copies elsewhere; QGIS's numpy & co. are never in that folder
    (:func:`drop_from_folder`). True when the folder is there."""
    folder = Path(folder or deps_dir())
    if not folder.is_dir():
        return False
    entry = str(folder)
    if sys.path[:1] != [entry]:
        while entry in sys.path:
            sys.path.remove(entry)
        sys.path.insert(0, entry)
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
        return "Click Install in the M3 dock to add them to a folder of the plugin."
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


def variant_label(variant: str) -> str:
    """The torch build as the dock offers it, with its measured size."""
    if variant == "default":
        return "torch (Apple silicon / Intel Mac build)"
    download, _disk = TORCH_SIZES_GB[variant]
    return f"torch for {'CPU' if variant == 'cpu' else 'CUDA GPUs'} ({download:g} GB)"


def pypi_torch_build(platform: str = sys.platform) -> str:
    """Which build PyPI's torch wheel is on ``platform``: the CUDA one on Linux, the CPU one on Windows."""
    if platform.startswith("linux"):
        return "cuda"
    return "default" if platform == "darwin" else "cpu"


def torch_index(variant: str, platform: str = sys.platform) -> Optional[str]:
    """PyTorch's package index that serves the ``variant`` build on ``platform``; None where PyPI's wheel is it."""
    if variant == "cpu" and platform.startswith("linux"):
        return f"{TORCH_INDEX}/cpu"
    if variant == "cuda" and platform.startswith("win"):
        return f"{TORCH_INDEX}/{WINDOWS_CUDA_TAG}"
    return None


def index_reachable(index: str, timeout: float = 8.0) -> bool:
    """Whether the package index answers for torch (a short HTTP request; a ``file:`` index is looked up on disk)."""
    page = index.rstrip("/") + "/torch/"
    if page.startswith("file:"):
        return Path(url2pathname(urlparse(page).path)).is_dir()
    try:
        with urllib.request.urlopen(urllib.request.Request(page, method="HEAD"), timeout=timeout) as response:
            return response.status < 400
    except (OSError, ValueError):  # URLError, HTTPError, timeouts, bad URLs
        return False


def fallback_warning(variant: str, platform: str = sys.platform) -> str:
    """What the dock says when the index of the chosen torch build cannot be reached and PyPI serves another."""
    index = torch_index(variant, platform) or "PyTorch's index"
    other = pypi_torch_build(platform)
    what = "the CUDA build" if other == "cuda" else "the CPU build"
    size = ""
    if other in TORCH_SIZES_GB:
        download, disk = TORCH_SIZES_GB[other]
        size = f" (about {download:g} GB to download, {disk:g} GB on disk)"
    return (f"PyTorch's package index ({urlparse(index).netloc or index}) cannot be reached from this computer, "
            f"so the {variant.upper()} build of torch cannot be downloaded. Only {what} can be fetched, from "
            f"PyPI{size}. It runs on the CPU too. Click the button below to download it anyway, or try again "
            "later (a firewall or proxy may block the index).")


def free_space_problem(folder: Path, need_gb: float) -> str:
    """What to do when the disk holding ``folder`` has less than ``need_gb`` free; empty when it has enough."""
    probe = Path(folder)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    free = shutil.disk_usage(probe).free / 1e9
    if free >= need_gb:
        return ""
    return (f"Only {free:.1f} GB is free on the disk of {folder}; the install needs about {need_gb:.0f} GB while it "
            "runs. Free some space, then click Install again.")


def qgis_numpy_version() -> Optional[str]:
    """The numpy QGIS runs (its public version, without a local label), or None when QGIS has none."""
    spec = _spec_outside("numpy", deps_dir())
    if spec is None:
        return None
    try:
        import numpy

        return numpy.__version__.split("+")[0]
    except ImportError:
        return None


def constraints_text(pins: Optional[dict[str, str]] = None) -> str:
    """pip constraints: the numpy QGIS runs (GDAL and QGIS are built against it; the copy pip puts in the folder is
    removed afterwards), else numpy 1.x; and ``pins`` (name -> exact version)."""
    version = qgis_numpy_version()
    lines = [f"numpy=={version}" if version else "numpy<2"]
    lines += [f"{name}=={v}" for name, v in sorted((pins or {}).items())]
    return "\n".join(lines) + "\n"


def _pip(python: Path) -> list[str]:
    return [str(python), "-m", "pip"]


def _common(constraints: Optional[Path], raw_progress: bool, extra_args: Sequence[str]) -> list[str]:
    args = ["--disable-pip-version-check", "--no-input"]
    if raw_progress:
        args += ["--progress-bar", "raw"]
    if constraints is not None:
        args += ["--constraint", str(constraints)]
    return args + list(extra_args)


def pip_download_command(python: Path, packages: Sequence[str], dest: Path, index: str,
                         constraints: Optional[Path] = None, raw_progress: bool = False,
                         extra_args: Sequence[str] = ()) -> list[str]:
    """``pip download`` of ``packages`` (torch, torchvision) from ``index`` ONLY (no fallback to PyPI)."""
    return (_pip(python) + ["download", "--dest", str(dest), "--index-url", index]
            + _common(constraints, raw_progress, extra_args) + [REQUIRED.get(p, p) for p in packages])


def pip_install_command(python: Path, packages: Sequence[str], target: Path, constraints: Optional[Path] = None,
                        find_links: Sequence[Path] = (), raw_progress: bool = False,
                        extra_args: Sequence[str] = ()) -> list[str]:
    """``pip install --target <plugin folder>`` of ``packages`` from pip's own index (PyPI unless the user's pip
    configuration says otherwise) and ``find_links`` (the torch wheels fetched by :func:`pip_download_command`)."""
    links: list[str] = []
    for folder in find_links:
        links += ["--find-links", str(folder)]
    return (_pip(python) + ["install", "--target", str(target), "--upgrade"] + links
            + _common(constraints, raw_progress, extra_args) + [REQUIRED.get(p, p) for p in packages])


WHEEL_NAME = re.compile(r"^(?P<name>[^-]+)-(?P<version>[^-]+)-.+\.whl$")


def wheel_pins(folder: Path, names: Sequence[str]) -> dict[str, str]:
    """Exact versions (local label included, e.g. ``2.13.0+cpu``) of the wheels of ``names`` in ``folder``."""
    wanted = {_normal(n) for n in names}
    pins: dict[str, str] = {}
    for wheel in sorted(folder.glob("*.whl")):
        m = WHEEL_NAME.match(wheel.name)
        if m and _normal(m["name"]) in wanted:
            pins[_normal(m["name"])] = m["version"]
    return pins


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _spec_outside(module: str, folder: Path):
    """Where ``module`` would be found on ``sys.path`` without ``folder`` (QGIS's own copy), or None."""
    entries = [p for p in sys.path if os.path.normcase(os.path.abspath(p or ".")) != os.path.normcase(str(folder))]
    return importlib.machinery.PathFinder.find_spec(module, entries)


def _distributions(folder: Path) -> dict[Path, list[PurePosixPath]]:
    """Each ``*.dist-info`` folder in ``folder`` -> the paths its RECORD lists, relative to ``folder`` (scripts,
    recorded as ``../../bin/x`` by ``pip --target``, as ``bin/x``)."""
    found: dict[Path, list[PurePosixPath]] = {}
    for info in folder.glob("*.dist-info"):
        paths = [PurePosixPath(info.name)]
        record = info / "RECORD"
        if record.is_file():
            for row in csv.reader(record.read_text(encoding="utf-8", errors="replace").splitlines()):
                parts = [p for p in PurePosixPath(row[0]).parts if p != ".."] if row else []
                if parts:
                    paths.append(PurePosixPath(*parts))
        found[info] = paths
    return found


def drop_from_folder(folder: Path, modules: Sequence[str] = QGIS_OWNED) -> list[str]:
    """Remove from ``folder`` the distributions providing ``modules`` that QGIS's Python already has elsewhere, and
    those in :data:`NOT_USED`; returns what was removed (``numpy 1.24.2``...). Nothing outside ``folder`` is touched."""
    folder = Path(folder)
    dists = _distributions(folder)
    unwanted = {m for m in modules if _spec_outside(m, folder) is not None} | set(NOT_USED)
    doomed = [info for info, paths in dists.items() if unwanted & {p.parts[0] for p in paths}]
    kept_tops = {p.parts[0] for info, paths in dists.items() if info not in doomed for p in paths}
    removed: list[str] = []
    for info in doomed:
        for rel in dists[info]:
            top = folder / rel.parts[0]
            path = folder / rel if rel.parts[0] == "bin" or rel.parts[0] in kept_tops else top
            if not _inside(path, folder) or path == folder:
                continue
            if rel.parts[0] in kept_tops and rel.parts[0] != "bin" and path.is_dir():
                continue  # a namespace folder another package also uses: only this package's files go
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        removed.append(f"{name} {version}".strip())
    return removed


def _inside(path: Path | str, folder: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(folder))
        return True
    except ValueError:
        return False


def folder_modules(folder: Path) -> set[str]:
    """Top-level module names ``folder`` holds (packages, modules, extension modules)."""
    names: set[str] = set()
    for entry in Path(folder).iterdir():
        stem = entry.name.split(".")[0]
        if not stem.isidentifier() or stem in ("bin", "__pycache__"):
            continue
        if entry.is_dir() and "." not in entry.name:
            names.add(entry.name)
        elif entry.suffix in (".py", ".so", ".pyd"):
            names.add(stem)
    return names


def stale_modules(folder: Path) -> dict[str, str]:
    """Modules this QGIS process already imported from elsewhere that ``folder`` now holds a copy of: this process
    keeps using the old copies until QGIS restarts. Name -> where the loaded one lives."""
    stale: dict[str, str] = {}
    for name in sorted(folder_modules(folder)):
        module = sys.modules.get(name)
        if module is None:
            continue
        where = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or []), None)
        if where and not _inside(where, folder):
            stale[name] = str(where)
    return stale


def folder_size(folder: Path) -> int:
    """Bytes of the files below ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile (pip moves its temporary files)
                pass
    return total

