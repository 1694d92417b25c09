"""A small attention-only transformer (optionally with MLPs), written to be read top to bottom.

Decoder-only and causal.  Weights carry the names of *A Mathematical Framework for Transformer Circuits* and
TransformerLens: ``embed.W_E [d_vocab, d_model]``, ``pos_embed.W_pos [n_ctx, d_model]``, per block
``attn.W_Q / W_K / W_V [n_heads, d_model, d_head]``, ``attn.W_O [n_heads, d_head, d_model]``, biases
``b_Q b_K b_V [n_heads, d_head]`` and ``b_O [d_model]``, optional ``mlp.W_in [d_model, d_mlp]`` /
``mlp.W_out [d_mlp, d_model]``, LayerNorms ``ln1 / ln2 / ln_final`` (``w``, ``b``), and
``unembed.W_U [d_model, d_vocab]``, ``unembed.b_U``.  A state dict therefore has TransformerLens's key layout
(its ``attn-only-1l`` / ``attn-only-2l`` checkpoints); ``from_transformer_lens`` / ``to_transformer_lens``
convert, adding or dropping the attention-mask buffers it keeps.

Positional embeddings are ``"standard"`` (added to the residual stream) or ``"shortformer"`` (added only to
the normalized inputs of queries and keys, never to values or the residual stream — which makes a
previous-token head easy to form).  Normalization is ``"LN"``, ``"LNPre"`` (LayerNorm without weights: what ``fold_layer_norm``
leaves) or ``None``.

Hook points are identity modules, so ``mechscope.capture`` reads them by path — ``hook_embed``,
``blocks.0.hook_resid_pre``, ``blocks.0.attn.hook_q`` / ``hook_k`` / ``hook_v`` ``[batch, pos, head, d_head]``,
``hook_attn_scores`` / ``hook_pattern`` ``[batch, head, query, key]``, ``hook_z`` ``[batch, pos, head, d_head]``,
``hook_result`` ``[batch, pos, head, d_model]`` (each head's output, computed only when something hooks it),
``blocks.0.hook_attn_out``, ``hook_resid_post``, ``ln_final.hook_normalized`` … and ``run_with_cache`` returns
every hook's value.

Example::

    >>> import torch
    >>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
    >>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=16,
    ...                                            d_vocab=50), seed=0)
    >>> tokens = torch.randint(0, 50, (3, 10))
    >>> logits, cache = model.run_with_cache(tokens)
    >>> logits.shape, cache["blocks.1.attn.hook_pattern"].shape, cache["blocks.0.attn.hook_result"].shape
    (torch.Size([3, 10, 50]), torch.Size([3, 4, 10, 10]), torch.Size([3, 10, 4, 32]))
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mechscope.errors import MechscopeError

POSITIONAL = ("standard", "shortformer")
NORMALIZATION = ("LN", "LNPre", None)


@dataclass(frozen=True)
class AttnOnlyConfig:
    """The architecture.  ``d_mlp=None``: attention only.  ``init_range``: std of the normal initialisation."""

    n_layers: int = 2
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    n_ctx: int = 128
    d_vocab: int = 1024
    d_mlp: int | None = None
    normalization: str | None = "LN"
    positional: str = "shortformer"
    eps: float = 1e-5
    init_range: float = 0.02
    extra: dict = field(default_factory=dict, compare=False)   # free-form notes carried into saved files

    def __post_init__(self) -> None:
        if self.positional not in POSITIONAL:
            raise MechscopeError(f"positional must be one of {POSITIONAL}, not {self.positional!r}")
        if self.normalization not in NORMALIZATION:
            raise MechscopeError(f"normalization must be one of {NORMALIZATION}, not {self.normalization!r}")
        for name in ("n_layers", "d_model", "n_heads", "d_head", "n_ctx", "d_vocab"):
            if int(getattr(self, name)) < 1:
                raise MechscopeError(f"{name} must be a positive integer, got {getattr(self, name)!r}")


class HookPoint(nn.Identity):
    """An identity module: a named place whose value ``capture`` / ``run_with_cache`` can read."""

    def hooked(self) -> bool:
        return bool(self._forward_hooks)


class LayerNorm(nn.Module):
    """LayerNorm with TransformerLens's names (``w``, ``b``); ``weights=False`` is ``LNPre`` (centre and scale
    only).  ``hook_scale [batch, pos, 1]``, ``hook_normalized [batch, pos, d_model]``."""

    def __init__(self, d_model: int, eps: float, weights: bool = True) -> None:
        super().__init__()
        self.eps = eps
        if weights:
            self.w = nn.Parameter(torch.ones(d_model))
            self.b = nn.Parameter(torch.zeros(d_model))
        self.hook_scale = HookPoint()
        self.hook_normalized = HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        x = x / scale
        if hasattr(self, "w"):
            x = x * self.w + self.b
        return self.hook_normalized(x)


def _norm(cfg: AttnOnlyConfig) -> nn.Module:
    if cfg.normalization is None:
        return nn.Identity()
    return LayerNorm(cfg.d_model, cfg.eps, weights=cfg.normalization == "LN")


class Attention(nn.Module):
    """Multi-head causal self-attention, per-head weights ``[n_heads, d_model, d_head]``."""

    def __init__(self, cfg: AttnOnlyConfig) -> None:
        super().__init__()
        h, d, k = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(torch.empty(h, d, k)) for _ in range(3))
        self.W_O = nn.Parameter(torch.empty(h, k, d))
        self.b_Q, self.b_K, self.b_V = (nn.Parameter(torch.zeros(h, k)) for _ in range(3))
        self.b_O = nn.Parameter(torch.zeros(d))
        self.scale = 1.0 / math.sqrt(k)
        for name in ("hook_q", "hook_k", "hook_v", "hook_attn_scores", "hook_pattern", "hook_z", "hook_result"):
            setattr(self, name, HookPoint())

    def forward(self, x_qk: torch.Tensor, x_v: torch.Tensor) -> torch.Tensor:
        """``x_qk``: the queries' and keys' input, ``x_v`` the values' (they differ under shortformer);
        both ``[batch, pos, d_model]``.  Returns ``[batch, pos, d_model]``."""
        q = self.hook_q(torch.einsum("bpd,hde->bphe", x_qk, self.W_Q) + self.b_Q)
        k = self.hook_k(torch.einsum("bpd,hde->bphe", x_qk, self.W_K) + self.b_K)
        v = self.hook_v(torch.einsum("bpd,hde->bphe", x_v, self.W_V) + self.b_V)
        scores = torch.einsum("bqhe,bkhe->bhqk", q, k) * self.scale
        n = scores.shape[-1]
        causal = torch.ones(n, n, dtype=torch.bool, device=scores.device).tril()
        scores = self.hook_attn_scores(scores.masked_fill(~causal, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhe->bqhe", pattern, v))
        if self.hook_result.hooked():   # each head's output, only when asked for (memory: batch*pos*heads*d_model)
            result = self.hook_result(torch.einsum("bqhe,hed->bqhd", z, self.W_O))
            return result.sum(2) + self.b_O
        return torch.einsum("bqhe,hed->bqd", z, self.W_O) + self.b_O


class MLP(nn.Module):
    """``W_out gelu(W_in x + b_in) + b_out``; ``hook_pre`` / ``hook_post`` ``[batch, pos, d_mlp]``."""

    def __init__(self, cfg: AttnOnlyConfig) -> None:
        super().__init__()
        assert cfg.d_mlp is not None
        self.W_in = nn.Parameter(torch.empty(cfg.d_model, cfg.d_mlp))
        self.b_in = nn.Parameter(torch.zeros(cfg.d_mlp))
        self.W_out = nn.Parameter(torch.empty(cfg.d_mlp, cfg.d_model))
        self.b_out = nn.Parameter(torch.zeros(cfg.d_model))
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        post = self.hook_post(F.gelu(self.hook_pre(x @ self.W_in + self.b_in)))
        return post @ self.W_out + self.b_out


class Block(nn.Module):
    """One residual block: attention (+ MLP), pre-norm."""

    def __init__(self, cfg: AttnOnlyConfig) -> None:
        super().__init__()
        self.shortformer = cfg.positional == "shortformer"
        self.ln1 = _norm(cfg)
        self.attn = Attention(cfg)
        self.hook_resid_pre, self.hook_attn_out, self.hook_resid_post = HookPoint(), HookPoint(), HookPoint()
        if cfg.d_mlp is not None:
            self.ln2 = _norm(cfg)
            self.mlp = MLP(cfg)
            self.hook_resid_mid, self.hook_mlp_out = HookPoint(), HookPoint()

    def forward(self, resid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        resid = self.hook_resid_pre(resid)
        x_v = self.ln1(resid)
        x_qk = x_v + pos if self.shortformer else x_v   # shortformer: positions reach queries and keys only,
        #                                                 after the LayerNorm (as TransformerLens does)
        resid = resid + self.hook_attn_out(self.attn(x_qk, x_v))
        if hasattr(self, "mlp"):
            resid = self.hook_resid_mid(resid)
            resid = resid + self.hook_mlp_out(self.mlp(self.ln2(resid)))
        return self.hook_resid_post(resid)


class Embed(nn.Module):
    def __init__(self, d_vocab: int, d_model: int) -> None:
        super().__init__()
        self.W_E = nn.Parameter(torch.empty(d_vocab, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_E[tokens]


class PosEmbed(nn.Module):
    def __init__(self, n_ctx: int, d_model: int) -> None:
        super().__init__()
        self.W_pos = nn.Parameter(torch.empty(n_ctx, d_model))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.W_pos[: tokens.shape[-1]].expand(tokens.shape[0], -1, -1)


class Unembed(nn.Module):
    def __init__(self, d_model: int, d_vocab: int) -> None:
        super().__init__()
        self.W_U = nn.Parameter(torch.empty(d_model, d_vocab))
        self.b_U = nn.Parameter(torch.zeros(d_vocab))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.W_U + self.b_U


class AttnOnlyTransformer(nn.Module):
    """Tokens ``[batch, pos]`` (long) → logits ``[batch, pos, d_vocab]``."""

    def __init__(self, cfg: AttnOnlyConfig, seed: int | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg.d_vocab, cfg.d_model)
        self.pos_embed = PosEmbed(cfg.n_ctx, cfg.d_model)
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = _norm(cfg)
        self.unembed = Unembed(cfg.d_model, cfg.d_vocab)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for name, p in self.named_parameters():
                if name.split(".")[-1].startswith("W_"):
                    p.copy_(torch.randn(p.shape, generator=generator) * cfg.init_range)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise MechscopeError(f"tokens must be an integer tensor [batch, pos], got {tokens.dtype} "
                                 f"{tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise MechscopeError(f"{tokens.shape[1]} positions exceed the model's n_ctx = {self.cfg.n_ctx}")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab):
            raise MechscopeError(f"token ids must lie in [0, {self.cfg.d_vocab}), got {int(tokens.min())}.."
                                 f"{int(tokens.max())}")
        resid = self.hook_embed(self.embed(tokens))
        pos = self.hook_pos_embed(self.pos_embed(tokens))
        if self.cfg.positional == "standard":
            resid = resid + pos
        for block in self.blocks:
            resid = block(resid, pos)
        return self.unembed(self.ln_final(resid))

    def hook_names(self) -> list[str]:
        """Every hook point's path, in forward order."""
        return [n for n, m in self.named_modules() if isinstance(m, HookPoint)]

    def run_with_cache(self, tokens: torch.Tensor, names: list[str] | None = None
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Logits and ``{hook name: value}`` for ``names`` (default every hook point)."""
        wanted = self.hook_names() if names is None else list(names)
        unknown = [n for n in wanted if n not in self.hook_names()]
        if unknown:
            from mechscope.errors import unknown_name

            raise unknown_name("hook", unknown[0], self.hook_names(), where="AttnOnlyTransformer")
        cache: dict[str, torch.Tensor] = {}
        handles = [self.get_submodule(n).register_forward_hook(
            lambda _m, _i, out, n=n: cache.__setitem__(n, out)) for n in wanted]
        try:
            logits = self(tokens)
        finally:
            for h in handles:
                h.remove()
        return logits, cache


# ---- folding, conversion, files ------------------------------------------------------------------------------


def fold_layer_norm(model: AttnOnlyTransformer) -> AttnOnlyTransformer:
    """A copy of ``model`` with every LayerNorm's ``w``/``b`` folded into the weights that read it (``LN`` →
    ``LNPre``), and each W_Q/W_K/W_V/W_in/W_U centred over ``d_model`` (the normalized input has zero mean, so
    this changes nothing).  Same logits; the analyses' products of weights then include the LayerNorm's scale."""
    if model.cfg.normalization != "LN":
        raise MechscopeError(f"fold_layer_norm needs normalization 'LN', the model has {model.cfg.normalization!r}")
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def fold(ln: str, weights: list[str], biases: list[str], per_head: bool) -> None:
        w, b = state.pop(f"{ln}.w"), state.pop(f"{ln}.b")
        for wn, bn in zip(weights, biases, strict=True):
            W = state[wn]
            if per_head:   # [h, d_model, d_head]; bias [h, d_head]
                state[bn] = state[bn] + torch.einsum("d,hde->he", b, W)
                W = W * w[None, :, None]
                state[wn] = W - W.mean(1, keepdim=True)
            else:          # [d_model, n]; bias [n]
                state[bn] = state[bn] + b @ W
                W = W * w[:, None]
                state[wn] = W - W.mean(0, keepdim=True)

    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        fold(f"{p}.ln1", [f"{p}.attn.W_{x}" for x in "QKV"], [f"{p}.attn.b_{x}" for x in "QKV"], True)
        if hasattr(block, "mlp"):
            fold(f"{p}.ln2", [f"{p}.mlp.W_in"], [f"{p}.mlp.b_in"], False)
    fold("ln_final", ["unembed.W_U"], ["unembed.b_U"], False)
    folded = AttnOnlyTransformer(AttnOnlyConfig(**{**_config_dict(model.cfg), "normalization": "LNPre"}))
    folded.load_state_dict(state)
    return folded.train(model.training)


_TL_BUFFERS = ("mask", "IGNORE")


def with_layer_norm_folded(model: Any) -> Any:
    """``fold_layer_norm(model)`` for an ``AttnOnlyTransformer`` with LayerNorm (``"LN"``), else ``model`` itself:
    what the weights-only analyses (QK/OV circuits, composition, copying) read, so their products of weights
    include the LayerNorm's scale."""
    if isinstance(model, AttnOnlyTransformer) and model.cfg.normalization == "LN":
        return fold_layer_norm(model)
    return model


