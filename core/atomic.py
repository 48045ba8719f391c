"""Write files atomically: to a temporary file beside the target, then rename.

The temporary ("partial") file is hidden beside the target and named after it, the writing
process and its host: ``.<name>.<pid>@<host>.<random>.part<suffix>``. A run killed with kill -9
or SIGTERM leaves it behind; :func:`clean_stale_partials` — called by :func:`atomic_path` at the
start of every write, the one place that cleans them — removes the partial files of the same
target whose writer is gone: written on this host by a process that no longer runs, or (other
hosts sharing the folder, or files of older versions without a pid) not modified for
:data:`STALE_PARTIAL_AGE_S`. A partial file of a process still writing the same target on this
host is kept: that process replaces the target when it finishes, whichever write ends last wins.

Before the rename the partial file is checked (:func:`verify_written`: it reads back) and flushed
to the disk (fsync); a write that fails — a full disk, a quota, an I/O error, whether the writer
raised (Python, safetensors, matplotlib) or only printed it (GDAL) — raises :class:`WriteError`
naming the disk, removes the partial file and leaves an existing target as it was.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

from .errors import Cancelled, InputError, M3Error, WriteError

STALE_PARTIAL_AGE_S = 24 * 3600  # a partial file untouched this long has no live writer
# errors of the disk, not of the data: the write is refused with the disk named
DISK_ERRNOS = frozenset(e for e in (errno.ENOSPC, getattr(errno, "EDQUOT", None), errno.EFBIG, errno.EIO,
                                    errno.EROFS) if e is not None)
DISK_WORDS = ("no space left on device", "disk is full", "disk quota exceeded", "file too large",
              "read-only file system", "input/output error")
FULL_DISK_BYTES = 1 << 20  # a write that fails with less free than this failed for the room
# formats whose file is never empty, by the target's suffix
NON_EMPTY_SUFFIXES = (".tif", ".tiff", ".gpkg", ".png", ".safetensors", ".json")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user
        return True
    except OSError:
        return True  # cannot tell (e.g. Windows without the right): keep the file
    return True


def clean_stale_partials(path: os.PathLike | str) -> list[Path]:
    """Remove the partial files of ``path`` left by writers that are gone (see the module's
    docstring); return those removed."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?:(\d+)@([A-Za-z0-9-]*)\.)?[A-Za-z0-9_]+"
                         rf"\.part{re.escape(path.suffix)}$")
    removed = []
    try:
        candidates = list(folder.glob(f".{glob_escape(path.name)}.*.part*"))
    except OSError:
        return removed
    now, host = time.time(), _host()
    for p in candidates:
        m = pattern.match(p.name)
        if not m:
            continue
        try:
            age = now - p.stat().st_mtime
        except OSError:
            continue
        pid, on = m.group(1), m.group(2)
        dead = pid is not None and on == host and int(pid) != os.getpid() and not _pid_alive(int(pid))
        if dead or age > STALE_PARTIAL_AGE_S:
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def check_writable(path: os.PathLike | str) -> Path:
    """Fail early, before any long work, when ``path`` cannot be written (a missing or read-only
    folder, a read-only file, a full disk)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Cannot write {path}: folder {parent} does not exist. Create it or choose another path.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Cannot write {path}: folder {parent} is not writable. Choose another path.")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"Cannot write {path}: the file exists and is read-only.")
    check_room(path)
    return path


def check_room(path: Path) -> None:
    """Refuse to start writing ``path`` on a full disk (:func:`disk_full`)."""
    if disk_full(path.parent if str(path.parent) else Path(".")):
        raise write_failed(path, "the disk is full")


def is_disk_error(error: BaseException) -> bool:
    """Whether an error is the disk's (full, quota, read-only, I/O) rather than the data's: an
    :class:`OSError` with such an errno, or another library's error saying so (safetensors)."""
    if isinstance(error, M3Error):
        return False
    if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
        return True
    text = str(error).lower()
    return any(w in text for w in DISK_WORDS)


