"""The one check of a command's outputs, made before any long work: no output is one of the
inputs (compared as resolved real paths, so ``a/../b.tif``, symbolic links and hard links are
caught) nor another output, and every output file and folder can be written.

Every ``train_cli.py`` command that writes files calls :func:`check_outputs`, with its option
names as labels (so the message names the option to change); :func:`core.data.build_stack.build_stack`
and :func:`core.inference.infer.infill` call it too, so that the Processing algorithms and the dock, which
call those directly, are covered as well."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

from .atomic import check_writable
from .errors import InputError

PathLike = Union[str, os.PathLike]
Paths = Union[None, PathLike, Iterable[Optional[PathLike]]]


def _named(paths: Mapping[str, Paths]) -> list[tuple[str, Path]]:
    out = []
    for label, value in paths.items():
        if value is None:
            continue
        items = [value] if isinstance(value, (str, os.PathLike)) else list(value)
        out += [(label, Path(p)) for p in items if p is not None and str(p) not in ("", "none", "None")]
    return out


def same_file(a: PathLike, b: PathLike) -> bool:
    """Whether two paths name one file: equal once resolved (``..``, symbolic links, case on
    case-insensitive systems), or hard links of one file."""
    ra, rb = os.path.normcase(os.path.realpath(a)), os.path.normcase(os.path.realpath(b))
    if ra == rb:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_output_folder(path: PathLike, label: str = "the output folder") -> Path:
    """A folder the command creates (with its parents) or writes into: it must not be a file,
    and its nearest existing ancestor must be a writable folder."""
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        where = "is a file" if probe == path else f"is inside {probe}, which is a file"
        raise InputError(f"Cannot write {label} {path}: it {where}. Choose a folder.")
    if not os.access(probe, os.W_OK):
        raise InputError(f"Cannot write {label} {path}: folder {probe} is not writable. Choose another folder.")
    return path


def check_outputs(outputs: Mapping[str, Paths], inputs: Mapping[str, Paths] = {},
                  folders: Mapping[str, Paths] = {}) -> None:
    """Raise :class:`InputError` when an output (file) is one of the ``inputs``, two outputs are
    the same file, an output is a folder, or an output file or folder cannot be written.

    Each argument maps a label (an option name like ``--out``, or words like ``the records``)
    to a path, a list of paths, or None (ignored)."""
    outs = _named(outputs)
    ins = _named(inputs)
    for i, (label, path) in enumerate(outs):
        for other_label, other in outs[:i]:
            if same_file(path, other):
                raise InputError(f"{other_label} and {label} are the same file ({path}): one would overwrite the "
                                 "other. Give them different names.")
        for in_label, in_path in ins:
            if same_file(path, in_path):
                raise InputError(f"{label} {path} is the input {in_label} ({in_path}): writing it would replace "
                                 "that input. Choose another output name.")
        for folder_label, folder in _named(folders):
            if same_file(path, folder):
                raise InputError(f"{label} and {folder_label} are the same path ({path}). Give them different names.")
    for label, path in outs:
        if path.is_dir():
            raise InputError(f"{label} {path} is a folder; give a file name.")
        try:
            check_writable(path)
        except InputError as e:
            raise InputError(f"{label}: {e}") from None
    for label, folder in _named(folders):
        for in_label, in_path in ins:
            if same_file(folder, in_path) and not Path(in_path).is_dir():
                raise InputError(f"{label} {folder} is the input {in_label}; choose another folder.")
        check_output_folder(folder, label)