def from_transformer_lens(state: dict[str, torch.Tensor], cfg: AttnOnlyConfig) -> dict[str, torch.Tensor]:
    """A TransformerLens ``HookedTransformer`` state dict (attention-only, or with MLPs) → ours: the same keys
    less the attention-mask buffers; shapes checked against ``cfg``."""
    out = {k: v for k, v in state.items() if k.split(".")[-1] not in _TL_BUFFERS}
    expected = AttnOnlyTransformer(cfg).state_dict()
    missing, unexpected = sorted(set(expected) - set(out)), sorted(set(out) - set(expected))
    if missing or unexpected:
        raise MechscopeError(f"the state dict does not fit {cfg}: missing {missing[:6]}, unexpected "
                             f"{unexpected[:6]} (was it saved with another normalization, or with MLPs?)")
    bad = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in out.items() if v.shape != expected[k].shape]
    if bad:
        raise MechscopeError(f"shape mismatches (key, given, expected): {bad[:6]}")
    return out


def to_transformer_lens(model: AttnOnlyTransformer) -> dict[str, torch.Tensor]:
    """Our state dict in TransformerLens's layout, with the causal-mask buffers it registers per block."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    n = model.cfg.n_ctx
    for i in range(model.cfg.n_layers):
        state[f"blocks.{i}.attn.mask"] = torch.ones(n, n, dtype=torch.bool).tril()
        state[f"blocks.{i}.attn.IGNORE"] = torch.tensor(-torch.inf)
    return state


def transformer_lens_config(cfg: AttnOnlyConfig) -> dict:
    """Keyword arguments for TransformerLens's ``HookedTransformerConfig`` describing the same model."""
    return {"n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_head": cfg.d_head,
            "n_ctx": cfg.n_ctx, "d_vocab": cfg.d_vocab, "attn_only": cfg.d_mlp is None,
            "d_mlp": cfg.d_mlp if cfg.d_mlp is not None else None, "act_fn": "gelu",
            "normalization_type": cfg.normalization, "positional_embedding_type": cfg.positional,
            "eps": cfg.eps}