def disk_full(path: os.PathLike | str) -> bool:
    """Whether the disk holding ``path`` is full: less than :data:`FULL_DISK_BYTES` free, or less
    than 1 % of a disk smaller than 100 MiB."""
    try:
        usage = shutil.disk_usage(mount_point(path))
    except OSError:
        return False
    return usage.free < min(FULL_DISK_BYTES, usage.total // 100)


def mount_point(path: os.PathLike | str) -> Path:
    """The mount point of the file system holding ``path`` (its nearest existing folder's)."""
    p = Path(os.path.abspath(path))
    while not p.exists() and p.parent != p:
        p = p.parent
    while not os.path.ismount(p) and p.parent != p:
        p = p.parent
    return p


def _size(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def disk_note(path: os.PathLike | str) -> str:
    """'the disk mounted at /data (0 bytes free of 64.0 KiB)': which disk holds ``path``, and its room."""
    folder = Path(path).parent
    where = mount_point(folder)
    try:
        usage = shutil.disk_usage(where)
        room = f" ({_size(usage.free)} free of {_size(usage.total)})"
    except OSError:
        room = ""
    return f"the disk mounted at {where}{room}"


def write_failed(path: os.PathLike | str, reason: object) -> WriteError:
    """The one message of a failed write: what failed, which disk, what to do, what was kept."""
    path = Path(path)
    kept = f" and the existing {path.name} was left as it was" if path.exists() else ""
    return WriteError(f"Could not write {path}: {reason}. It goes to {disk_note(path)}: free space there or "
                      f"write to another disk. Nothing half-written was kept{kept}.")


def verify_written(tmp: Path, target: Path) -> None:
    """Raise :class:`WriteError` unless the file just written reads back: not empty (for the formats
    of :data:`NON_EMPTY_SUFFIXES`); by its first bytes, a TIFF whose every block GDAL reads, a
    SQLite file (GeoPackage) passing ``quick_check``, a PNG ending in its IEND chunk, a
    safetensors file as long as its header says; a ``.json`` file that parses."""
    size = tmp.stat().st_size
    if size == 0:
        if target.suffix.lower() in NON_EMPTY_SUFFIXES:
            raise write_failed(target, "the file came out empty")
        return
    with open(tmp, "rb") as fh:
        head = fh.read(16)
        fh.seek(max(0, size - 12))
        tail = fh.read(12)
    problem = ""
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        problem = _raster_problem(tmp)
    elif head.startswith(b"SQLite format 3\x00"):
        problem = _sqlite_problem(tmp)
    elif head.startswith(b"\x89PNG\r\n\x1a\n"):
        problem = "" if tail[4:8] == b"IEND" else "the PNG is cut short"
    elif target.suffix.lower() == ".safetensors":
        n = struct.unpack("<Q", head[:8])[0] if len(head) >= 8 else -1
        problem = _safetensors_problem(tmp, n, size)
    elif target.suffix.lower() == ".json":
        try:
            json.loads(tmp.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            problem = f"the JSON does not read back ({e})"
    if problem:
        raise write_failed(target, problem)


def _raster_problem(path: Path) -> str:
    """'' when GDAL reads every block of every band of the raster, else what failed."""
    import rasterio

    try:
        with rasterio.open(path) as src:
            for _, window in src.block_windows(1):
                src.read(window=window)
    except Exception as e:  # noqa: BLE001 — rasterio/GDAL errors of a truncated file vary
        return f"the GeoTIFF does not read back (GDAL: {e})"
    return ""


def _sqlite_problem(path: Path) -> str:
    import sqlite3

    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = con.execute("PRAGMA quick_check").fetchone()
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.Error as e:
        return f"the GeoPackage does not read back (SQLite: {e})"
    if not row or row[0] != "ok":
        return f"the GeoPackage does not read back (SQLite: {row[0] if row else 'no answer'})"
    if path.name.lower().endswith(".gpkg") and "gpkg_contents" not in tables:
        return "the GeoPackage lacks its table of contents (gpkg_contents)"
    return ""


def _safetensors_problem(path: Path, header_bytes: int, size: int) -> str:
    if header_bytes < 2 or 8 + header_bytes > size:
        return "the safetensors file is cut short (its header)"
    with open(path, "rb") as fh:
        fh.seek(8)
        try:
            header = json.loads(fh.read(header_bytes))
        except ValueError:
            return "the safetensors header does not read back"
    end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
    return "" if 8 + header_bytes + end == size else "the safetensors file is cut short (its tensors)"


def _fsync(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries) to the disk; folders only where the system allows."""
    if directory:
        if os.name != "posix":
            return
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path; on success it is checked (:func:`verify_written`), flushed and
    renamed to ``path``; on error it is removed and an existing ``path`` left as it was; a disk's
    error (full, quota, I/O) becomes a :class:`WriteError` naming the disk."""
    path = check_writable(path)
    clean_stale_partials(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host()}.",
                                   suffix=".part" + path.suffix, dir=path.parent or ".")
    except OSError as e:
        if is_disk_error(e):
            raise write_failed(path, e.strerror or e) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path  # some writers (the GeoPackage driver) remove it and make it again
        verify_written(tmp_path, path)
        _fsync(tmp_path)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
        _fsync(path.parent if str(path.parent) else Path("."), directory=True)
    except BaseException as e:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        if isinstance(e, Exception) and is_disk_error(e):
            raise write_failed(path, getattr(e, "strerror", None) or e) from None
        if isinstance(e, Exception) and not isinstance(e, (WriteError, Cancelled)) and disk_full(path.parent):
            raise write_failed(path, f"{e} (the disk is full)") from None  # a writer's words for it
        raise
