"""Progress reporting and cancellation shared by the CLI (tqdm) and the plugin (QgsTask)."""
from __future__ import annotations

from typing import Callable, Optional, Protocol

from .errors import Cancelled


class Progress(Protocol):
    """Receives progress of long work; ``cancelled()`` is polled between steps."""

    def start(self, total: int, desc: str) -> None: ...
    def advance(self, n: int = 1, **info: float) -> None: ...
    def close(self) -> None: ...
    def cancelled(self) -> bool: ...


class SilentProgress:
    """No output; cancellation from an optional callable."""

    def __init__(self, is_cancelled: Optional[Callable[[], bool]] = None) -> None:
        self._is_cancelled = is_cancelled

    def start(self, total: int, desc: str) -> None:
        pass

    def advance(self, n: int = 1, **info: float) -> None:
        pass

    def close(self) -> None:
        pass

    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())


class TqdmProgress(SilentProgress):
    """A tqdm bar on stderr; ``info`` values show as the bar's postfix."""

    def __init__(self, is_cancelled: Optional[Callable[[], bool]] = None) -> None:
        super().__init__(is_cancelled)
        self._bar = None

    def start(self, total: int, desc: str) -> None:
        from tqdm import tqdm

        self.close()
        self._bar = tqdm(total=total, desc=desc, dynamic_ncols=True, mininterval=0.5)

    def advance(self, n: int = 1, **info: float) -> None:
        if self._bar is not None:
            if info:
                self._bar.set_postfix({k: f"{v:.4g}" for k, v in info.items()}, refresh=False)
            self._bar.update(n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class CallbackProgress(SilentProgress):
    """Reports a percentage to ``on_percent`` (e.g. ``QgsTask.setProgress``)."""

    def __init__(self, on_percent: Callable[[float], None],
                 is_cancelled: Optional[Callable[[], bool]] = None) -> None:
        super().__init__(is_cancelled)
        self._on_percent = on_percent
        self._total = 1
        self._done = 0

    def start(self, total: int, desc: str) -> None:
        self._total, self._done = max(1, total), 0
        self._on_percent(0.0)

    def advance(self, n: int = 1, **info: float) -> None:
        self._done += n
        self._on_percent(100.0 * min(self._done, self._total) / self._total)


def check_cancelled(progress: Optional[Progress]) -> None:
    """Raise :class:`Cancelled` when the user asked to stop."""
    if progress is not None and progress.cancelled():
        raise Cancelled("Cancelled by the user; nothing was written.")
