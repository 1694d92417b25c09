"""The table of claims ``mechscope reproduce`` knows.

Example::

    >>> from mechscope.reproduce.registry import claim_names
    >>> claim_names()
    ['curve-detectors-exist', 'featvis-many-sigma', 'handmade-curve-detector', 'seeds-share-early-units']
"""

from __future__ import annotations

from mechscope.errors import unknown_name
from mechscope.reproduce import curve_detectors, featvis_sigma, handmade_curve, universality
from mechscope.reproduce.claims import Claim

CLAIMS: tuple[Claim, ...] = (curve_detectors.CLAIM, featvis_sigma.CLAIM, handmade_curve.CLAIM, universality.CLAIM)


def claim_names() -> list[str]:
    return [c.name for c in CLAIMS]


def get_claims(names: list[str]) -> list[Claim]:
    """The claims named (``["all"]`` = every claim); unknown names get the closest valid ones."""
    if names == ["all"] or not names:
        return list(CLAIMS)
    table = {c.name: c for c in CLAIMS}
    out = []
    for n in names:
        if n not in table:
            raise unknown_name("claim", n, list(table), where="mechscope reproduce")
        out.append(table[n])
    return out
