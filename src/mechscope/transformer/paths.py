"""Path expansion of an attention-only transformer's logits (*A Mathematical Framework for Transformer
Circuits*, Elhage et al. 2021, the 1- and 2-layer expansions).

With every attention pattern frozen at its value in the actual forward, an attention-only model with no
LayerNorm is an affine function of its token (and positional) embeddings, and its logits split into a sum of
paths.  For a 2-layer model, writing ``x0`` for the residual stream's input (token embeddings, plus positional
embeddings under ``positional="standard"``), ``A^{l,h}`` for head ``l.h``'s pattern and ``W_OV = W_V W_O``::

    logits = x0 W_U                                          direct
           + sum_h A^{0,h} x0 W_OV^{0,h} W_U                 heads[0, h]
           + sum_h A^{1,h} x0 W_OV^{1,h} W_U                 heads[1, h]   (layer-1 head on the direct stream)
           + sum_{h0,h1} A^{1,h1} A^{0,h0} x0 W_OV^{0,h0} W_OV^{1,h1} W_U      virtual[h0, h1]
           + biases                                          (b_U, every b_O and b_V, and their paths on)

``heads`` and ``virtual`` are bias-free weight paths; every bias, including a layer-0 bias read by a layer-1
head's values, goes to ``biases``.  A layer-1 head's *values* are thus split into the direct stream
(``heads[1]``), each layer-0 head (``virtual``) and biases; its *queries and keys* are not split — the
pattern is the model's real one, frozen (so Q- and K-composition live inside the frozen ``A^{1,h}``).

What is frozen, from the actual forward on ``tokens``: every ``blocks.{l}.attn.hook_pattern``; for
``normalization="LNPre"`` also every LayerNorm scale — ``blocks.{l}.ln1.hook_scale`` (the layer's input) and
``ln_final.hook_scale`` ``[batch, pos, 1]``.  LNPre centres over ``d_model`` (linear) and divides by the scale
(linear once frozen), so each term is centred and divided by the frozen scale wherever the model applies a
LayerNorm.  ``normalization="LN"`` (with weights) is refused: fold it first with
``mechscope.zoo.attn_only.fold_layer_norm(model)``, which gives the same logits with LNPre.  Models with MLPs
or more than 2 layers are refused.

>>> import torch
>>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
>>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=8,
...                                            d_vocab=20, normalization=None, init_range=0.3), seed=0)
>>> tokens = torch.randint(0, 20, (3, 6), generator=torch.Generator().manual_seed(0))
>>> paths = path_expansion(model, tokens)
>>> paths.direct.shape, paths.heads.shape, paths.virtual.shape
(torch.Size([3, 6, 20]), torch.Size([2, 2, 3, 6, 20]), torch.Size([2, 2, 3, 6, 20]))
>>> bool(torch.allclose(paths.total(), model(tokens), atol=1e-4))
True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mechscope.errors import MechscopeError
from mechscope.transformer.models import ModelSpec, describe, run_with_cache


@dataclass
class PathExpansion:
    """The terms of ``path_expansion``; each is in logit space, ``[..., batch, pos, d_vocab]``.

    ``direct [batch, pos, d_vocab]``: embeddings (+ positional, standard positions) → unembedding.
    ``heads [n_layers, n_heads, batch, pos, d_vocab]``: head ``l.h`` applied to the direct stream only.
    ``virtual [n_heads, n_heads, batch, pos, d_vocab] | None``: 2 layers only; ``virtual[h0, h1]`` is the
    layer-0 head ``h0``'s (bias-free) output read by the values of layer-1 head ``h1`` (``None`` for 1 layer,
    or when not kept: then ``virtual_sum`` still carries their sum).
    ``virtual_sum [batch, pos, d_vocab] | None``: ``virtual.sum((0, 1))``; ``None`` for 1 layer.
    ``biases [batch, pos, d_vocab]``: ``b_U`` and every path starting at a ``b_V`` or ``b_O``.
    ``logits``: the model's own logits on the tokens (for checking); ``patterns [n_layers, batch, n_heads, q,
    k]`` and ``scales`` (``{hook name: [batch, pos, 1]}``, LNPre only) are what was frozen."""

    direct: Tensor
    heads: Tensor
    virtual: Tensor | None
    virtual_sum: Tensor | None
    biases: Tensor
    logits: Tensor
    patterns: Tensor
    scales: dict[str, Tensor] = field(default_factory=dict)

    def total(self) -> Tensor:
        """The sum of every term, ``[batch, pos, d_vocab]`` — equal to the model's logits (to rounding)."""
        out = self.direct + self.heads.sum(dim=(0, 1)) + self.biases
        if self.virtual_sum is not None:
            out = out + self.virtual_sum
        return out

    def max_error(self) -> float:
        """``max |total() - logits|``."""
        return float((self.total() - self.logits).abs().max())


