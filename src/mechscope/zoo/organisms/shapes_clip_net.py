"""The "shapes-clip" organism: an image tower and a text tower trained contrastively on the multimodal world.

**Image tower**: a narrower ``ShapesNet`` trunk with InceptionV1's (Lucid's) layer names -- ``conv2d0`` 5×5
stride 2 (16 ch) → ``conv2d1`` 1×1 (16) → ``conv2d2`` 3×3 (48) → ``maxpool1`` → ``mixed3a`` (64) → ``mixed3b``
(112) → ``maxpool4`` → ``mixed4a`` (112) → ``mixed4b`` (128), built from InceptionV1's own ``ConvReLU`` / ``Mixed``
blocks so every name (``mixed4b``, ``mixed4b_pre_relu``, ``mixed3b_5x5``…) addresses the same kind of layer as in
``shapes`` and InceptionV1 -- then the embedding head: ``avgpool0`` (global average) → ``image_embed`` (linear to
``embed_dim``).  ``forward(images)`` is ``encode_image``, so every vision verb runs on the image tower unchanged.

**Text tower** (``text.*``): a small causal transformer from ``mechscope.zoo.attn_only``'s parts (``Embed``,
``PosEmbed``, ``Block`` with an MLP, ``LayerNorm``; standard positions), over the project's byte-level BPE
trained on the world's captions; each text is ``[tokens..., EOS]`` (then padding), and its embedding is the
final LayerNorm's output at the EOS position, projected by ``text_embed`` to ``embed_dim``.  Texts longer than
``n_ctx - 1`` tokens are refused with the context length named.

``logit_scale`` is the learned temperature (CLIP's: ``exp(logit_scale)`` multiplies cosine similarities, capped
at 100).  ``encode_text`` takes strings (with ``tokenizer=`` or an attached ``model.tokenizer``) or a token
tensor ``[N, L]`` built by ``tokenize``.

Example::

    >>> import torch
    >>> from mechscope.data.tokenizer import train_bpe
    >>> from mechscope.zoo.organisms.shapes_clip_net import ShapesClipNet
    >>> net = ShapesClipNet().eval()
    >>> tok = train_bpe(["a red star", "a blue ring"] * 5, vocab_size=300)   # the shipped model has its own
    >>> net.encode_image(torch.rand(2, 3, 64, 64)).shape, net.encode_text(["a red star"], tokenizer=tok).shape
    (torch.Size([2, 64]), torch.Size([1, 64]))
    >>> net.layer_table["mixed4b"].channels, net.layer_table["image_embed"].channels
    (128, 64)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.units import LayerInfo
from mechscope.zoo.attn_only import AttnOnlyConfig, Block, Embed, LayerNorm, PosEmbed
from mechscope.zoo.inceptionv1 import ConvReLU
from mechscope.zoo.organisms.shapes_net import (INPUT_MEAN, INPUT_STD, ConvBN, add_trunk, mixed_width,
                                                 trunk_layer_table)

STEM = {"conv2d0": (3, 16, 5, 2), "conv2d1": (16, 16, 1, 1), "conv2d2": (16, 48, 3, 1)}
MIXED = {  # c_in, 1x1, 3x3 bottleneck, 3x3, 5x5 bottleneck, 5x5, pool reduce
    "mixed3a": (48, 16, 24, 32, 8, 8, 8),
    "mixed3b": (64, 32, 32, 48, 8, 16, 16),
    "mixed4a": (112, 32, 32, 48, 8, 16, 16),
    "mixed4b": (112, 32, 40, 64, 8, 16, 16),
}
STAGES = ("conv2d0", "conv2d1", "conv2d2", "maxpool1", "mixed3a", "mixed3b", "maxpool4", "mixed4a", "mixed4b")
BOS_ID, EOS_ID, PAD_ID = 0, 1, 2      # the specials' ids in every tokenizer ``train_bpe`` makes (DEFAULT_SPECIALS)


@dataclass(frozen=True)
class ShapesClipConfig:
    """The architecture: joint embedding width, and the text tower (vocabulary, context, width, depth)."""

    embed_dim: int = 64
    d_vocab: int = 384
    n_ctx: int = 24
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 256
    init_logit_scale: float = math.log(1 / 0.07)
    max_logit_scale: float = math.log(100.0)

    def text_config(self) -> AttnOnlyConfig:
        return AttnOnlyConfig(n_layers=self.n_layers, d_model=self.d_model, n_heads=self.n_heads,
                              d_head=self.d_model // self.n_heads, n_ctx=self.n_ctx, d_vocab=self.d_vocab,
                              d_mlp=self.d_mlp, positional="standard")

    def as_dict(self) -> dict:
        return asdict(self)


def _width(name: str) -> int:
    return mixed_width(MIXED[name])


def _layer_table(embed_dim: int) -> dict[str, LayerInfo]:
    t = trunk_layer_table(STEM, MIXED)
    t["image_embed"] = LayerInfo("image_embed", embed_dim)
    return t


class TextTower(nn.Module):
    """Tokens ``[N, L]`` (``[tokens..., EOS, PAD...]``) → features ``[N, d_model]`` at each row's EOS."""

    def __init__(self, cfg: AttnOnlyConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = Embed(cfg.d_vocab, cfg.d_model)
        self.pos_embed = PosEmbed(cfg.n_ctx, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_final = LayerNorm(cfg.d_model, cfg.eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise MechscopeError(f"tokens must be an integer tensor [batch, pos], got {tokens.dtype} "
                                 f"{tuple(tokens.shape)}")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise MechscopeError(f"{tokens.shape[1]} positions exceed the text tower's context n_ctx = "
                                 f"{self.cfg.n_ctx} (at most {self.cfg.n_ctx - 1} tokens and EOS)")
        if tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab):
            raise MechscopeError(f"token ids must lie in [0, {self.cfg.d_vocab}), got {int(tokens.min())}.."
                                 f"{int(tokens.max())}")
        is_eos = tokens == EOS_ID
        if not bool(is_eos.any(1).all()):
            raise MechscopeError("every row of tokens needs an EOS token (id 1): build them with tokenize()")
        eos = is_eos.float().argmax(1)
        pos = self.pos_embed(tokens)
        resid = self.embed(tokens) + pos
        for block in self.blocks:
            resid = block(resid, pos)
        return self.ln_final(resid)[torch.arange(len(tokens)), eos]


def tokenize(tokenizer: Any, texts: Sequence[str], n_ctx: int) -> torch.Tensor:
    """``[N, L]`` long: each text's ids then EOS, padded with PAD to the longest (``L <= n_ctx``).  A text of more
    than ``n_ctx - 1`` tokens raises, naming it and the context length."""
    if isinstance(texts, str):
        texts = [texts]
    if not texts:
        raise MechscopeError("no texts given: pass a list of strings")
    ids = tokenizer.encode_batch(list(texts))
    longest = max(len(i) for i in ids) + 1
    if longest > n_ctx:
        bad = next(t for t, i in zip(texts, ids) if len(i) + 1 > n_ctx)
        raise MechscopeError(f"text {bad!r} is {len(tokenizer.encode(bad))} tokens; the text tower's context is "
                             f"{n_ctx} positions: at most {n_ctx - 1} tokens and EOS")
    out = torch.full((len(ids), longest), PAD_ID, dtype=torch.long)
    for row, i in enumerate(ids):
        out[row, :len(i)] = torch.tensor(i, dtype=torch.long)
        out[row, len(i)] = EOS_ID
    return out


class ShapesClipNet(nn.Module):
    """The shapes-clip organism: ``forward(images [N, 3, H, W] in [0, 1]) -> image embeddings [N, embed_dim]``;
    ``encode_text``, ``logits``; the image layers are named in ``layer_table`` (``mechscope.units``)."""

    stages = STAGES

    def __init__(self, config: ShapesClipConfig | None = None, batchnorm: bool = False, seed: int | None = None) -> None:
        super().__init__()
        cfg = config or ShapesClipConfig()
        self.config = cfg
        add_trunk(self, STEM, MIXED)
        self.image_embed = nn.Linear(_width("mixed4b"), cfg.embed_dim)
        self.text = TextTower(cfg.text_config())
        self.text_embed = nn.Linear(cfg.d_model, cfg.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg.init_logit_scale)))
        self.layer_table = _layer_table(cfg.embed_dim)
        self.tokenizer: Any = None
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        with torch.no_grad():
            for name, p in self.text.named_parameters():
                if name.split(".")[-1].startswith("W_"):
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
        if batchnorm:
            for module in list(self.modules()):
                if isinstance(module, ConvReLU):
                    module.conv = ConvBN(module.conv)

    # ---------------------------------------------------------------- image tower
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_image(x)

    def forward_until(self, x: torch.Tensor, layer: str) -> torch.Tensor:
        """The output of the stage ``layer`` (one of ``STAGES``) for images ``x`` ``[B, 3, H, W]``."""
        if layer not in STAGES:
            raise MechscopeError(f"{layer!r} is not a stage of ShapesClipNet; the stages (in order) are {list(STAGES)}")
        x = (x - INPUT_MEAN) / INPUT_STD
        for name in STAGES[:STAGES.index(layer) + 1]:
            x = getattr(self, name)(x)
        return x

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Image embeddings ``[N, embed_dim]`` (not normalised) of ``images [N, 3, H, W]`` in ``[0, 1]``."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise MechscopeError(f"images must be [N, 3, H, W] RGB in [0, 1], got {tuple(images.shape)}")
        act = self.forward_until(images, STAGES[-1])
        return self.image_embed(self.avgpool0(act).flatten(1))

    # ---------------------------------------------------------------- text tower
    def tokenize(self, texts: Sequence[str], tokenizer: Any = None) -> torch.Tensor:
        """``tokenize`` with this model's context and ``tokenizer`` (default: the attached ``self.tokenizer``)."""
        tok = tokenizer if tokenizer is not None else self.tokenizer
        if tok is None:
            raise MechscopeError("no tokenizer: pass tokenizer= (the bundled one: shapes_clip.tokenizer.json) or "
                                 "set model.tokenizer; or pass a token tensor built by tokenize()")
        if (tok.eos_id, tok.pad_id) != (EOS_ID, PAD_ID):
            raise MechscopeError(f"the text tower reads EOS = {EOS_ID} and PAD = {PAD_ID} (train_bpe's specials); "
                                 f"this tokenizer has {tok.eos_id} and {tok.pad_id}")
        if tok.vocab_size > self.config.d_vocab:
            raise MechscopeError(f"the tokenizer has {tok.vocab_size} ids but the text tower only "
                                 f"{self.config.d_vocab}")
        return tokenize(tok, texts, self.config.n_ctx)

    def encode_text(self, texts: Sequence[str] | torch.Tensor, tokenizer: Any = None) -> torch.Tensor:
        """Text embeddings ``[N, embed_dim]`` (not normalised) of strings or tokens ``[N, L]`` (``tokenize``)."""
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts, tokenizer)
        tokens = tokens.to(self.image_embed.weight.device)
        return self.text_embed(self.text(tokens))

    # ---------------------------------------------------------------- both
    def scale(self) -> torch.Tensor:
        """The temperature's multiplier ``exp(logit_scale)``, capped at ``exp(max_logit_scale)`` (100)."""
        return self.logit_scale.clamp(max=self.config.max_logit_scale).exp()

    def logits(self, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarities ``[N_images, N_texts]``."""
        img = F.normalize(self.encode_image(images), dim=-1)
        txt = F.normalize(self.encode_text(tokens), dim=-1)
        return self.scale() * img @ txt.T
