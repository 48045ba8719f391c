"""Write files atomically: to a temporary file beside the target, then rename.

The temporary ("partial") file is hidden beside the target and named after it, the writing
process and its host: ``.<name>.<pid>@<host>.<random>.part<suffix>``. A run killed with kill -9
or SIGTERM leaves it behind; :func:`clean_stale_partials` — called by :func:`atomic_path` at the
start of every write, the one place that cleans them — removes the partial files of the same
target whose writer is gone: written on this host by a process that no longer runs, or (other
hosts sharing the folder, or files of older versions without a pid) not modified for
:data:`STALE_PARTIAL_AGE_S`. A partial file of a process still writing the same target on this
host is kept: that process replaces the target when it finishes, whichever write ends last wins.
"""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import InputError

STALE_PARTIAL_AGE_S = 24 * 3600  # a partial file untouched this long has no live writer


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
    """Fail early, before any long work, when ``path`` cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"Cannot write {path}: folder {parent} does not exist. Create it or choose another path.")
    if not os.access(parent, os.W_OK):
        raise InputError(f"Cannot write {path}: folder {parent} is not writable. Choose another path.")
    if path.exists() and not os.access(path, os.W_OK):
        raise InputError(f"Cannot write {path}: the file exists and is read-only.")
    return path


@contextlib.contextmanager
def atomic_path(path: os.PathLike | str) -> Iterator[Path]:
    """Yield a temporary path; on success it replaces ``path``, on error it is removed."""
    path = check_writable(path)
    clean_stale_partials(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}@{_host()}.", suffix=".part" + path.suffix,
                               dir=path.parent or ".")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
