"""The model zoo: one table of ``ModelCard``s and ``load``.

Example::

    >>> import mechscope
    >>> [card.name for card in mechscope.zoo.registry.cards()]  # doctest: +NORMALIZE_WHITESPACE
    ['inceptionv1', 'shapes', 'shapes-seed1', 'attn-only-1l', 'attn-only-2l', 'mlp-1l',
     'banding-gap', 'banding-gap-rotated',
     'banding-avg-x', 'banding-max', 'branched-1', 'branched-2', 'branched-3', 'shapes-vgg', 'shapes-resnet',
     'shapes-clip', 'shapes-clip-shuffled', 'clip-rn50', 'clip-rn101', 'clip-rn50x4', 'clip-rn50x16', 'clip-rn50x64']
    >>> model = mechscope.load("inceptionv1", weights="random", seed=0)
"""

from __future__ import annotations

import functools
import importlib.resources
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mechscope.devices import resolve_device
from mechscope.errors import MechscopeError, WeightsError, unknown_name
from mechscope.zoo import clip, inceptionv1
from mechscope.zoo.organisms import banding_net, branched_net, shapes_clip_net, shapes_net, shapes_resnet, shapes_vgg
from mechscope.zoo.weights import check_state_dict, download, read_state_dict, sha256_file


def _our_layout(state_dict: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Models saved only in mechscope's own layout: check the keys and shapes, nothing to convert."""
    check_state_dict(state_dict, model.state_dict(), source=source)
    return state_dict


@dataclass(frozen=True)
class Download:
    """Where users with internet can fetch a model's weights.  ``sha256=None``: the first download's hash is
    printed and recorded, later loads verify against it (see ``weights.download``)."""

    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class ModelCard:
    """Everything the zoo knows about one model: how to build it, where its weights are, what it expects."""

    name: str
    description: str
    build: Callable[[], nn.Module]
    convert: Callable[[dict[str, torch.Tensor], nn.Module, str], dict[str, torch.Tensor]]
    input_shape: tuple[int, ...]  # default input, without the batch dimension
    input_range: tuple[float, float] = (0.0, 1.0)
    bundled: str | None = None  # file name inside mechscope/zoo/organisms
    bundled_sha256: str | None = None
    download: Download | None = None
    license: str = ""
    aliases: tuple[str, ...] = field(default_factory=tuple)
    input_kind: str = "image"   # "image": [batch, *input_shape] floats; "tokens": [batch, pos] token ids
    bundled_tokenizer_sha256: str | None = None   # of ``<bundled stem>.tokenizer.json`` (language organisms)
    read: Callable[[Path], dict[str, torch.Tensor]] = read_state_dict   # opens a weights file of this model


def _shapes_organism(name: str, seed: int, sha256: str, description: str,
                     aliases: tuple[str, ...] = ()) -> ModelCard:
    """The card of a bundled shapes organism trained by ``mechscope train shapes --seed SEED``."""
    return ModelCard(
        name=name, aliases=aliases, description=description, build=shapes_net.ShapesNet, convert=_our_layout,
        input_shape=(3, 64, 64), bundled="shapes.safetensors" if seed == 0 else f"shapes_seed{seed}.safetensors",
        bundled_sha256=sha256, license=f"MIT (trained by mechscope: `mechscope train shapes --seed {seed}`)",
    )


def _branched_organism(groups: int, sha256: str | None, description: str) -> ModelCard:
    """The card of a bundled branched organism trained by ``mechscope train branched --groups N``."""
    return ModelCard(
        name=f"branched-{groups}", description=description,
        build=functools.partial(branched_net.BranchedNet, groups), convert=_our_layout, input_shape=(3, 64, 64),
        bundled=f"branched_{groups}.safetensors", bundled_sha256=sha256,
        license=f"MIT (trained by mechscope: `mechscope train branched --groups {groups}`)",
    )


def _shapes_architecture(arch: str, build: Callable[[], nn.Module], sha256: str, description: str) -> ModelCard:
    """The card of a bundled shapes organism of another architecture (``mechscope train shapes-arch ARCH``;
    ``shapes_recipe.ARCHITECTURES`` names the same files)."""
    return ModelCard(name=f"shapes-{arch}", description=description, build=build, convert=_our_layout,
                     input_shape=(3, 64, 64), bundled=f"shapes_{arch}.safetensors", bundled_sha256=sha256,
                     license=f"MIT (trained by mechscope: `mechscope train shapes-arch {arch}`)")


def _attn_only_build(n_layers: int) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        from mechscope.zoo.attn_only import AttnOnlyTransformer
        from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe

        return AttnOnlyTransformer(AttnOnlyRecipe(n_layers=n_layers).config())

    return build


def _attn_only_layout(state_dict: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Our files and TransformerLens state dicts share one layout (less TL's mask buffers)."""
    from mechscope.zoo.attn_only import from_transformer_lens

    try:
        return from_transformer_lens(state_dict, model.cfg)
    except MechscopeError as e:
        raise WeightsError(f"{source}: {e}") from None


def _attn_only_organism(n_layers: int, sha256: str | None, tokenizer_sha256: str | None,
                        description: str) -> ModelCard:
    """The card of a bundled attention-only organism trained by ``mechscope train attn-only --layers N``."""
    return ModelCard(
        name=f"attn-only-{n_layers}l", description=description, build=_attn_only_build(n_layers),
        convert=_attn_only_layout, input_shape=(128,), input_kind="tokens",
        bundled=f"attn_only_{n_layers}l.safetensors", bundled_sha256=sha256,
        bundled_tokenizer_sha256=tokenizer_sha256,
        license=f"MIT (trained by mechscope: `mechscope train attn-only --layers {n_layers}`)",
    )


def _mlp_build() -> nn.Module:
    from mechscope.zoo.attn_only import AttnOnlyTransformer
    from mechscope.zoo.organisms.attn_only_recipe import mlp_recipe

    return AttnOnlyTransformer(mlp_recipe().config())


def _mlp_organism(sha256: str | None, tokenizer_sha256: str, description: str) -> ModelCard:
    """The one-layer transformer with an MLP (``mechscope train mlp-1l``); its dictionary is in
    ``zoo/dictionaries.py``."""
    return ModelCard(name="mlp-1l", description=description, build=_mlp_build, convert=_attn_only_layout,
                     input_shape=(128,), input_kind="tokens", bundled="mlp_1l.safetensors", bundled_sha256=sha256,
                     bundled_tokenizer_sha256=tokenizer_sha256,
                     license="MIT (trained by mechscope: `mechscope train mlp-1l`)")


def _shapes_clip_card(name: str, sha256: str, description: str, command: str) -> ModelCard:
    """The image-text organism (or its control): weights and its caption tokenizer bundled."""
    return ModelCard(
        name=name, description=description, build=shapes_clip_net.ShapesClipNet, convert=_our_layout,
        input_shape=(3, 64, 64), bundled=name.replace("-", "_") + ".safetensors", bundled_sha256=sha256,
        bundled_tokenizer_sha256="100860f157dafe40bad3f66458ae97f6b556a839ccb744a47fd60dee0ec4c863",
        license=f"MIT (trained by mechscope: `{command}`)")


def _clip_card(name: str) -> ModelCard:
    """An OpenAI ResNet CLIP through open_clip (``pip install 'mechscope[clip]'``; ``zoo/clip.py``)."""
    spec = clip.MODELS[name]
    return ModelCard(
        name=name, description=f"OpenAI's CLIP {spec.filename[:-3]} through open_clip ({spec.image_size} px; image "
        "tower + text tower); needs pip install 'mechscope[clip]'",
        build=partial(clip.build, name), convert=clip.convert_state_dict,
        input_shape=(3, spec.image_size, spec.image_size),
        download=Download(url=spec.url, filename=f"clip-{spec.filename}", sha256=spec.sha256),
        read=clip.read_weights, license=clip.LICENSE,
    )


def _banding_organism(variant: str, sha256: str, description: str) -> ModelCard:
    """The card of a bundled banding organism trained by ``mechscope train banding VARIANT``."""
    return ModelCard(
        name=f"banding-{variant}", description=description,
        build=partial(banding_net.BandingNet, banding_net.VARIANTS[variant][0]),
        convert=_our_layout, input_shape=(3, 32, 32), bundled=f"{banding_net.file_stem(variant)}.safetensors",
        bundled_sha256=sha256, license=f"MIT (trained by mechscope: `mechscope train banding {variant}`)",
    )


_CARDS: tuple[ModelCard, ...] = (
    ModelCard(
        name="inceptionv1",
        aliases=("googlenet", "inception5h"),
        description="InceptionV1 (GoogLeNet) as in Lucid and OpenAI Microscope: inception5h graph, 1008 classes",
        build=inceptionv1.InceptionV1,
        convert=inceptionv1.convert_state_dict,
        input_shape=(3, 224, 224),
        download=Download(
            url="https://github.com/ProGamerGov/pytorch-old-tensorflow-models/raw/master/inception5h.pth",
            filename="inception5h.pth",
        ),
        license="architecture: Apache-2.0 (Lucid); weights: Google's inception5h release",
    ),
    _shapes_organism(
        "shapes", 0, "d6ecb1016380d6a76c19d40d0762fa7e751658b63659bd1ea0f1fcf09bd7aa51",
        "Our vision organism: a small InceptionV1 trained on the procedural shapes world (64 px)",
        aliases=("shapes-organism",)),
    _shapes_organism(
        "shapes-seed1", 1, "8060eb72b6781c2610b2eb0f77a1bf4348c95bf4c8b06f8ca01c11885f57ff2d",
        "The shapes organism trained again with seed 1 (same recipe): a second network for universality and "
        "seed-robustness checks"),
    _attn_only_organism(
        1, "16cb93ac748a43a955a7655fab5d820ab889c48d5a412c21727cc288f1bb226e",
        "4751b46c241b9c6aeca1e5889b4d927d802cf227e52437f30257311d3da2953f", "Our 1-layer attention-only transformer (4 heads, d_model 128, BPE 1024) trained on the offline "
        "corpus with an induction curriculum: the Mathematical Framework's 1-layer model"),
    _attn_only_organism(
        2, "37c75ee674c36a6e0a3b928f0699df9c64006b0864a91b2a84643294cd734cea",
        "4751b46c241b9c6aeca1e5889b4d927d802cf227e52437f30257311d3da2953f", "Our 2-layer attention-only transformer (4 heads per layer, d_model 128, BPE 1024): a layer-0 "
        "previous-token head and a layer-1 induction head"),
    _mlp_organism(
        "15592c9c9dc52aeb0f1cd314cc0f028ca80576484f3f5038163c23a5aadf8a02", "4751b46c241b9c6aeca1e5889b4d927d802cf227e52437f30257311d3da2953f",
        "Our 1-layer transformer with attention and a GELU MLP (d_model 128, d_mlp 512, 4 heads, the attention-only "
        "organisms' BPE 1024) trained on the offline corpus's natural text: the organism of the MLP dictionary "
        "(mlp-1l-sae)"),
    _banding_organism(
        "gap", "a793d31a000d66e027cd917c24afcf30b670c625a2fcd8e123431667fdc939eb",
        "Weight-banding organism: 4 3x3 convs + global average pooling, trained on the layout world (sky above, "
        "ground below), 32 px"),
    _banding_organism(
        "gap-rotated", "127b0b85f569e95bd87edc31bfd2e9bbd9bcf15a08040e917943e0c418efa4bd",
        "Weight-banding ablation: banding-gap's recipe on layout images rotated 90 degrees"),
    _banding_organism(
        "avg-x", "712620eee6116745e2087417cf5c44cc153d93ceed04790c5d1d61e320680ecc",
        "Weight-banding ablation: banding-gap with average pooling over x only (rows kept) before the linear "
        "head"),
    _banding_organism(
        "max", "f248bba541f8752e5d5d320b50deac7736285f0daf7391a120962be37c315089",
        "Weight-banding ablation: banding-gap with global max pooling"),
    _branched_organism(
        1, "c2ce2666e8ca7d44291104993eaa7c68386d9df5a7562a68e82f109165f12b0e",
        "Small conv net on the shapes world, first layer shared RGB 7x7 (24 units), later layers "
        "unbranched: the control of the first-layer branch experiment"),
    _branched_organism(
        2, "78043022fca223458e42fc473008ebd68e11f52035d9df2ae18557104bf03753",
        "The same net with conv2/conv3 split into 2 branches (grouped convolutions, AlexNet-style), "
        "each reading half of the first layer"),
    _branched_organism(
        3, "edfef5940fef0f8b33cb25e55f1ee098a57a31167635f19b34f55bfeb125cf32",
        "The same net with conv2/conv3 split into 3 branches, each reading a third of the first layer"),
    _shapes_architecture(
        "vgg", shapes_vgg.ShapesVGG, "cf4e4ed0a7748547e36c673e9ee44c5ba6fc14af77e2b1db72973187c239fbd0",
        "The shapes world learned by a plain VGG-style stack of 3x3 convolutions and max-pools (64 px): a second "
        "architecture for universality"),
    _shapes_architecture(
        "resnet", shapes_resnet.ShapesResNet, "189999ed58786c92d3c8f88082293802398445494e1a165d795fba2fbdc28827",
        "The shapes world learned by a small ResNet with basic blocks (64 px): a third architecture for "
        "universality"),
    _shapes_clip_card(
        "shapes-clip", "44f1f9e7f954f5ac02c4b19dcf1974e36d8b30c7cbf2f4595b1354d74a89dfc0",
        "Our image-text organism: a narrow InceptionV1-style image tower (Lucid's layer names) and a small "
        "transformer text tower trained contrastively (InfoNCE, learned temperature) on the multimodal shapes world: "
        "pictures, sketches and written words (64 px)", "mechscope train shapes-clip"),
    _shapes_clip_card(
        "shapes-clip-shuffled", "1973f92ebcc630fc9fefe9c897f9d99d3914460042e8eb9bba4cb0de54f1410f",
        "The control of shapes-clip: the same network and recipe trained on shuffled captions (each image paired with "
        "another item's caption by a fixed permutation within its batch), so its text says nothing about its image; "
        "zero-shot accuracy at chance", "mechscope train shapes-clip --shuffle-captions"),
    *(_clip_card(name) for name in clip.MODELS),
)


def bundle_dir() -> Path:
    """The folder of the bundled weights, cards and tokenizers (the package ``mechscope.zoo.organisms``)."""
    return Path(str(importlib.resources.files("mechscope.zoo.organisms")))


def cards() -> list[ModelCard]:
    """Every model in the zoo."""
    return list(_CARDS)


def get_card(name: str) -> ModelCard:
    """The card of a model by name or alias; unknown names get the closest valid ones."""
    for card in _CARDS:
        if name == card.name or name in card.aliases:
            return card
    valid = [c.name for c in _CARDS] + [a for c in _CARDS for a in c.aliases]
    raise unknown_name("model", name, valid, where="the zoo")


def bundled_card(name: str) -> dict:
    """The JSON model card shipped beside a model's bundled weights (recipe, seed, data, accuracy, sha256)."""
    import json

    card = get_card(name)
    if card.bundled is None:
        raise MechscopeError(f"{card.name} has no bundled weights, hence no bundled model card")
    path = (bundle_dir() / card.bundled).with_suffix(".json")
    return json.loads(path.read_text())


def _ships_tokenizer(card: ModelCard) -> bool:
    return card.bundled is not None and card.bundled_tokenizer_sha256 is not None


def bundled_tokenizer(name: str):
    """The tokenizer shipped beside a language organism's bundled weights (``<weights>.tokenizer.json``),
    checked against the sha256 its ``ModelCard`` records (``MechscopeError`` naming the file when it differs)."""
    from mechscope.data.tokenizer import load_tokenizer

    card = get_card(name)
    if not _ships_tokenizer(card):
        raise MechscopeError(f"{card.name} ships no tokenizer (only the bundled language organisms and shapes-clip do)")
    path = (bundle_dir() / card.bundled).with_suffix(".tokenizer.json")
    return load_tokenizer(path, sha256=card.bundled_tokenizer_sha256)


def _weights_path(card: ModelCard, weights: str | os.PathLike, progress: bool) -> Path:
    if weights == "bundled":
        if card.bundled is None:
            raise MechscopeError(
                f"{card.name} has no bundled weights (pretrained ImageNet weights cannot ship in the package). "
                "Use weights='download' (needs internet), weights=<path to a local file>, or weights='random'."
            )
        path = bundle_dir() / card.bundled
        found = sha256_file(path) if card.bundled_sha256 is not None else None
        if found is not None and found != card.bundled_sha256:
            raise WeightsError(f"bundled weights {path} fail their sha256 check (recorded {card.bundled_sha256}, "
                               f"found {found}); reinstall mechscope")
        return path
    if weights == "download":
        if card.download is None:
            raise MechscopeError(f"{card.name} has no download location; pass weights=<path> or 'bundled'")
        return download(card.download.url, card.download.filename, card.download.sha256, progress=progress)
    return Path(weights)


def load(
    name: str,
    weights: str | os.PathLike = "bundled",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    seed: int | None = None,
    progress: bool = True,
) -> nn.Module:
    """Build a zoo model and fill its weights; returned in eval mode.

    Args:
        name: a model name or alias (``mechscope models`` lists them).
        weights: ``"bundled"`` (shipped in the package), ``"random"`` (PyTorch's default init, seeded by
            ``seed``), ``"download"`` (fetch into the cache, sha256-checked; needs internet) or a path to a
            ``.safetensors``/``.pth`` file in our layout or the model's public layout.
        device: default CUDA when available, else CPU.
        dtype: e.g. ``torch.float16``; default float32.
    """
    card = get_card(name)
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = card.build()
    else:
        model = card.build()
        path = _weights_path(card, weights, progress)
        state_dict = card.convert(card.read(path), model, str(path))
        model.load_state_dict(state_dict)
        if weights == "bundled" and _ships_tokenizer(card) and hasattr(model, "tokenizer"):
            model.tokenizer = bundled_tokenizer(card.name)   # an image-text model reads strings with it
    model.eval()
    return model.to(device=resolve_device(device), dtype=dtype)


def load_language_model(name: str, weights: str | os.PathLike = "bundled") -> tuple[nn.Module, Any]:
    """A language model of the zoo and its tokenizer (``None`` when it ships none), on the CPU.

    Raises ``MechscopeError`` for an image model."""
    card = get_card(name)
    if card.input_kind != "tokens":
        raise MechscopeError(f"{card.name} is not a language model; the transformer verbs take "
                             "attn-only-1l, attn-only-2l, mlp-1l or a model of that family")
    net = load(card.name, weights=weights, seed=0, device="cpu")
    # a shipped tokenizer that fails its check is an error, never silently dropped
    return net, (bundled_tokenizer(card.name) if _ships_tokenizer(card) else None)
