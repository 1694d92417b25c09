"""What a unit of an MLP does to the logits, and how monosemantic its top contexts are.

* :func:`unit_direction` / :func:`logit_effects`: a unit's output direction in the residual stream (a neuron's
  ``W_out[n]``; a dictionary latent's decoder row through the MLP, ``W_dec[i] @ W_out``) and the tokens it
  promotes and suppresses through ``W_U`` (the direct path; the final LayerNorm's scale and centring are ignored,
  so the values rank tokens rather than give exact logit changes).
* :func:`token_class`: a coarse, reproducible class of a token's text — ``special``, ``whitespace`` (spaces,
  newlines, indentation), ``digit``, ``punctuation``, ``keyword`` (Python's ``keyword.kwlist``), ``upper``
  (a word starting with a capital), ``lower``, ``other`` (e.g. ``_``-led identifiers, non-ASCII).  Coarse on
  purpose: a token's identity splits one feature that fires on ``)``, ``))`` and ``):`` into three, while the
  classes are what a reader names a feature by in this code-heavy corpus ("closing punctuation", "indentation",
  "keywords"); both are measured (``by="class"`` and ``by="token"``).
* :func:`monosemanticity`: for each unit whose top-k contexts are all filled with positive activations, the
  fraction of them whose max token falls in the unit's most common class (``1/k`` .. ``1``); averaged over
  those units.  The same function scores neurons, latents and random directions (``random_directions``, the
  control: what a concentration score gives for directions with no reason to be monosemantic).

Example::

    >>> token_class(" return"), token_class("\\n    "), token_class("))"), token_class(" Assertion"), token_class("42")
    ('keyword', 'whitespace', 'punctuation', 'upper', 'digit')
"""

from __future__ import annotations

import keyword
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mechscope.errors import MechscopeError

__all__ = ["token_class", "TOKEN_CLASSES", "unit_direction", "logit_effects", "LogitEffects", "Monosemanticity",
           "monosemanticity", "random_directions"]

TOKEN_CLASSES = ("special", "whitespace", "digit", "punctuation", "keyword", "upper", "lower", "other")
_KEYWORDS = frozenset(keyword.kwlist)


def token_class(text: str) -> str:
    """The coarse class of one token's decoded ``text`` (one of ``TOKEN_CLASSES``; see the module docstring)."""
    if text.startswith("<|") and text.endswith("|>"):
        return "special"
    word = text.strip()
    if not word:
        return "whitespace"
    if word.isdigit():
        return "digit"
    if all(not (c.isalnum() or c == "_") for c in word):
        return "punctuation"
    if word in _KEYWORDS:
        return "keyword"
    if word[0].isascii() and word[0].isupper():
        return "upper"
    if word[0].isascii() and word[0].islower():
        return "lower"
    return "other"


def _mlp_w_out(model: nn.Module, layer: int) -> Tensor:
    try:
        return model.blocks[layer].mlp.W_out
    except (AttributeError, IndexError, TypeError):
        raise MechscopeError(f"the model has no MLP W_out at blocks.{layer}.mlp (an attention-only model?)") from None


def unit_direction(model: nn.Module, unit: int, sae: Any = None, layer: int = 0) -> Tensor:
    """The residual-stream direction ``[d_model]`` an MLP unit writes: neuron ``unit``'s ``W_out[unit]``, or with
    ``sae`` latent ``unit``'s ``W_dec[unit] @ W_out``.  An index out of range names the valid range."""
    w_out = _mlp_w_out(model, layer).detach().float()
    if sae is None:
        count, what = w_out.shape[0], "neuron"
    else:
        if sae.config.d_in != w_out.shape[0]:
            raise MechscopeError(f"the SAE reads d_in={sae.config.d_in}, but blocks.{layer}.mlp has "
                                 f"{w_out.shape[0]} neurons")
        count, what = sae.config.n_latents, "latent"
    if isinstance(unit, bool) or not isinstance(unit, int) or not 0 <= unit < count:
        raise MechscopeError(f"no {what} {unit!r}: valid {what}s are 0..{count - 1}")
    row = w_out[unit] if sae is None else sae.W_dec.detach().float()[unit] @ w_out
    return row


@dataclass(frozen=True)
class LogitEffects:
    """The ``k`` tokens a direction raises most (``promoted``) and lowers most (``suppressed``): lists of
    ``(token_id, token_text, value)``, strongest first."""

    promoted: list[tuple[int, str, float]]
    suppressed: list[tuple[int, str, float]]


