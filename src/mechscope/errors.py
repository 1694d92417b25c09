"""The ``MechscopeError`` family: every error says what was wrong and what would be valid."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class MechscopeError(Exception):
    """Base class of every error mechscope raises on purpose."""


class UnknownNameError(MechscopeError, KeyError):
    """A layer, unit, model or head name that does not exist.  Also a ``KeyError`` for dict-like callers."""

    def __str__(self) -> str:  # KeyError would quote the message; keep it readable
        return str(self.args[0]) if self.args else ""


class WeightsError(MechscopeError):
    """A weights file that is missing, corrupt, of the wrong layout or with the wrong checksum."""


def closest(name: str, candidates: Iterable[str], n: int = 5) -> list[str]:
    """The ``n`` candidates closest to ``name`` (difflib ratio, then shared prefix), best first."""
    pool = list(candidates)
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.5)
    if len(found) < n:
        prefix = [c for c in pool if c.startswith(name[: max(3, len(name) // 2)]) and c not in found]
        found += prefix[: n - len(found)]
    return found


def unknown_name(kind: str, name: str, valid: Iterable[str], where: str = "") -> UnknownNameError:
    """Build the standard 'unknown X' error, naming the closest valid names."""
    valid = list(valid)
    near = closest(name, valid)
    msg = f"unknown {kind} {name!r}{' in ' + where if where else ''}."
    if near:
        msg += " Closest valid names: " + ", ".join(near) + "."
    elif len(valid) <= 20:
        msg += " Valid names: " + ", ".join(valid) + "."
    msg += f" ({len(valid)} valid {kind} names in all.)"
    return UnknownNameError(msg)
