"""The process heap during inference on Linux (glibc): freed memory kept for the next mask draw.

Each draw of a window allocates and frees a few hundred megabytes of temporaries (model inputs,
activations, probabilities, the calibration's indices). glibc returns the large ones to the
operating system and the next draw takes them back page by page; on the project's 2-core VM
that was about 20,000 page faults and a quarter of a draw's time (175 → 133 ms per draw of the
bundled model: ``docs/results/speed/heap_faults.py``). Inside :func:`kept_heap` freed memory stays in the
heap for reuse; on leaving it, the heap is trimmed (the memory goes back to the system) and the
thresholds stay where glibc's own adaptive ones settle after a run of large tensors (setting one
turns the adaptation off for the process).
Elsewhere (macOS, Windows, musl) nothing changes.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
import threading
from typing import Iterator, Optional

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3   # mallopt parameters (malloc.h)
_MMAP = 32 << 20      # bytes: blocks up to this from the heap (glibc's ceiling for it on 64-bit)
_KEEP = 1 << 30       # bytes: free memory at the heap's top kept up to this
_SETTLED_TRIM = 64 << 20  # where glibc's adaptive trim threshold settles (twice the mmap one)
_lock = threading.Lock()
_depth = 0


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def _set(libc: ctypes.CDLL, parameter: int, value: int) -> None:
    libc.mallopt(ctypes.c_int(parameter), ctypes.c_int(value))


@contextlib.contextmanager
def kept_heap() -> Iterator[None]:
    """Keep freed memory in the heap while inside (nested and concurrent uses share one policy:
    the last to leave trims)."""
    global _depth
    libc = _glibc()
    if libc is None:
        yield
        return
    with _lock:
        if _depth == 0:
            _set(libc, _M_MMAP_THRESHOLD, _MMAP)
            _set(libc, _M_TRIM_THRESHOLD, _KEEP)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set(libc, _M_TRIM_THRESHOLD, _SETTLED_TRIM)
                libc.malloc_trim(ctypes.c_size_t(0))
