"""Mineral species and the commodity spellings that map to each."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from .errors import InputError


@dataclass(frozen=True)
class Species:
    """A species: its symbol (the band name) and every commodity spelling that means it."""

    symbol: str
    name: str
    aliases: tuple[str, ...] = ()

    def spellings(self) -> set[str]:
        return {s.lower() for s in (self.symbol, self.name, *self.aliases)}


DEFAULT_SPECIES: tuple[Species, ...] = (
    Species("Au", "Gold", ("native gold", "gold ore", "placer gold")),
    Species("Ag", "Silver", ("silver ore",)),
    Species("Zn", "Zinc", ("zinc ore", "sphalerite")),
    Species("Pb", "Lead", ("lead ore", "galena")),
    Species("Cu", "Copper", ("copper ore", "chalcopyrite")),
    Species("Ni", "Nickel", ("nickel ore",)),
    Species("Fe", "Iron", ("iron ore", "magnetite", "hematite")),
    Species("U", "Uranium", ("uranium ore", "u3o8")),
    Species("W", "Tungsten", ("tungsten ore", "scheelite", "wolframite")),
    Species("Mn", "Manganese", ("manganese ore",)),
)

_SPLIT = re.compile(r"[;,]")


@dataclass
class SpeciesCatalog:
    """Maps commodity strings as sources spell them (``Au``, ``Gold``, ``gold``) to species."""

    species: list[Species] = field(default_factory=lambda: list(DEFAULT_SPECIES))

    def __post_init__(self) -> None:
        self._lookup: dict[str, str] = {}
        for sp in self.species:
            for s in sp.spellings():
                self._lookup[s] = sp.symbol

    @property
    def symbols(self) -> list[str]:
        return [s.symbol for s in self.species]

    def index(self, symbol: str) -> int:
        try:
            return self.symbols.index(symbol)
        except ValueError:
            raise InputError(f"Unknown species '{symbol}'. Known: {', '.join(self.symbols)}.") from None

    def match(self, commodities: str | Iterable[str]) -> set[str]:
        """Symbols named in a commodity field: separators ``;`` and ``,``; any case; a token of
        several space-separated symbols (``Au Ag``) names each."""
        fields = [commodities] if isinstance(commodities, str) else list(commodities)
        found: set[str] = set()
        for f in fields:
            for token in _SPLIT.split(f or ""):
                token = token.strip().lower()
                if not token:
                    continue
                sym = self._lookup.get(token)
                if sym is not None:
                    found.add(sym)
                    continue
                words = token.split()
                if len(words) > 1 and all(w in self._lookup for w in words):
                    found.update(self._lookup[w] for w in words)
        return found

    def subset(self, symbols: Sequence[str]) -> "SpeciesCatalog":
        return SpeciesCatalog([self.species[self.index(s)] for s in symbols])

    def extended(self, extra: Mapping[str, Sequence[str]]) -> "SpeciesCatalog":
        """Add species or spellings: ``{"Mo": ["Molybdenum", "moly"]}``. For a known symbol the
        spellings are added to it; a new symbol becomes a new species (first spelling = name)."""
        species = list(self.species)
        for symbol, spellings in extra.items():
            spellings = [s.strip() for s in spellings if s.strip()]
            if symbol in self.symbols:
                i = self.symbols.index(symbol)
                old = species[i]
                species[i] = Species(old.symbol, old.name, old.aliases + tuple(spellings))
            else:
                name = spellings[0] if spellings else symbol
                species.append(Species(symbol, name, tuple(spellings[1:])))
        return SpeciesCatalog(species)

    @classmethod
    def parse_extra(cls, text: str) -> dict[str, list[str]]:
        """Parse ``"Mo=Molybdenum|moly,Co=Cobalt"`` from the command line."""
        out: dict[str, list[str]] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            if "=" not in part:
                raise InputError(f"Bad species spec '{part}': write SYMBOL=Name|alias|..., e.g. Mo=Molybdenum|moly")
            sym, names = part.split("=", 1)
            out[sym.strip()] = names.split("|")
        return out
