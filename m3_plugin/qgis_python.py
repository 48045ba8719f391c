"""Finding the Python interpreter QGIS embeds, so that pip runs with it (``sys.executable`` inside QGIS
is the QGIS program, or whatever ``python3`` comes first on PATH, not QGIS's Python). Each candidate
is run and kept only when it reports QGIS's major.minor version; one reporting QGIS's own
``sys.exec_prefix`` wins. No Qt here."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

PROBE = ("import json, sys\n"
         "try:\n"
         "    import pip\n"
         "    pip_version = pip.__version__\n"
         "except Exception:\n"
         "    pip_version = None\n"
         "print(json.dumps({'version': list(sys.version_info[:2]), 'exec_prefix': sys.exec_prefix, "
         "'pip': pip_version}))\n")
NO_WINDOW = getattr(subprocess, "CREATE_NO_WINDOW", 0)  # Windows: no console window flashes up


class PythonNotFound(RuntimeError):
    """No interpreter of QGIS's Python version was found; the message says what to do."""


@dataclass(frozen=True)
class QgisPython:
    """An interpreter that reported QGIS's Python version."""

    path: Path
    version: tuple[int, int]
    exec_prefix: str
    pip: Optional[str]  # pip's version; None when this Python has no pip

    @property
    def same_prefix(self) -> bool:
        return _same_dir(self.exec_prefix, sys.exec_prefix)


def _same_dir(a: str, b: str) -> bool:
    return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))


def candidates(platform: str, executable: str, exec_prefix: str, version: Sequence[int],
               system_bin: Path = Path("/usr/bin")) -> list[Path]:
    """Where QGIS's Python may be on ``platform`` (``sys.platform``), most likely first; only existing files.

    Linux: ``<exec_prefix>/bin/pythonX.Y``, then ``/usr/bin``. Windows (OSGeo4W or the standalone installer):
    ``<exec_prefix>\\python.exe``, ``<QGIS>\\apps\\PythonXY\\python.exe``, ``<QGIS>\\bin\\python3.exe``. macOS:
    ``QGIS.app/Contents/MacOS/bin/python3``, ``<exec_prefix>/bin/python3``. A ``sys.executable`` named python*
    (QGIS started from a Python program) comes first."""
    xy, compact = f"{version[0]}.{version[1]}", f"{version[0]}{version[1]}"
    exe = Path(executable) if executable else None
    prefix = Path(exec_prefix)
    found: list[Path] = []
    if exe is not None and exe.name.lower().startswith("python"):
        found.append(exe)
    if platform.startswith("win"):
        root = exe.parent.parent if exe is not None else prefix.parent.parent  # <QGIS>\bin\qgis-bin.exe
        found += [prefix / "python.exe", root / "apps" / f"Python{compact}" / "python.exe",
                  root / "bin" / "python3.exe", root / "bin" / "python.exe"]
    elif platform == "darwin":
        macos = exe.parent if exe is not None else prefix  # QGIS.app/Contents/MacOS/QGIS
        found += [macos / "bin" / "python3", macos / "bin" / f"python{xy}", prefix / "bin" / f"python{xy}",
                  prefix / "bin" / "python3"]
    else:
        found += [prefix / "bin" / f"python{xy}", prefix / "bin" / "python3", system_bin / f"python{xy}",
                  system_bin / "python3"]
    unique: list[Path] = []
    for path in found:
        if path not in unique and path.is_file():
            unique.append(path)
    return unique


def probe(path: Path, timeout: float = 60.0) -> Optional[QgisPython]:
    """Run ``path`` and ask its version, ``sys.exec_prefix`` and pip's version; None when it does not answer."""
    try:
        done = subprocess.run([str(path), "-c", PROBE], capture_output=True, text=True, timeout=timeout,
                              creationflags=NO_WINDOW)
        info = json.loads(done.stdout.strip().splitlines()[-1])
        return QgisPython(Path(path), (int(info["version"][0]), int(info["version"][1])), str(info["exec_prefix"]),
                          info.get("pip"))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError, KeyError, TypeError):
        return None


def find_qgis_python(platform: str = sys.platform, executable: str = sys.executable,
                     exec_prefix: str = sys.exec_prefix, version: Sequence[int] = sys.version_info[:2],
                     system_bin: Path = Path("/usr/bin")) -> QgisPython:
    """The interpreter of QGIS's Python: the first candidate of QGIS's version whose ``sys.exec_prefix`` is QGIS's,
    else the first of QGIS's version; :class:`PythonNotFound` when none answers with that version."""
    want = (int(version[0]), int(version[1]))
    tried: list[str] = []
    fallback: Optional[QgisPython] = None
    for path in candidates(platform, executable, exec_prefix, want, system_bin):
        found = probe(path)
        tried.append(f"{path} ({'no answer' if found is None else 'Python %d.%d' % found.version})")
        if found is None or found.version != want:
            continue
        if _same_dir(found.exec_prefix, exec_prefix):
            return found
        fallback = fallback or found
    if fallback is not None:
        return fallback
    raise PythonNotFound(
        f"Could not find the Python {want[0]}.{want[1]} that QGIS runs, to start pip with it "
        f"(tried: {', '.join(tried) or 'no candidate exists'}). Install the packages by hand: "
        f"{manual_hint(platform)}")


def manual_hint(platform: str = sys.platform) -> str:
    """How to install M3's packages into QGIS's Python by hand on ``platform``."""
    if platform.startswith("win"):
        return ('open the "OSGeo4W Shell" (Start menu, QGIS folder) and run: python -m pip install torch '
                "segmentation-models-pytorch safetensors, then restart QGIS.")
    if platform == "darwin":
        return ("in a Terminal run: /Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install torch "
                "segmentation-models-pytorch safetensors, then restart QGIS.")
    return ("in a terminal run: /usr/bin/python3 -m pip install --user torch segmentation-models-pytorch "
            'safetensors "numpy<2" (add --break-system-packages on Debian 12 / Ubuntu 24.04), then restart QGIS.')


def no_pip_message(python: QgisPython, platform: str = sys.platform) -> str:
    """What to do when QGIS's Python has no pip."""
    if platform.startswith("win") or platform == "darwin":
        fix = f"run: {python.path} -m ensurepip --upgrade"
    else:
        fix = "install it with: sudo apt install python3-pip (Fedora: sudo dnf install python3-pip)"
    return f"QGIS's Python ({python.path}) has no pip, which Install needs: {fix}, then click Install again."


def pip_supports_raw_progress(python: Path, timeout: float = 60.0) -> bool:
    """Whether this pip takes ``--progress-bar raw`` (then it prints ``Progress N of M`` lines while it downloads;
    pip 26 does, Debian 12's pip 23 does not), read from ``pip install --help``."""
    try:
        done = subprocess.run([str(python), "-m", "pip", "install", "--help"], capture_output=True, text=True,
                              timeout=timeout, creationflags=NO_WINDOW)
    except (OSError, subprocess.SubprocessError):
        return False
    return bool(re.search(r"--progress-bar[^\[]*\[[^\]]*\braw\b", done.stdout))
