"""Calibration of a model's probabilities: a monotone map, fitted per masking scenario on the
validation blocks' hidden cells, that turns the network's output into the share of such cells
that hold a record ("0.2" then means: about one cell in five scored so holds a recorded site).

Three kinds are fitted and compared: ``temperature`` (logit / T), ``platt`` (a · logit + b) and
``isotonic`` (pool-adjacent-violators, read back by linear interpolation between its knots).
The card stores the chosen kind per scenario (``region``, ``species``, ``both``, and ``pooled``
for a map with nothing hidden, whose draws mix the three); every map, score and threshold of the
product reads probabilities through :meth:`Calibration.apply`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

METHODS = ("temperature", "platt", "isotonic")
POOLED = "pooled"     # the scenario key of a map with nothing hidden (its draws mix the scenarios)
ECE_BINS = 15
_FIT_BINS = 4000      # equal-count bins the fits run on (millions of cells -> a few thousand points)
_EPS = 1e-6
# isotonic maps are flat below their first knot and above their last: this slope keeps the cells'
# order there, also in float32 maps (a tie would lose ranking, hence AUPRC); it moves no probability by more than 0.001
TIE_BREAK = 1e-3


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class _Binned:
    """Cells sorted by probability and pooled into equal-count bins: mean probability, positives
    and count per bin (the fits' sufficient statistics, up to the spread inside a bin)."""

    p: np.ndarray
    pos: np.ndarray
    n: np.ndarray

    @classmethod
    def of(cls, probs: np.ndarray, truth: np.ndarray, bins: int = _FIT_BINS) -> "_Binned":
        order = np.argsort(probs, kind="stable")
        p, y = probs[order].astype(np.float64), truth[order].astype(np.float64)
        edges = np.unique(np.linspace(0, len(p), min(bins, len(p)) + 1).astype(np.int64))
        n = np.diff(edges).astype(np.float64)
        sums = np.add.reduceat(p, edges[:-1])
        pos = np.add.reduceat(y, edges[:-1])
        return cls(sums / n, pos, n)


def _nll(q: np.ndarray, b: _Binned) -> float:
    q = np.clip(q, 1e-12, 1 - 1e-12)
    return float(-(b.pos * np.log(q) + (b.n - b.pos) * np.log1p(-q)).sum() / b.n.sum())


class _IsotonicSegments:
    """An isotonic map as linear segments, read back in one pass per step: ``y0 + slope · (q − x0)``
    on the segment holding ``q``, with the tie-break folded in; above the last knot (compared with
    the knot rounded up, so that a float32 input never reads the steep last segment past its end)
    the map's top.

    float64 input: the segment found by ``bucketize``. float32 input (a map per draw): the segment
    found from the float's bits — non-negative floats order like their bit patterns, so the top
    bits (:data:`BUCKET_SHIFT`) index a table of the segment at each bucket's lowest value, and one
    comparison per knot inside a bucket finishes the search (the segment ``bucketize`` finds, at a
    fraction of its time: :class:`_BitBuckets`); the knot ``x0`` enters split into float32 high and
    low parts, the low part folded into ``y0`` in float64, so that ``q − x0`` stays exact."""

    def __init__(self, xs: list[float], ys: list[float], device: torch.device) -> None:
        x, y = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        dx = np.diff(x)
        slope = np.where(dx > 0, np.diff(y) / np.where(dx > 0, dx, 1.0), 0.0)
        self.lo, self.hi = float(x[0]), float(x[-1])
        self.y_lo, self.y_hi = (1 - TIE_BREAK) * float(y[0]), (1 - TIE_BREAK) * float(y[-1])
        top32 = np.float32(x[-1])  # the last knot rounded up in float32
        top32 = top32 if top32 >= x[-1] else np.nextafter(top32, np.float32(np.inf))
        self._float64 = self._on(device, torch.float64, x[1:-1], x[:-1], (1 - TIE_BREAK) * y[:-1],
                                 (1 - TIE_BREAK) * slope)
        self._float32 = _BitBuckets(x, y, slope, float(top32), device)

    @staticmethod
    def _on(device, dtype, *arrays) -> tuple[torch.Tensor, ...]:
        return tuple(torch.as_tensor(np.asarray(a), dtype=dtype, device=device).contiguous() for a in arrays)

    def apply(self, p: torch.Tensor) -> torch.Tensor:
        if p.dtype != torch.float64:
            return self._float32.apply(p.float()).to(p.dtype)
        inner, x0, y0, slope = self._float64
        p = p.contiguous()
        q = p.clamp(self.lo, self.hi)
        seg = torch.bucketize(q, inner, right=True).view(-1)
        out = (q.reshape(-1) - x0.index_select(0, seg)).mul_(slope.index_select(0, seg))
        out = out.add_(y0.index_select(0, seg)).clamp_(self.y_lo, self.y_hi)
        out.masked_fill_(p.reshape(-1) >= self.hi, self.y_hi)
        return out.view(p.shape).add_(p, alpha=TIE_BREAK)


BUCKET_SHIFT = 13  # float32 bits dropped to index the bucket table: buckets 1/1024 of a value wide


class _BitBuckets:
    """The float32 reading of :class:`_IsotonicSegments`, the tie-break folded into each segment's
    level and slope: a segment below the first knot (flat but for the tie-break), the map's
    segments, and one from ``top`` on (flat at the map's top), so that no clamp or separate test
    is needed: ``level + slope · (p − x0)`` on the segment holding ``p``."""

    def __init__(self, x: np.ndarray, y: np.ndarray, slope: np.ndarray, top: float, device: torch.device) -> None:
        keep = 1 - TIE_BREAK
        lo32, top32 = np.float32(x[0]), np.float32(top)
        x0_hi = x[:-1].astype(np.float32)
        x0_lo = x[:-1] - x0_hi.astype(np.float64)
        tilt = keep * slope + TIE_BREAK
        # (1 − t)·(y + s·(p − x)) + t·p with x = hi + lo: (1 − t)·y + t·x − tilt·lo + tilt·(p − hi)
        level = keep * y[:-1] + TIE_BREAK * x[:-1] - tilt * x0_lo
        y_lo, y_hi = keep * float(y[0]), keep * float(y[-1])
        starts = np.concatenate([[0.0], x0_hi, [top32]]).astype(np.float32)
        slopes = np.concatenate([[TIE_BREAK], tilt, [TIE_BREAK]])
        levels = np.concatenate([[y_lo], level, [y_hi + TIE_BREAK * float(top32)]])
        knots = np.concatenate([[lo32], x[1:-1].astype(np.float32), [top32]])   # segment k + 1 from knot k on
        bits = knots.view(np.int32).astype(np.int64)
        starts_bits = np.arange((int(top32.view(np.int32)) >> BUCKET_SHIFT) + 1, dtype=np.int64) << BUCKET_SHIFT
        base = np.searchsorted(bits, starts_bits, side="right")               # knots <= the bucket's lowest value
        inside = np.searchsorted(bits, starts_bits + (1 << BUCKET_SHIFT) - 1, side="right") - base
        self.rounds = int(inside.max())                                       # knots inside one bucket, at most
        padded = np.append(knots, np.float32(np.inf))

        def t(a, dtype):
            return torch.as_tensor(np.ascontiguousarray(a), dtype=dtype, device=device)
        self.base = t(base, torch.int64)
        self.knots = t(padded, torch.float32)
        self.x0, self.slope, self.level = t(starts, torch.float32), t(slopes, torch.float32), t(levels, torch.float32)
        self.last_bucket = len(base) - 1

    def apply(self, p: torch.Tensor) -> torch.Tensor:
        p = p.contiguous()  # one copy of a channels-last map here, not one in each step below
        flat = p.view(-1)
        # non-negative floats order like their bits (a negative one reads the first segment, NaN stays NaN)
        bucket = (flat.view(torch.int32) >> BUCKET_SHIFT).clamp_(0, self.last_bucket).long()
        seg = self.base.index_select(0, bucket)
        for _ in range(self.rounds):  # usually one: the next knot, inside the bucket or past it
            seg += flat >= self.knots.index_select(0, seg)
        rise = flat - self.x0.index_select(0, seg)
        return self.level.index_select(0, seg).addcmul_(rise, self.slope.index_select(0, seg)).view(p.shape)


@dataclass(frozen=True)
class ScaleMap:
    """One fitted monotone map from a model's probability to a calibrated one."""

    method: str
    params: dict[str, Any]

    def apply_numpy(self, p: np.ndarray) -> np.ndarray:
        if self.method == "identity":
            return p
        if self.method == "temperature":
            return _sigmoid(_logit(p) / self.params["t"]).astype(p.dtype)
        if self.method == "platt":
            return _sigmoid(self.params["a"] * _logit(p) + self.params["b"]).astype(p.dtype)
        if self.method == "isotonic":
            return (np.interp(p, self.params["x"], self.params["y"]) * (1 - TIE_BREAK) + TIE_BREAK * p).astype(p.dtype)
        raise ValueError(f"unknown calibration method {self.method!r}")

    def apply(self, p: torch.Tensor) -> torch.Tensor:
        """The calibrated probabilities of ``p`` (any shape), on ``p``'s device and dtype."""
        if self.method == "identity":
            return p
        if self.method in ("temperature", "platt"):
            z = torch.logit(p.double().clamp(_EPS, 1 - _EPS))
            z = z / self.params["t"] if self.method == "temperature" else self.params["a"] * z + self.params["b"]
            return torch.sigmoid(z).to(p.dtype)
        if self.method == "isotonic":
            return self._segments(p.device).apply(p)
        raise ValueError(f"unknown calibration method {self.method!r}")

    def _segments(self, device: torch.device) -> "_IsotonicSegments":
        """The isotonic map's segments on ``device`` (built once per device)."""
        cache = self.__dict__.setdefault("_segments_by_device", {})
        if device not in cache:
            cache[device] = _IsotonicSegments(self.params["x"], self.params["y"], device)
        return cache[device]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, **self.params}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ScaleMap":
        d = dict(d)
        method = d.pop("method", None)
        if method not in METHODS + ("identity",):
            raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, not {method!r}")
        need = {"temperature": ("t",), "platt": ("a", "b"), "isotonic": ("x", "y"), "identity": ()}[method]
        for k in need:
            if k not in d:
                raise ValueError(f"{method} calibration lacks {k!r}")
        if method == "isotonic":
            x, y = np.asarray(d["x"], float), np.asarray(d["y"], float)
            if x.ndim != 1 or len(x) < 2 or len(x) != len(y) or np.any(np.diff(x) < 0) or np.any(np.diff(y) < 0) \
                    or not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
                raise ValueError("isotonic calibration needs two increasing lists x and y of the same length")
            d["x"], d["y"] = x.tolist(), y.tolist()
        else:
            for k in need:
                if not isinstance(d[k], (int, float)) or isinstance(d[k], bool) or not math.isfinite(d[k]):
                    raise ValueError(f"{method} calibration's {k!r} must be a finite number, not {d[k]!r}")
            if method == "temperature" and d["t"] <= 0:
                raise ValueError("temperature calibration's 't' must be above 0")
            if method == "platt" and d["a"] <= 0:
                raise ValueError("platt calibration's 'a' must be above 0 (a decreasing map is not a calibration)")
        return cls(method, {k: d[k] for k in need})


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> ScaleMap:
    """logit(p) / T with T minimising the log loss (golden-section search over log T)."""
    b = _Binned.of(probs, truth)
    z = _logit(b.p)
    lo, hi = math.log(1e-2), math.log(1e3)
    g = (math.sqrt(5) - 1) / 2
    f = lambda lt: _nll(_sigmoid(z / math.exp(lt)), b)  # noqa: E731
    c, d = hi - g * (hi - lo), lo + g * (hi - lo)
    fc, fd = f(c), f(d)
    for _ in range(80):
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - g * (hi - lo)
            fc = f(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + g * (hi - lo)
            fd = f(d)
    return ScaleMap("temperature", {"t": float(math.exp((lo + hi) / 2))})


def fit_platt(probs: np.ndarray, truth: np.ndarray) -> ScaleMap:
    """sigmoid(a · logit(p) + b), a and b by Newton's method on the log loss."""
    bn = _Binned.of(probs, truth)
    z = _logit(bn.p)
    base = float(np.clip(bn.pos.sum() / bn.n.sum(), 1e-9, 1 - 1e-9))
    a, b = 1.0, math.log(base / (1 - base)) - float(np.average(z, weights=bn.n))
    for _ in range(100):
        q = _sigmoid(a * z + b)
        r = bn.pos - bn.n * q                     # gradient of the log-likelihood
        w = bn.n * q * (1 - q) + 1e-12
        g = np.array([(r * z).sum(), r.sum()])
        h = np.array([[(w * z * z).sum(), (w * z).sum()], [(w * z).sum(), w.sum()]])
        step = np.linalg.solve(h + 1e-9 * np.eye(2), g)
        a, b = a + step[0], b + step[1]
        if np.abs(step).max() < 1e-10:
            break
    if not a > 0:  # the scores do not rise with the truth: keep the ranking, fit the level only
        a = 1e-3
    return ScaleMap("platt", {"a": float(a), "b": float(b)})


def fit_isotonic(probs: np.ndarray, truth: np.ndarray) -> ScaleMap:
    """The non-decreasing step of the positives' share (pool adjacent violators over equal-count
    bins), read back by linear interpolation between the pooled blocks' mean probabilities."""
    bn = _Binned.of(probs, truth)
    blocks: list[list[float]] = []  # [sum p·n, positives, n]
    for p, pos, n in zip(bn.p, bn.pos, bn.n):
        blocks.append([p * n, pos, n])
        while len(blocks) > 1 and blocks[-2][1] / blocks[-2][2] >= blocks[-1][1] / blocks[-1][2]:
            sp, po, nn = blocks.pop()
            blocks[-1][0] += sp
            blocks[-1][1] += po
            blocks[-1][2] += nn
    x = [b[0] / b[2] for b in blocks]
    y = [b[1] / b[2] for b in blocks]
    if len(x) == 1:  # one level: a flat map at the base rate
        x, y = [0.0, 1.0], [y[0], y[0]]
    x, y = np.maximum.accumulate(np.asarray(x)), np.maximum.accumulate(np.asarray(y))
    keep = np.concatenate([[True], np.diff(x) > 0])
    return ScaleMap("isotonic", {"x": x[keep].tolist(), "y": y[keep].tolist()})


FITTERS = {"temperature": fit_temperature, "platt": fit_platt, "isotonic": fit_isotonic}


def reliability(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Equal-width bins of the probability: each bin's mean probability, share of positives and
    count (the reliability diagram's points)."""
    idx = np.minimum((probs.astype(np.float64) * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins).astype(np.float64)
    sp = np.bincount(idx, weights=probs.astype(np.float64), minlength=bins)
    sy = np.bincount(idx, weights=truth.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"mean_probability": (sp / n).tolist(), "observed": (sy / n).tolist(), "cells": n.tolist()}


def expected_calibration_error(probs: np.ndarray, truth: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the cell-weighted mean gap between a bin's mean probability and its share of positives
    (equal-width bins)."""
    if len(probs) == 0:
        return float("nan")
    r = reliability(probs, truth, bins)
    n = np.asarray(r["cells"])
    gap = np.abs(np.nan_to_num(np.asarray(r["mean_probability"])) - np.nan_to_num(np.asarray(r["observed"])))
    return float((gap * n).sum() / n.sum())


def choose_method(probs: np.ndarray, truth: np.ndarray, groups: np.ndarray) -> tuple[str, dict[str, float]]:
    """The method with the lowest cross-fitted log loss on the validation cells: fitted on one half
    of the validation tiles (``groups`` 0/1 per cell), scored on the other, both ways. Returns the
    method and each method's mean held-out log loss and ECE."""
    out: dict[str, float] = {}
    for m, fit in FITTERS.items():
        nll, ece = [], []
        for k in (0, 1):
            a, b = groups == k, groups != k
            if not truth[a].any() or not b.any():
                continue
            q = fit(probs[a], truth[a]).apply_numpy(probs[b])
            nll.append(_nll(q.astype(np.float64), _Binned(q.astype(np.float64), truth[b].astype(np.float64),
                                                           np.ones(int(b.sum())))))
            ece.append(expected_calibration_error(q, truth[b]))
        out[f"{m}_log_loss"] = float(np.mean(nll)) if nll else float("inf")
        out[f"{m}_ece"] = float(np.mean(ece)) if ece else float("nan")
    best = min(FITTERS, key=lambda m: out[f"{m}_log_loss"])
    return best, out


@dataclass
class Calibration:
    """The card's calibration: one :class:`ScaleMap` per masking scenario (and ``pooled``)."""

    maps: dict[str, ScaleMap]
    info: dict[str, Any]

    def for_scenario(self, scenario: Optional[str]) -> ScaleMap:
        key = scenario if scenario in self.maps else POOLED
        return self.maps.get(key, ScaleMap("identity", {}))

    def apply(self, p: torch.Tensor, scenario: Optional[str]) -> torch.Tensor:
        return self.for_scenario(scenario).apply(p)

    def to_dict(self) -> dict[str, Any]:
        return {**self.info, "scenarios": {k: v.to_dict() for k, v in self.maps.items()}}

    @classmethod
    def from_dict(cls, d: Any) -> "Calibration":
        if not isinstance(d, dict) or not isinstance(d.get("scenarios"), dict):
            raise ValueError("calibration must be a mapping with a 'scenarios' mapping")
        maps = {str(k): ScaleMap.from_dict(v if isinstance(v, dict) else {}) for k, v in d["scenarios"].items()}
        return cls(maps, {k: v for k, v in d.items() if k != "scenarios"})


SCALE_NOTE = ("calibrated probability: the share of such cells that held a recorded site on the validation "
              "blocks (1-mile cells, same kind of hiding)")
RAW_NOTE = "model score (not calibrated: no fixed number means the same twice)"
