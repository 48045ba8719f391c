"""Mineral species and the commodity spellings that map to each."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from ..errors import InputError


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

# Between commodity names: ; , / | & + parentheses, brackets and the word "and" ("Gold-Silver",
# "Au/Ag", "Gold (placer)", "iron and manganese"); inside one name, words split on spaces and hyphens.
_SPLIT = re.compile(r"[;,/|&+()\[\]]|\band\b", re.IGNORECASE)
_WORDS = re.compile(r"[\s\-]+")
SYMBOL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


@dataclass
class SpeciesCatalog:
    """Maps commodity strings as sources spell them (``Au``, ``Gold``, ``gold``) to species."""

    species: list[Species] = field(default_factory=lambda: list(DEFAULT_SPECIES))

    def __post_init__(self) -> None:
        """Each symbol a band-name-safe word; each spelling (any case) names one species only."""
        self._lookup: dict[str, str] = {}
        for sp in self.species:
            if not SYMBOL_RE.match(sp.symbol or ""):
                raise InputError(f"Bad species symbol {sp.symbol!r} (for {sp.name or 'a species'}): a symbol is a "
                                 "letter followed by letters, digits or '_' (it names the stack's band), "
                                 "e.g. Mo=Molybdenum or Ce=Cerium.")
            for s in sp.spellings():
                other = self._lookup.get(s)
                if other is not None and other != sp.symbol:
                    raise InputError(f"The spelling {s!r} would name both {other} and {sp.symbol}. A spelling "
                                     f"names one species: to add spellings to {other} write {other}=Spelling|..., "
                                     "and give a new species its own symbol (e.g. Ce=Cerium).")
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
        """Symbols named in a commodity field, any case. Names are separated by ``; , / | & +``,
        parentheses or the word "and" (``Gold-Silver``, ``Au/Ag``, ``Gold (placer)``); a name that
        is no spelling as a whole is read word by word (words split on spaces and hyphens:
        ``Copper Oxide`` → Cu, ``Uranium-Vanadium`` → U, ``U V CU`` → U, Cu). Words that are a
        species' symbol count there only as written (``Au``) or in capitals (``AU``), or when every
        word of the name is a spelling (``au ag``): an English ``in`` or ``as`` names no In or As."""
        fields = [commodities] if isinstance(commodities, str) else list(commodities)
        found: set[str] = set()
        for f in fields:
            for token in _SPLIT.split(f or ""):
                token = token.strip()
                sym = self._lookup.get(token.lower())
                if sym is not None:
                    found.add(sym)
                    continue
                words = [w for w in _WORDS.split(token) if w]
                if len(words) > 1 and all(w.lower() in self._lookup for w in words):
                    found.update(self._lookup[w.lower()] for w in words)
                    continue
                for w in words:
                    sym = self._lookup.get(w.lower())
                    if sym is not None and (w.lower() != sym.lower() or w in (sym, sym.upper())):
                        found.add(sym)
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
            sym = sym.strip()
            if not SYMBOL_RE.match(sym):
                raise InputError(f"Bad species spec '{part}': the symbol before '=' must be a letter followed by "
                                 "letters or digits (it names the stack's band), e.g. Ce=Cerium.")
            if sym in out:
                raise InputError(f"Species {sym} is given twice in '{text}'; give its spellings once: "
                                 f"{sym}=Name|alias|...")
            out[sym] = names.split("|")
        return out


def catalog_for(species: Sequence[str]) -> SpeciesCatalog:
    """The default catalog restricted to ``species``, in that order; unknown symbols added as-is."""
    base = SpeciesCatalog()
    extra = {s: [] for s in species if s not in base.symbols}
    return (base.extended(extra) if extra else base).subset(list(species))
