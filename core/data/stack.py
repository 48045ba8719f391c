"""The stack: presence bands per species, normalised auxiliary bands and the valid-cell mask
on one grid, stored as one multi-band GeoTIFF that QGIS opens as it is."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from ..atomic import atomic_path
from ..errors import InputError
from .grid import Grid
from .tagged_tiff import open_tagged, unreadable

STACK_TAG = "M3_STACK"
MAKE_STACK = "python train_cli.py build-stack"
FORMAT_VERSION = 1


@dataclass
class AuxBand:
    """How an auxiliary band was made and normalised: ``(raw - mean) / std``."""

    name: str
    mean: float
    std: float
    units: str = ""
    source: str = ""

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        return ((raw - self.mean) / self.std).astype(np.float32)

    def denormalise(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def stack_fingerprint(source: Any) -> str:
    """A short hash of what a stack is (species, aux bands and their normalisation, grid, and its
    info: records file, outline, presence counts, held-out sources), from its metadata alone; a
    prediction carries it (tag ``stack``) so that its stack can be told from another."""
    meta = {"species": list(source.species), "aux_bands": [vars(b) for b in source.aux_bands],
            "grid": source.grid.to_dict(), "info": source.info}
    return hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode()).hexdigest()[:16]


def normalisation_differences(expected: list[AuxBand], actual: list[AuxBand], tol: float = 0.01) -> list[str]:
    """Aux bands (by name, in both lists) whose z-scores were made with other statistics: means
    apart by more than ``tol`` of the expected spread, or spreads differing by more than ``tol``
    (relative). A stack built over another outline has other statistics."""
    have = {b.name: b for b in actual}
    out = []
    for e in expected:
        a = have.get(e.name)
        if a is None or not (e.std and a.std):
            continue
        if abs(a.mean - e.mean) > tol * abs(e.std) or abs(a.std / e.std - 1) > tol:
            out.append(f"{e.name} (mean {e.mean:.4g}, std {e.std:.4g} expected; the stack's {a.mean:.4g}, "
                       f"{a.std:.4g})")
    return out


def stack_layout(path: Path, meta: dict[str, Any], band_count: int) -> tuple[list[str], list[AuxBand]]:
    """The species and aux bands a stack's tag describes, checked against its band count; an
    :class:`InputError` when the tag is damaged or does not fit the file."""
    try:
        species = [str(s) for s in meta["species"]]
        aux_bands = [AuxBand(**b) for b in meta["aux_bands"]]
        for b in aux_bands:
            b.mean, b.std = float(b.mean), float(b.std)
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: its {STACK_TAG} tag is damaged ({e!r}); rebuild the stack with: {MAKE_STACK}") from None
    expected = len(species) + len(aux_bands) + 1
    if band_count != expected:
        raise InputError(f"{path} has {band_count} bands but its {STACK_TAG} tag describes {expected}; rebuild the "
                         f"stack with: {MAKE_STACK}")
    return species, aux_bands


@dataclass
class Stack:
    """Arrays on one grid. ``presence`` (S, H, W) uint8 0/1; ``aux`` (A, H, W) float32,
    normalised, 0 outside ``valid``; ``valid`` (H, W) bool: land cells inside the outline."""

    grid: Grid
    species: list[str]
    presence: np.ndarray
    aux_bands: list[AuxBand]
    aux: np.ndarray
    valid: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        h, w = self.grid.shape
        if self.presence.shape != (len(self.species), h, w):
            raise ValueError(f"presence shape {self.presence.shape} != ({len(self.species)}, {h}, {w})")
        if self.aux.shape != (len(self.aux_bands), h, w):
            raise ValueError(f"aux shape {self.aux.shape} != ({len(self.aux_bands)}, {h}, {w})")
        if self.valid.shape != (h, w):
            raise ValueError(f"valid shape {self.valid.shape} != ({h}, {w})")

    @property
    def aux_names(self) -> list[str]:
        return [b.name for b in self.aux_bands]

    def with_blank_aux(self, names: list[str]) -> "Stack":
        """A copy with these aux bands blanked (0, the band's mean), as a band left empty in the
        dock reads to a model trained with aux dropout."""
        unknown = sorted(set(names) - set(self.aux_names))
        if unknown:
            raise InputError(f"No aux band {', '.join(unknown)} in the stack; its aux bands are "
                             f"{', '.join(self.aux_names) or 'none'}.")
        aux = self.aux.copy()
        for name in names:
            aux[self.aux_names.index(name)] = 0.0
        return replace(self, aux=aux)

    def select_aux(self, names: list[str]) -> "Stack":
        """A stack with only these aux bands, in this order (views where possible)."""
        unknown = [n for n in names if n not in self.aux_names]
        if unknown:
            raise InputError(f"No aux band {', '.join(unknown)} in the stack; its aux bands are "
                             f"{', '.join(self.aux_names) or 'none'}.")
        index = [self.aux_names.index(n) for n in names]
        return replace(self, aux_bands=[self.aux_bands[i] for i in index],
                       aux=self.aux[index] if index else self.aux[:0])

    def with_aux(self, bands: list[AuxBand], normalised: np.ndarray) -> "Stack":
        """A copy with these aux bands (normalised (B, H, W), 0 outside valid) appended."""
        clash = sorted({b.name for b in bands} & set(self.aux_names))
        if clash:
            raise InputError(f"The stack already has aux band(s) {', '.join(clash)}; start from a stack "
                             "without them.")
        return replace(self, aux_bands=self.aux_bands + list(bands),
                       aux=np.concatenate([self.aux, normalised.astype(np.float32)]))

    def band_names(self) -> list[str]:
        return ([f"presence_{s}" for s in self.species] + [f"aux_{n}" for n in self.aux_names] + ["valid"])

    def presence_counts(self) -> dict[str, int]:
        return {s: int(self.presence[i].sum()) for i, s in enumerate(self.species)}

    def metadata(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, "species": self.species,
                "aux_bands": [vars(b) for b in self.aux_bands], "grid": self.grid.to_dict(),
                "info": self.info}

    def write(self, path: str | Path) -> Path:
        """Write atomically as a tiled, compressed float32 GeoTIFF."""
        path = Path(path)
        names = self.band_names()
        profile = dict(driver="GTiff", width=self.grid.width, height=self.grid.height,
                       count=len(names), dtype="float32", crs=self.grid.crs,
                       transform=self.grid.transform, tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
        with atomic_path(path) as tmp:
            with rasterio.open(tmp, "w", **profile) as dst:
                band = 1
                for arr in list(self.presence) + list(self.aux) + [self.valid]:
                    dst.write(arr.astype(np.float32), band)
                    dst.set_band_description(band, names[band - 1])
                    band += 1
                dst.update_tags(**{STACK_TAG: json.dumps(self.metadata())})
                for i, b in enumerate(self.aux_bands):
                    dst.update_tags(len(self.species) + i + 1, units=b.units, mean=b.mean, std=b.std,
                                    source=b.source)
        return path

    @classmethod
    def read(cls, path: str | Path) -> "Stack":
        """Read a stack written by :meth:`write`."""
        src, meta, grid = open_tagged(path, STACK_TAG, "stack", MAKE_STACK)
        with src:
            species, aux_bands = stack_layout(Path(path), meta, src.count)
            try:
                data = src.read()
            except rasterio.errors.RasterioIOError as e:
                raise InputError(unreadable(Path(path), "stack", MAKE_STACK, e)) from None
        s = len(species)
        a = len(aux_bands)
        return cls(grid=grid, species=species,
                   presence=data[:s].astype(np.uint8), aux_bands=aux_bands,
                   aux=np.ascontiguousarray(data[s:s + a]), valid=data[s + a] > 0.5,
                   info=meta.get("info", {}))

    def window(self, row0: int, col0: int, height: int, width: int) -> "Stack":
        """A sub-stack (views, not copies)."""
        sl = (slice(row0, row0 + height), slice(col0, col0 + width))
        return Stack(self.grid.window(row0, col0, height, width), self.species,
                     self.presence[(slice(None),) + sl], self.aux_bands, self.aux[(slice(None),) + sl],
                     self.valid[sl], self.info)
