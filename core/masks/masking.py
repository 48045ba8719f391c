"""Masks: which presence cells the model must reconstruct.

A mask hides a set of species inside a region of the tile. The three scenarios are special
cases of that one form:

- ``region``: every species hidden inside a contiguous region (rectangle or irregular blob)
  covering ``region_fraction`` of the tile; the model infills from the records around it;
- ``species``: k species hidden over the whole tile; the model infills them from the other
  species present in the same cells and from the aux bands;
- ``both``: the k chosen species hidden inside the region only (the plugin's question
  "where would species X be in this area?").

A fourth, training-only scenario asks the discovery question: ``unrecorded`` hides every species
inside the region except at some of the region's record cells, which stay visible
(:func:`reveal_records`): a random share of them, or those of every source data set but one
(``MaskSpec.hide_by``); the model learns where records are that nobody recorded near the
visible ones, from those records and the aux bands. ``predict --hide-unrecorded`` asks it on the
whole grid: every cell without a record hidden, every record visible.

Every generator is vectorised over the batch and draws from an explicit ``torch.Generator``
in a fixed order, so a batch of masks is a pure function of the generator's seed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError

SCENARIOS = ("region", "species", "both")  # the scenarios evaluated and thresholded
UNRECORDED = "unrecorded"
DRAW_SCENARIOS = SCENARIOS + (UNRECORDED,)  # those a training mixture may draw
REGION_SHAPES = ("rect", "blob", "mixed")
HIDE_BY = ("share", "source")  # what the unrecorded scenario leaves visible


@dataclass
class MaskSpec:
    """How masks are drawn.

    ``scenarios`` maps scenario names to their probability of being drawn for a tile.
    ``species_k`` is the inclusive range of the number of species hidden (uniform).
    ``region_fraction`` is the share of the tile's area inside the hidden region (the poster's
    "A = 0.8", as this project reads it). ``blob_scale`` is the size, in cells, of the noise
    lattice behind irregular blobs: larger gives fewer, rounder blobs. ``record_share`` is the
    inclusive range (uniform) of the share of the region's record cells left visible in the
    ``unrecorded`` scenario when ``hide_by`` is "share"; with "source" it hides instead every
    record of one source data set present in the tile, the other sources' record cells visible
    (:func:`source_reveal`; the trainer needs the records' sources).
    """

    scenarios: dict[str, float] = field(default_factory=lambda: {s: 1.0 for s in SCENARIOS})
    species_k: tuple[int, int] = (1, 3)
    region_fraction: float = 0.8
    region_shape: str = "mixed"
    blob_scale: int = 16
    record_share: tuple[float, float] = (0.05, 1.0)
    hide_by: str = "share"

    def __post_init__(self) -> None:
        self.species_k = (int(self.species_k[0]), int(self.species_k[1]))
        self.record_share = (float(self.record_share[0]), float(self.record_share[1]))
        self.scenarios = {str(k): float(v) for k, v in self.scenarios.items()}
        self.validate()

    def validate(self, n_species: Optional[int] = None) -> None:
        unknown = set(self.scenarios) - set(DRAW_SCENARIOS)
        if unknown or not self.scenarios or any(v < 0 for v in self.scenarios.values()) \
                or sum(self.scenarios.values()) <= 0:
            raise InputError(f"Mask scenarios {self.scenarios} are not valid: use names from {DRAW_SCENARIOS} "
                             "with non-negative weights, at least one positive.")
        lo, hi = self.record_share
        if not 0.0 <= lo <= hi <= 1.0:
            raise InputError(f"Record share range {self.record_share} is not valid: need 0 <= lo <= hi <= 1.")
        if self.hide_by not in HIDE_BY:
            raise InputError(f"Unrecorded hiding '{self.hide_by}' unknown; use one of {HIDE_BY}.")
        lo, hi = self.species_k
        if lo < 1 or hi < lo:
            raise InputError(f"Mask species k range {self.species_k} is not valid: need 1 <= lo <= hi.")
        if n_species is not None and hi > n_species:
            raise InputError(f"Cannot hide up to {hi} species: the stack has {n_species}. "
                             f"Use --mask-species-k {lo} {min(lo, n_species)} or fewer.")
        if not 0.0 < self.region_fraction <= 1.0:
            raise InputError(f"Masked-area fraction {self.region_fraction} must be in (0, 1].")
        if self.region_shape not in REGION_SHAPES:
            raise InputError(f"Region shape '{self.region_shape}' unknown; use one of {REGION_SHAPES}.")
        if self.blob_scale < 1:
            raise InputError("Blob scale must be at least 1 cell.")

    def only(self, scenario: str, species_k: Optional[int] = None) -> "MaskSpec":
        """The same spec restricted to one scenario (and optionally a fixed k)."""
        k = self.species_k if species_k is None else (species_k, species_k)
        return MaskSpec({scenario: 1.0}, k, self.region_fraction, self.region_shape, self.blob_scale,
                        self.record_share, self.hide_by)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["species_k"] = list(self.species_k)
        d["record_share"] = list(self.record_share)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MaskSpec":
        d = dict(d)
        d["species_k"] = tuple(d.get("species_k", (1, 3)))
        d["record_share"] = tuple(d.get("record_share", (0.05, 1.0)))
        return cls(**d)


def generator_for(*keys: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator seeded from integer keys, e.g. (seed, step): well mixed, so nearby keys give
    unrelated streams. Masks drawn on a CUDA generator are reproducible on CUDA but differ from
    those drawn on the CPU."""
    state = np.random.SeedSequence([int(k) & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint32)
    g = torch.Generator(device=device)
    g.manual_seed(int(state[0]) << 32 | int(state[1]))
    return g


def rect_masks(n: int, h: int, w: int, fraction: float, gen: torch.Generator) -> torch.Tensor:
    """(n, h, w) bool: one axis-aligned rectangle per sample, area ≈ ``fraction`` of the tile,
    aspect ratio log-uniform in [1/2, 2], position uniform."""
    dev = gen.device
    area = fraction * h * w
    aspect = torch.exp((torch.rand(n, generator=gen, device=dev) * 2 - 1) * math.log(2.0))
    rh = torch.sqrt(area * aspect).round().clamp(1, h)
    rw = (area / rh).round().clamp(1, w)
    rh = (area / rw).round().clamp(1, h)  # when the width hit the tile's side, grow the height
    top = (torch.rand(n, generator=gen, device=dev) * (h - rh + 1)).floor()
    left = (torch.rand(n, generator=gen, device=dev) * (w - rw + 1)).floor()
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    t, l, rh, rw = (v.view(n, 1, 1) for v in (top, left, rh, rw))
    return (rows >= t) & (rows < t + rh) & (cols >= l) & (cols < l + rw)


def blob_masks(n: int, h: int, w: int, fraction: float, scale: int, gen: torch.Generator) -> torch.Tensor:
    """(n, h, w) bool: irregular blobs covering exactly ``round(fraction*h*w)`` cells per
    sample: smooth noise (two octaves of bilinearly upsampled lattice noise) thresholded at its
    per-sample quantile."""
    def octave(cell: int) -> torch.Tensor:
        gh, gw = h // cell + 2, w // cell + 2
        noise = torch.randn(n, 1, gh, gw, generator=gen, device=gen.device)
        up = F.interpolate(noise, size=(gh * cell, gw * cell), mode="bilinear", align_corners=False)
        return up[:, 0, cell // 2: cell // 2 + h, cell // 2: cell // 2 + w]

    field_ = octave(max(1, scale)) + 0.5 * octave(max(1, scale // 2))
    k = int(round(fraction * h * w))
    if k <= 0:
        return torch.zeros(n, h, w, dtype=torch.bool, device=gen.device)
    if k >= h * w:
        return torch.ones(n, h, w, dtype=torch.bool, device=gen.device)
    flat = field_.reshape(n, -1)
    # the k-th largest value: kthvalue finds it as the (h·w - k + 1)-th smallest, several times
    # faster than topk's k largest (a mask per block of every draw of the CONUS map)
    thresh = torch.kthvalue(flat, h * w - k + 1, dim=1, keepdim=True).values
    return (flat >= thresh).reshape(n, h, w)


def region_masks(spec: MaskSpec, n: int, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """(n, h, w) bool regions of the spec's shape. Both shapes are always drawn, so the
    generator advances the same way whatever the shape."""
    rect = rect_masks(n, h, w, spec.region_fraction, gen)
    blob = blob_masks(n, h, w, spec.region_fraction, spec.blob_scale, gen)
    pick_rect = torch.rand(n, generator=gen, device=gen.device) < 0.5
    if spec.region_shape == "rect":
        return rect
    if spec.region_shape == "blob":
        return blob
    return torch.where(pick_rect.view(n, 1, 1), rect, blob)


def species_sets(n: int, n_species: int, k_range: tuple[int, int], gen: torch.Generator) -> torch.Tensor:
    """(n, S) bool: k species per sample, k uniform in the inclusive range, chosen uniformly."""
    lo, hi = k_range
    hi = min(hi, n_species)
    lo = min(lo, hi)
    k = torch.randint(lo, hi + 1, (n,), generator=gen, device=gen.device)
    ranks = torch.rand(n, n_species, generator=gen, device=gen.device).argsort(dim=1).argsort(dim=1)
    return ranks < k.view(n, 1)


def draw_masks(spec: MaskSpec, n: int, n_species: int, h: int, w: int, gen: torch.Generator,
               species: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden cells (n, S, h, w) bool and the scenario index of each sample (n,) into
    DRAW_SCENARIOS, on the generator's device. An ``unrecorded`` draw hides every species in the
    region here; :func:`reveal_records` then uncovers its share of record cells.

    ``species`` (n, S) bool, optional, overrides the random choice of hidden species (used by
    evaluation to hide each species in turn). The generator is advanced identically either way.
    """
    spatial, which, scenario = mask_factors(spec, n, n_species, h, w, gen, species)
    return spatial.unsqueeze(1) & which.view(n, n_species, 1, 1), scenario


def mask_factors(spec: MaskSpec, n: int, n_species: int, h: int, w: int, gen: torch.Generator,
                 species: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`draw_masks`' hidden cells as their two factors — where (n, h, w) bool and which
    species (n, S) bool; a sample hides ``where & which`` — and the scenario index (n,), from the
    same draws (for a caller that lays many masks out side by side before combining them)."""
    dev = gen.device
    names = DRAW_SCENARIOS if UNRECORDED in spec.scenarios else SCENARIOS  # older mixtures draw as before
    weights = torch.tensor([spec.scenarios.get(s, 0.0) for s in names], dtype=torch.float64, device=dev)
    scenario = torch.multinomial(weights, n, replacement=True, generator=gen)
    chosen = species_sets(n, n_species, spec.species_k, gen)
    if species is not None:
        chosen = species.to(dev, torch.bool)
    region = region_masks(spec, n, h, w, gen)
    spatial = region | (scenario == SCENARIOS.index("species")).view(n, 1, 1)
    every = (scenario == SCENARIOS.index("region")) | (scenario == DRAW_SCENARIOS.index(UNRECORDED))
    return spatial, chosen | every.view(n, 1), scenario


def reveal_draws(spec: MaskSpec, scenario: torch.Tensor, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    """(n, 1, h, w) bool: the cells an ``unrecorded`` draw leaves visible if they hold a record.
    Per sample a share is drawn uniformly in ``spec.record_share`` and each cell is kept with that
    chance; samples of other scenarios keep none. Drawn for the whole batch (so every process of a
    distributed run draws alike) without looking at the records: :func:`reveal_records` applies it."""
    n = scenario.shape[0]
    lo, hi = spec.record_share
    share = lo + (hi - lo) * torch.rand(n, generator=gen, device=gen.device)
    chance = torch.rand(n, 1, h, w, generator=gen, device=gen.device) < share.view(n, 1, 1, 1)
    unrecorded = (scenario == DRAW_SCENARIOS.index(UNRECORDED)).view(n, 1, 1, 1)
    return chance & unrecorded


def source_reveal(sources: torch.Tensor, pick: torch.Tensor, unrecorded: torch.Tensor) -> torch.Tensor:
    """(n, 1, h, w) bool: for each ``unrecorded`` sample (n,) bool, the cells recorded by a source
    other than the one hidden. The hidden source is drawn among those with a record in the tile
    with chances proportional to their record cells there (as a held-out survey is usually the
    tile's main source), by ``pick`` (n,) uniform in [0, 1). ``sources``: (n, h, w) int64 bits
    (:mod:`core.data.record_sources`). A tile without a source record keeps nothing visible."""
    n = sources.shape[0]
    bit = torch.arange(63, device=sources.device).view(1, 63, 1)
    cells = ((sources.view(n, 1, -1) >> bit) & 1).sum(dim=2).double()                 # (n, 63) per source
    total = cells.sum(dim=1)
    target = pick.to(sources.device).double() * total
    chosen = (cells.cumsum(dim=1) <= target.view(n, 1)).sum(dim=1).clamp_max(62)      # first source past it
    others = sources & ~(torch.ones_like(chosen) << chosen).view(n, 1, 1)
    keep = (others != 0) & (total > 0).view(n, 1, 1) & unrecorded.view(n, 1, 1).to(sources.device)
    return keep.unsqueeze(1)


def reveal_records(hidden: torch.Tensor, presence: torch.Tensor, reveal: torch.Tensor) -> torch.Tensor:
    """Hidden cells (n, S, h, w) less the record cells (a record of any species in ``presence``,
    (n, S, h, w)) that ``reveal`` (from :func:`reveal_draws`) keeps visible, every species of them."""
    recorded = presence.to(torch.bool).any(dim=1, keepdim=True)
    return hidden & ~(reveal.to(hidden.device) & recorded)


def drop_aux_bands(probability: float, batch: int, n_aux: int, generator: torch.Generator) -> torch.Tensor:
    """Auxiliary-band dropout for training: a (B, A, 1, 1) float mask, 0 where a band is blanked
    for a tile (each band independently with ``probability``), 1 where it is kept. Blanked bands
    read as the band's mean (aux bands are z-scored), so the model learns not to lean on any one
    band and tolerates one that a user cannot supply."""
    draw = torch.rand((batch, n_aux, 1, 1), generator=generator, device=generator.device)
    return (draw >= probability).float()