def logit_effects(model: nn.Module, direction: Tensor, k: int = 10, tokenizer: Any = None) -> LogitEffects:
    """Direct logit effects ``direction [d_model] @ W_U [d_model, vocab]`` (final LayerNorm ignored).

    Example::

        >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
        >>> m = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, n_ctx=4,
        ...                                        d_vocab=10, d_mlp=16), seed=0)
        >>> e = logit_effects(m, unit_direction(m, 3), k=2)
        >>> len(e.promoted), e.promoted[0][2] >= e.promoted[1][2] >= e.suppressed[1][2] >= e.suppressed[0][2]
        (2, True)
    """
    w_u = getattr(getattr(model, "unembed", model), "W_U").detach().float()
    if direction.shape != (w_u.shape[0],):
        raise MechscopeError(f"a direction for W_U must be [{w_u.shape[0]}]; got {tuple(direction.shape)}")
    logits = direction.float() @ w_u
    k = min(k, logits.numel())
    name = (lambda i: tokenizer.decode([i])) if tokenizer is not None else str
    top, low = logits.topk(k), logits.topk(k, largest=False)
    return LogitEffects([(int(i), name(int(i)), float(v)) for v, i in zip(*top)],
                        [(int(i), name(int(i)), float(v)) for v, i in zip(*low)])


def random_directions(count: int, width: int, seed: int = 0) -> Tensor:
    """``count`` unit-norm Gaussian directions ``[count, width]`` (seeded): the control's units.

    Example::

        >>> d = random_directions(3, 5, seed=1)
        >>> d.shape, bool(torch.allclose(d.norm(dim=-1), torch.ones(3))), torch.equal(d, random_directions(3, 5, 1))
        (torch.Size([3, 5]), True, True)
    """
    g = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(count, width, generator=g), dim=-1)


@dataclass(frozen=True)
class Monosemanticity:
    """Per-unit concentration of top-context max tokens on one class (``scores``: unit -> fraction, for the units
    scored), the mean over them, and the units scored / in all."""

    by: str
    mean: float
    scored: int
    units: int
    scores: dict[int, float]
    top_class: dict[int, str]


def monosemanticity(fc: Any, tokenizer: Any, by: str = "class") -> Monosemanticity:
    """Score a :class:`~mechscope.transformer.features.FeatureContexts` (see the module docstring).

    ``by="class"``: the max token's :func:`token_class`; ``by="token"``: its identity.  Units whose ``k`` slots
    are not all filled with positive activations are not scored (too few contexts to say).

    Example (a random model; ``Chars`` decodes id ``i`` as a letter, so every token is a lower-case word)::

        >>> from mechscope.transformer.features import feature_contexts
        >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
        >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=8, n_heads=1, d_head=8, n_ctx=8,
        ...                                            d_vocab=10, d_mlp=16), seed=0)
        >>> class Chars:
        ...     def decode(self, ids): return "".join(chr(97 + i) for i in ids)
        >>> tokens = torch.randint(0, 10, (8, 8), generator=torch.Generator().manual_seed(0))
        >>> fc = feature_contexts(model, tokens, "blocks.0.mlp.hook_post", k=4)
        >>> m = monosemanticity(fc, Chars())
        >>> m.mean, m.units, 0 < monosemanticity(fc, Chars(), by="token").mean <= 1
        (1.0, 16, True)
    """
    if by not in ("class", "token"):
        raise MechscopeError(f"by must be 'class' or 'token'; got {by!r}")
    peaks = fc.windows[:, :, fc.context]
    full = ((fc.index >= 0) & (fc.values > 0)).all(1)
    cache: dict[int, str] = {}

    def label(t: int) -> str:
        if t not in cache:
            cache[t] = token_class(tokenizer.decode([t])) if by == "class" else str(t)
        return cache[t]

    scores, top = {}, {}
    for u in torch.nonzero(full).flatten().tolist():
        labels = [label(t) for t in peaks[u].tolist()]
        name, n = Counter(labels).most_common(1)[0]
        scores[u], top[u] = n / len(labels), name
    mean = sum(scores.values()) / len(scores) if scores else float("nan")
    return Monosemanticity(by, mean, len(scores), fc.units, scores, top)