def _config_dict(cfg: AttnOnlyConfig) -> dict:
    return asdict(cfg)


META_KEY = "mechscope.attn_only.config"   # one metadata key: safetensors writes a dict's keys in random order


def save(model: AttnOnlyTransformer, path: str | os.PathLike) -> Path:
    """Weights and config in one safetensors file (config as JSON metadata), written atomically; the same
    model always gives the same bytes."""
    import json

    from safetensors.torch import save

    from mechscope.artefacts import atomic_write_bytes

    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    data = save(tensors, metadata={META_KEY: json.dumps(_config_dict(model.cfg), sort_keys=True)})
    atomic_write_bytes(Path(path), data)
    return Path(path)


def load(path: str | os.PathLike) -> AttnOnlyTransformer:
    """Read a file written by ``save``; a file that is not one is refused with the reason."""
    import json

    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # safetensors raises several types for truncated or foreign files
        raise MechscopeError(f"{path} is not a readable safetensors file ({e})") from None
    config = meta.get(META_KEY, meta.get("config") if meta.get("mechscope") == "attn_only" else None)
    if config is None:
        raise MechscopeError(f"{path} holds no attention-only transformer config (metadata {sorted(meta)})")
    model = AttnOnlyTransformer(AttnOnlyConfig(**json.loads(config)))
    model.load_state_dict(from_transformer_lens(tensors, model.cfg))
    return model.eval()
