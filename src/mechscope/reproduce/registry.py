"""The table of claims ``mechscope reproduce`` knows.

Example::

    >>> from mechscope.reproduce.registry import claim_names
    >>> len(claim_names()), claim_names()[:2]
    (43, ['curve-detectors-exist', 'curve-family-rotated-copies'])
"""

from __future__ import annotations

from dataclasses import replace

from mechscope.errors import unknown_name
from mechscope.reproduce import (architectures, banding, banding_ablations, branch_curves, circle_detectors,
                                 curve_detectors, curve_evidence, curve_family, dictionary_features, feature_use,
                                 featvis_sigma, first_layer_branches, handmade_curve, high_low, icl, induction,
                                 multimodal, polysemanticity, superposition, universality)
from mechscope.reproduce.claims import Claim

def _area(area: str, *claims: Claim) -> tuple[Claim, ...]:
    return tuple(replace(c, area=area) for c in claims)


# One table, by area (the README's tables follow it), in the order of the papers' claims; the hand-written
# circuit last among the vision claims.
CLAIMS: tuple[Claim, ...] = (
    *_area("vision", curve_detectors.CLAIM, curve_family.CLAIM, featvis_sigma.CLAIM, high_low.CLAIM, banding.CLAIM,
           *banding_ablations.CLAIMS, universality.CLAIM, *architectures.CLAIMS, *curve_evidence.CLAIMS,
           feature_use.CLAIM, circle_detectors.CLAIM, branch_curves.CLAIM, *first_layer_branches.CLAIMS,
           polysemanticity.CLAIM, handmade_curve.CLAIM),
    *_area("multimodal", *multimodal.CLAIMS),
    *_area("transformer", *induction.CLAIMS, *icl.CLAIMS, dictionary_features.CLAIM),
    *_area("superposition", *superposition.CLAIMS),
)


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