def _check(model: Any) -> ModelSpec:
    cfg = describe(model)
    if cfg.normalization == "LN":
        raise MechscopeError("path_expansion needs normalization None or 'LNPre': a LayerNorm with weights is not "
                             "linear in its input's parts.  Fold it first: "
                             "model = mechscope.zoo.attn_only.fold_layer_norm(model) (same logits, LNPre).")
    if cfg.normalization not in (None, "LNPre"):
        raise MechscopeError(f"unsupported normalization {cfg.normalization!r}; expected None or 'LNPre'")
    if getattr(cfg, "d_mlp", None) is not None:
        raise MechscopeError("path_expansion is for attention-only models; this one has MLPs (d_mlp set)")
    if cfg.n_layers not in (1, 2):
        raise MechscopeError(f"path_expansion covers 1- and 2-layer models (the paper's expansions), this one has "
                             f"{cfg.n_layers} layers")
    return cfg


def path_expansion(model: Any, tokens: Tensor, *, keep_virtual: bool = True) -> PathExpansion:
    """Split ``model``'s logits on ``tokens`` ``[batch, pos]`` into direct, per-head, virtual-head (2 layers)
    and bias paths; patterns (and LNPre scales) frozen from the actual forward — see the module docstring.
    ``keep_virtual=False`` keeps only ``virtual_sum`` (``virtual`` costs ``n_heads**2 * batch * pos * d_vocab``).
    No grad; computed in the model's dtype; ``total()`` matches the logits within float rounding."""
    cfg = _check(model)
    L, lnpre = cfg.n_layers, cfg.normalization == "LNPre"
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(L)]
    scale_names = ([f"blocks.{layer}.ln1.hook_scale" for layer in range(L)] + ["ln_final.hook_scale"]
                   if lnpre else [])
    with torch.no_grad():
        logits, cache = run_with_cache(model, tokens, names + scale_names)
        patterns = torch.stack([cache[n] for n in names])            # [L, batch, H, q, k]
        scales = {n: cache[n] for n in scale_names}

        def norm(x: Tensor, scale_name: str) -> Tensor:
            """The frozen LayerNorm (LNPre) or identity; ``x [..., batch, pos, d_model]``."""
            if not lnpre:
                return x
            return (x - x.mean(-1, keepdim=True)) / scales[scale_name]

        def ov(layer: int, x: Tensor) -> Tensor:
            """Every head of ``layer`` on ``x [..., batch, pos, d_model]`` (already normalized) →
            ``[..., H, batch, pos, d_model]``, bias-free: ``A^h x W_V^h W_O^h``."""
            attn = model.blocks[layer].attn
            v = torch.einsum("...bkd,hde->...hbke", x, attn.W_V)
            z = torch.einsum("bhqk,...hbke->...hbqe", patterns[layer], v)
            return torch.einsum("...hbqe,hed->...hbqd", z, attn.W_O)

        def bias_out(layer: int, x_bias: Tensor | None) -> Tensor:
            """Layer ``layer``'s whole output due to biases: its heads' values of ``x_bias`` (the normalized bias
            stream reaching it, or None), ``b_V`` through each pattern and ``W_O``, and ``b_O``."""
            attn = model.blocks[layer].attn
            pattern_mass = patterns[layer].sum(-1)                     # [batch, H, q], 1 up to rounding
            z = torch.einsum("bhq,he->bqhe", pattern_mass, attn.b_V)
            out = torch.einsum("bqhe,hed->bqd", z, attn.W_O) + attn.b_O
            if x_bias is not None:
                out = out + ov(layer, x_bias).sum(0)
            return out

        x0 = model.embed.W_E[tokens]
        if cfg.positional == "standard":
            x0 = x0 + model.pos_embed.W_pos[: tokens.shape[1]]
        heads0 = ov(0, norm(x0, "blocks.0.ln1.hook_scale"))                 # [H, batch, pos, d_model]
        bias_stream = bias_out(0, None)                                     # [batch, pos, d_model]
        head_terms = [heads0]
        virtual = None
        if L == 2:
            s1 = "blocks.1.ln1.hook_scale"
            head_terms.append(ov(1, norm(x0, s1)))
            virtual = ov(1, norm(heads0, s1))                               # [H0, H1, batch, pos, d_model]
            bias_stream = bias_stream + bias_out(1, norm(bias_stream, s1))

        W_U, b_U = model.unembed.W_U, model.unembed.b_U

        def read(x: Tensor) -> Tensor:
            return norm(x, "ln_final.hook_scale") @ W_U

        heads = torch.stack([read(t) for t in head_terms])
        virtual_logits = read(virtual) if virtual is not None and keep_virtual else None
        if virtual_logits is not None:
            virtual_sum = virtual_logits.sum(dim=(0, 1))
        else:   # read is linear: sum in d_model first, never materialising [H, H, batch, pos, d_vocab]
            virtual_sum = read(virtual.sum(dim=(0, 1))) if virtual is not None else None
        return PathExpansion(
            direct=read(x0), heads=heads, virtual=virtual_logits, virtual_sum=virtual_sum,
            biases=read(bias_stream) + b_U, logits=logits, patterns=patterns, scales=scales)
