"""The M3 command line: ``python train_cli.py <command> ...``.

Each command lives in ``core/commands/<name>.py`` and exposes ``register(subparsers)``, which adds
its parser and sets ``func(args) -> int``.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
import warnings
from typing import Optional, Sequence

from .errors import M3Error

COMMAND_MODULES = ("build_stack", "train", "calibrate", "evaluate", "compare", "sweep", "interdependence", "predict", "clusters",
                   "bench", "demo", "discover", "aux_map", "combine_maps")


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train_cli.py", description="M3: masked mineral modeling.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f".commands.{name}", __package__).register(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that half-written files are removed on the way out."""


def _terminate(signum, frame) -> None:
    raise Terminated()


def main(argv: Optional[Sequence[str]] = None) -> int:
    warnings.showwarning = _show_warning
    args = parser().parse_args(argv)
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except (ValueError, OSError):  # not the main thread
        pass
    try:
        return int(args.func(args) or 0)
    except M3Error as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a disk's error outside the write path (a folder made on a full disk)
        from .atomic import is_disk_error, write_failed

        if not is_disk_error(e):
            raise
        print(f"error: {write_failed(e.filename or '.', e.strerror or e)}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated; nothing half-written was kept.", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was kept.", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
