"""What the transformer analyses need from a model, read the same way from each kind they accept.

Three kinds of model carry TransformerLens's vocabulary, with small differences this module hides:

* our :class:`~mechscope.zoo.attn_only.AttnOnlyTransformer` — ``cfg.normalization`` / ``cfg.positional`` /
  ``cfg.d_mlp`` (``None``: attention only); ``run_with_cache(tokens, names)``; plain hook modules;
* TransformerLens 3.x ``HookedTransformer`` — ``cfg.normalization_type`` / ``cfg.positional_embedding_type`` /
  ``cfg.attn_only``; ``run_with_cache(tokens, names_filter=...)``;
* TransformerLens 4.x ``TransformerBridge`` (a Hugging Face model, or ``boot_native``'s, behind TL's names) —
  the 3.x config names; ``d_mlp`` is filled in even when ``attn_only``; grouped-query models keep one K/V
  projection per key-value head (``blocks[l].attn.W_K [n_kv_heads, d_model, d_head]``); and some hook points
  see a tensor in the wrapped model's layout, converted to TL's by the hook point's ``hook_conversion`` (e.g.
  ``hook_z`` is ``[batch, pos, d_model]`` inside, ``[batch, pos, n_heads, d_head]`` in a cache).

>>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
>>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=20))
>>> spec = describe(model)
>>> spec.n_layers, spec.normalization, spec.positional, spec.d_mlp
(1, 'LN', 'shortformer', None)
>>> import torch
>>> logits, cache = run_with_cache(model, torch.zeros(1, 4, dtype=torch.long), ["blocks.0.attn.hook_pattern"])
>>> sorted(cache), tuple(cache["blocks.0.attn.hook_pattern"].shape)
(['blocks.0.attn.hook_pattern'], (1, 2, 4, 4))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from mechscope.errors import MechscopeError, unknown_name


@dataclass(frozen=True)
class ModelSpec:
    """A model's shape as the analyses see it.  ``normalization``: ``None``, ``"LN"``, ``"LNPre"``, ``"RMS"`` …
    (TL's spelling); ``positional``: ``"standard"``, ``"shortformer"``, ``"rotary"`` …; ``d_mlp``: ``None`` for
    an attention-only model."""

    n_layers: int
    n_heads: int
    d_head: int
    d_model: int
    d_vocab: int
    n_ctx: int
    normalization: str | None
    positional: str
    d_mlp: int | None


def _first(cfg: Any, names: Sequence[str], default: Any = None) -> Any:
    for name in names:
        if hasattr(cfg, name):
            return getattr(cfg, name)
    return default


def describe(model: Any) -> ModelSpec:
    """The :class:`ModelSpec` of ours, a TransformerLens ``HookedTransformer`` or a ``TransformerBridge``, read
    from ``model.cfg`` (``normalization`` or ``normalization_type``; ``positional`` or
    ``positional_embedding_type``; ``d_mlp`` unless ``attn_only``)."""
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        raise MechscopeError(f"{type(model).__name__} has no .cfg: the transformer analyses take our "
                             f"AttnOnlyTransformer, a TransformerLens HookedTransformer or a TransformerBridge.")
    try:
        sizes = {n: int(getattr(cfg, n)) for n in ("n_layers", "n_heads", "d_head", "d_model", "d_vocab", "n_ctx")}
    except (AttributeError, TypeError) as err:
        raise MechscopeError(f"{type(model).__name__}.cfg lacks a size the analyses need: {err}") from None
    d_mlp = None if _first(cfg, ("attn_only",), False) else _first(cfg, ("d_mlp",))
    return ModelSpec(**sizes,
                     normalization=_first(cfg, ("normalization", "normalization_type")),
                     positional=str(_first(cfg, ("positional", "positional_embedding_type"), "standard")),
                     d_mlp=None if d_mlp is None else int(d_mlp))


def is_transformer_lens(model: Any) -> bool:
    """True for a TransformerLens model (3.x ``HookedTransformer`` or 4.x ``TransformerBridge``): both keep
    their hook points in ``hook_dict`` and take ``run_with_cache(..., names_filter=...)``."""
    return hasattr(model, "hook_dict") and not hasattr(model, "hook_names")


def run_with_cache(model: Any, tokens: Tensor, names: Sequence[str]) -> tuple[Tensor, dict[str, Tensor]]:
    """Logits ``[batch, pos, d_vocab]`` and ``{name: value}`` for exactly the hook ``names`` (values in TL's
    layout, e.g. ``hook_pattern [batch, head, query, key]``), from one forward of any accepted model.  A name the
    model does not have is refused, naming the closest valid ones."""
    names = list(names)
    if not is_transformer_lens(model):
        logits, cache = model.run_with_cache(tokens, names)
        return logits, {n: cache[n] for n in names}
    missing = [n for n in names if n not in model.hook_dict]
    if missing:
        raise unknown_name("hook", missing[0], list(model.hook_dict), where=type(model).__name__)
    logits, cache = model.run_with_cache(tokens, names_filter=names)
    return logits, {n: cache[n] for n in names}


def add_forward_hook(module: Any, fn: Callable[[Tensor], Tensor]) -> Any:
    """Register ``fn(value) -> new value`` on hook point ``module`` so that ``fn`` sees and returns TL's layout
    (a ``TransformerBridge`` hook point with a ``hook_conversion`` converts its tensor before ``fn`` and back
    after).  Returns the handle; ``handle.remove()`` takes the hook off.

    >>> import torch
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=1, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=20))
    >>> handle = add_forward_hook(model.blocks[0].attn.hook_z, torch.zeros_like)   # silence every head
    >>> tokens = torch.zeros(1, 4, dtype=torch.long)
    >>> bool((run_with_cache(model, tokens, ["blocks.0.attn.hook_z"])[1]["blocks.0.attn.hook_z"] == 0).all())
    True
    >>> handle.remove()
    """
    conversion = getattr(module, "hook_conversion", None)

    def hook(_module: Any, _inputs: Any, value: Tensor) -> Tensor:
        if conversion is None:
            return fn(value)
        return conversion.revert(fn(conversion.convert(value)))

    return module.register_forward_hook(hook)
