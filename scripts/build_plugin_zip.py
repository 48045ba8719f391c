#!/usr/bin/env python3
"""Build the zip that QGIS's "Install from ZIP" takes: one top folder ``m3_plugin/`` holding the
plugin code, ``core`` (real files, not the repository's symlink), metadata.txt, the resources
the plugin needs, and the user guide the dock's Help shows offline: README.md with the docs/
pictures it shows. Standard library only.

    python3 scripts/build_plugin_zip.py [--out dist/m3_plugin.zip]

Why not qgis-plugin-ci (PyPI), the ecosystem's packager: it packs the plugin folder as ``git archive``
gives it, where ``m3_plugin/core`` is a symlink to the CLI's ``core/`` (a zip must hold real files) and
the offline guide (README.md and its pictures) lies outside the folder; it also takes a version per
build, refuses uncommitted changes and brings GitPython, PyGithub and pyqt5ac. What it adds, upload
to plugins.qgis.org and the changelog in metadata.txt, is worth taking once M3 is published there.
"""
from __future__ import annotations

import argparse
import re
import sys
import zipfile
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from core.atomic import atomic_path  # noqa: E402

TOP = "m3_plugin"
RESOURCE_DIRS = ("icons", "styles", "models", "data")  # what the plugin uses of resources/
TOP_FILES = ("metadata.txt", "LICENSE", "README.md")
SKIP_DIRS = {"__pycache__", "tests", ".pytest_cache", ".mypy_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo", ".part"}
FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # same bytes for the same sources
PICTURE = re.compile(r"!\[[^\]]*\]\((docs/[^)\s#]+)\)")  # ![caption](docs/x.png) in the README


def _files_under(folder: Path) -> Iterator[Path]:
    """Files below ``folder`` (following symlinks), minus caches, tests and hidden files."""
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).parts
        if any(p in SKIP_DIRS or p.startswith(".") for p in rel):
            continue
        if path.is_file() and path.suffix not in SKIP_SUFFIXES:
            yield path


def readme_pictures(readme: str) -> list[str]:
    """The docs/ pictures the README shows, in order, each once (relative paths)."""
    return list(dict.fromkeys(PICTURE.findall(readme)))


def plugin_files(repo: Path = REPO) -> dict[str, Path]:
    """Archive name -> source file, for everything the plugin ships."""
    files: dict[str, Path] = {}
    plugin = repo / TOP
    for path in _files_under(plugin):
        rel = path.relative_to(plugin)
        # core, resources and metadata.txt are symlinks in the repository: added below from their sources
        if rel.parts[0] in ("core", "resources") or rel.parts[0] in TOP_FILES:
            continue
        files[f"{TOP}/{rel.as_posix()}"] = path
    for path in _files_under(repo / "core"):
        files[f"{TOP}/core/{path.relative_to(repo / 'core').as_posix()}"] = path
    for name in RESOURCE_DIRS:
        folder = repo / "resources" / name
        if folder.is_dir():
            for path in _files_under(folder):
                files[f"{TOP}/resources/{name}/{path.relative_to(folder).as_posix()}"] = path
    for name in TOP_FILES:
        if (repo / name).is_file():
            files[f"{TOP}/{name}"] = repo / name
    readme = repo / "README.md"
    if readme.is_file():
        for rel in readme_pictures(readme.read_text(encoding="utf-8")):
            if not (repo / rel).is_file():
                raise SystemExit(f"README.md shows {rel}, which is missing: add the picture or remove it from "
                                 "README.md (the plugin's user guide shows it).")
            files[f"{TOP}/{rel}"] = repo / rel
    if f"{TOP}/metadata.txt" not in files:
        raise SystemExit(f"{repo / 'metadata.txt'} is missing: QGIS cannot load a plugin without it.")
    return files


def build(out: Path, repo: Path = REPO) -> tuple[int, int]:
    """Write the zip to ``out`` atomically; return (number of files, size in bytes)."""
    files = plugin_files(repo)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for arcname, src in files.items():
                info = zipfile.ZipInfo(arcname, date_time=FIXED_TIME)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o644 << 16
                zf.writestr(info, src.read_bytes())
    return len(files), out.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "dist" / "m3_plugin.zip",
                        help="zip file to write (default: dist/m3_plugin.zip)")
    args = parser.parse_args(argv)
    count, size = build(args.out)
    print(f"{args.out}: {count} files, {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
