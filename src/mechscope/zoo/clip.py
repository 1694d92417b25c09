"""Real CLIP: OpenAI's ResNet CLIPs (RN50, RN101, RN50x4, RN50x16, RN50x64) through open_clip (optional extra).

``pip install 'mechscope[clip]'`` installs open_clip; without it every function that needs it raises a
``MechscopeError`` naming that command (nothing is imported at ``import mechscope``).

``ClipResNet`` wraps open_clip's model so that every vision verb can use the image tower: it takes images in
``[0, 1]``, applies CLIP's input normalisation (open_clip's OpenAI mean/std) inside, returns the image embedding, and
declares a ``layer_table`` so ``mechscope.units`` / ``mechscope.capture`` address its layers by name.  The text
side (``encode_text`` with open_clip's own tokenizer, ``tokenize``, ``logit_scale``) serves the multimodal analyses.

Layer names (``S`` the stage 1-4, ``B`` the block; the Multimodal Neurons paper studies ``layer4.5`` of RN50x4):

=================================  ===================================================  ======================
mechscope name                     what it is (module path under ``clip.visual``)       paper / Microscope
=================================  ===================================================  ======================
``stem.relu1`` .. ``stem.relu3``   the three stem convolutions after BN and ReLU        ``image_stem/...``
``stem``                           the stem's average pool (``avgpool``)
``layerS.B.relu1``/``relu2``       a bottleneck's first / second conv, after ReLU
``layerS.B_pre_relu``              the residual sum (branch + shortcut) before its ReLU  ``image_block_S/B/Add_6``
``layerS.B``                       the block's output, after that ReLU                  ``image_block_S/B/Add_6/Relu``
``attnpool``                       the attention pool: the image embedding ``[B, D]``
=================================  ===================================================  ======================

The paper's names contain ``/``, which the unit grammar does not allow; ``paper_layer`` translates any of
``image_block_4/5/Add_6/Relu``, ``image_block_4/5/Add_6:0`` or Microscope's URL spelling ``image_block_4_5_Add_6_0``.
The layer table also carries, for the blocks of stage 4 (the paper's layers), the underscore aliases
``image_block_4_B_Add_6_0`` (pre-ReLU, Microscope's spelling) and ``image_block_4_B_Add_6_Relu`` (post-ReLU).  Reading
Microscope's ``Add_6:0`` as the sum before the ReLU is our interpretation of the op name: the two differ only where
the sum is negative.

Weights: ``weights="download"`` fetches OpenAI's release file (the URL open_clip's ``openai`` tag names, whose path
carries the file's sha256) into mechscope's cache and verifies that hash; offline, the download fails with a
``WeightsError`` after at most the download timeout.  OpenAI's files are TorchScript archives: ``read_weights``
opens one only when its sha256 is one of the release hashes below, and reads any other file as a plain state dict.

Example (no open_clip needed for the names)::

    >>> paper_layer("image_block_4/5/Add_6/Relu"), paper_layer("image_block_4_5_Add_6_0")
    ('layer4.5', 'layer4.5_pre_relu')
    >>> table = clip_layer_table("clip-rn50x4")
    >>> table["layer4.5"].channels, table["image_block_4_5_Add_6_Relu"].path
    (2560, 'clip.visual.layer4.5')
"""

from __future__ import annotations

import logging
import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mechscope.devices import resolve_device
from mechscope.errors import MechscopeError, WeightsError, unknown_name
from mechscope.units import LayerInfo
from mechscope.zoo.weights import check_state_dict, download, read_state_dict, sha256_file

INSTALL = "pip install 'mechscope[clip]'"
_OPENAI = "https://openaipublic.azureedge.net/clip/models"


@dataclass(frozen=True)
class ClipSpec:
    """One OpenAI ResNet CLIP: its open_clip architecture name (the ``-quickgelu`` configs, as OpenAI's weights
    use QuickGELU), image side, blocks per stage, stem width and embedding width; ``sha256`` of OpenAI's file."""

    open_clip_name: str
    image_size: int
    blocks: tuple[int, int, int, int]
    width: int
    embed_dim: int
    sha256: str
    filename: str

    @property
    def url(self) -> str:
        return f"{_OPENAI}/{self.sha256}/{self.filename}"


MODELS: dict[str, ClipSpec] = {
    "clip-rn50": ClipSpec("RN50-quickgelu", 224, (3, 4, 6, 3), 64, 1024,
                          "afeb0e10f9e5a86da6080e35cf09123aca3b358a0c3e3b6c78a7b63bc04b6762", "RN50.pt"),
    "clip-rn101": ClipSpec("RN101-quickgelu", 224, (3, 4, 23, 3), 64, 512,
                           "8fa8567bab74a42d41c5915025a8e4538c3bdbe8804a470a72f30b0d94fab599", "RN101.pt"),
    "clip-rn50x4": ClipSpec("RN50x4-quickgelu", 288, (4, 6, 10, 6), 80, 640,
                            "7e526bd135e493cef0776de27d5f42653e6b4c8bf9e0f653bb11773263205fdd", "RN50x4.pt"),
    "clip-rn50x16": ClipSpec("RN50x16-quickgelu", 384, (6, 8, 18, 8), 96, 768,
                             "52378b407f34354e150460fe41077663dd5b39c54cd0bfd2b27167a4a06ec9aa", "RN50x16.pt"),
    "clip-rn50x64": ClipSpec("RN50x64-quickgelu", 448, (3, 15, 36, 10), 128, 1024,
                             "be1cfb55d75a9666199fb2206c106743da0f6468c9d327f3e0d0a543a9919d9c", "RN50x64.pt"),
}
LICENSE = "MIT (OpenAI CLIP weights and code; open_clip: MIT)"
# Entries of OpenAI's TorchScript state dicts that are not parameters (open_clip drops them too).
_OPENAI_EXTRAS = ("input_resolution", "context_length", "vocab_size")


def spec(name: str) -> ClipSpec:
    """The ``ClipSpec`` of ``clip-rn50`` ... ``clip-rn50x64``; unknown names get the valid ones."""
    if name not in MODELS:
        raise unknown_name("CLIP model", name, list(MODELS), where="mechscope.zoo.clip")
    return MODELS[name]


def require_open_clip() -> Any:
    """The ``open_clip`` module, or a ``MechscopeError`` naming the install command."""
    try:
        import open_clip
    except ImportError as e:
        raise MechscopeError(f"real CLIP models need open_clip, which is not installed ({e}); install it with "
                             f"{INSTALL}") from None
    return open_clip


# ---------------------------------------------------------------------------------------------------- layer names

_PAPER = re.compile(r"^image_block_(?P<stage>[1-4])[/_](?P<block>\d+)(?:[/_]Add_\d+)?(?P<tail>[/_:](?:Relu|0))?$")


def paper_layer(name: str) -> str:
    """Translate the paper's / Microscope's layer name into mechscope's: ``image_block_4/5/Add_6/Relu`` ->
    ``layer4.5``; ``image_block_4/5/Add_6`` and ``..._Add_6:0`` / ``..._Add_6_0`` -> ``layer4.5_pre_relu``."""
    m = _match_paper(name)
    layer = f"layer{m['stage']}.{m['block']}"
    tail = m["tail"]
    if tail is None and "Add_" not in name:   # ``image_block_4/5``: the block's output
        return layer
    return layer if tail is not None and tail.endswith("Relu") else f"{layer}_pre_relu"


def _match_paper(name: str) -> re.Match:
    m = _PAPER.match(name.strip()) if isinstance(name, str) else None
    if m is None:
        raise MechscopeError(f"cannot read {name!r} as a CLIP paper layer name: expected e.g. "
                             "'image_block_4/5/Add_6/Relu', 'image_block_4/5/Add_6:0' or 'image_block_4_5_Add_6_0'")
    return m


def clip_layer_table(name: str) -> dict[str, LayerInfo]:
    """The declared layers of ``ClipResNet`` for model ``name``, in forward order (see the module docstring);
    module paths are under ``clip.visual``."""
    s = spec(name)
    root = "clip.visual"
    t: dict[str, LayerInfo] = {}
    for i, width in ((1, s.width // 2), (2, s.width // 2), (3, s.width)):
        t[f"stem.relu{i}"] = LayerInfo(f"{root}.act{i}", width)
    t["stem"] = LayerInfo(f"{root}.avgpool", s.width)
    for stage, n_blocks in enumerate(s.blocks, start=1):
        planes = s.width * 2 ** (stage - 1)
        for b in range(n_blocks):
            path = f"{root}.layer{stage}.{b}"
            t[f"layer{stage}.{b}.relu1"] = LayerInfo(f"{path}.act1", planes)
            t[f"layer{stage}.{b}.relu2"] = LayerInfo(f"{path}.act2", planes)
            t[f"layer{stage}.{b}_pre_relu"] = LayerInfo(f"{path}.act3.pre_relu", planes * 4, pre_relu=True)
            t[f"layer{stage}.{b}"] = LayerInfo(path, planes * 4)
            if stage == 4:
                t[f"image_block_4_{b}_Add_6_0"] = LayerInfo(f"{path}.act3.pre_relu", planes * 4, pre_relu=True)
                t[f"image_block_4_{b}_Add_6_Relu"] = LayerInfo(path, planes * 4)
    t["attnpool"] = LayerInfo(f"{root}.attnpool", s.embed_dim)
    return t


# ---------------------------------------------------------------------------------------------------- the wrapper

def _tap_pre_relu(visual: nn.Module) -> None:
    """Give every bottleneck's final ReLU a tap before it: ``act3`` becomes ``Sequential(pre_relu=Identity,
    relu=ReLU)``.  open_clip's ``act3`` is in place, which would overwrite a captured pre-ReLU sum; the new ReLU is
    not in place.  The values computed are unchanged and no parameter is added (the state dict is the same)."""
    for stage in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
        for block in stage:
            block.act3 = nn.Sequential(OrderedDict(pre_relu=nn.Identity(), relu=nn.ReLU()))


class ClipResNet(nn.Module):
    """An OpenAI ResNet CLIP (open_clip's ``CLIP`` as ``self.clip``) for mechscope.

    ``forward(images)``: ``[batch, 3, S, S]`` RGB in ``[0, 1]`` (``S = spec.image_size``) -> image embeddings
    ``[batch, embed_dim]`` (not L2-normalised), CLIP's normalisation applied inside.  Layers: ``layer_table``.
    """

    def __init__(self, clip: nn.Module, name: str, tokenizer: Any | None = None,
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> None:
        super().__init__()
        self.spec = spec(name)
        self.name = name
        if mean is None or std is None:
            mean, std = require_open_clip().OPENAI_DATASET_MEAN, require_open_clip().OPENAI_DATASET_STD
        _tap_pre_relu(clip.visual)
        self.clip = clip
        self.register_buffer("input_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.layer_table = clip_layer_table(name)
        self._tokenizer = tokenizer

    @property
    def context_length(self) -> int:
        """The text tower's context in tokens (77), start and end tokens included."""
        return int(self.clip.context_length)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``[batch, 3, H, W]`` in ``[0, 1]`` -> CLIP's input: ``(images - mean) / std`` per channel."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise MechscopeError(f"{self.name} takes images [batch, 3, H, W] in [0, 1], got shape "
                                 f"{tuple(images.shape)}")
        return (images - self.input_mean) / self.input_std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encode_image(images)

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Image embeddings ``[batch, embed_dim]`` of ``[batch, 3, S, S]`` images in ``[0, 1]``; with
        ``normalize`` L2-normalised (open_clip's ``encode_image`` on the normalised images)."""
        return self.clip.encode_image(self.normalize(images), normalize=normalize)

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        """Token ids ``[batch, context_length]`` from open_clip's tokenizer.  A text longer than the context
        raises ``MechscopeError`` (open_clip would cut it silently)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if self._tokenizer is None:
            self._tokenizer = require_open_clip().get_tokenizer(self.spec.open_clip_name)
        inner = getattr(self._tokenizer, "encode", None)
        limit = self.context_length - 2   # the start and end tokens
        for text in texts:
            if inner is not None and len(inner(text)) > limit:
                raise MechscopeError(f"text {text[:60]!r} is {len(inner(text))} tokens long; {self.name}'s text "
                                     f"tower reads at most {limit} (context {self.context_length} with start and "
                                     "end tokens)")
        return self._tokenizer(texts, context_length=self.context_length)

    def encode_text(self, text: torch.Tensor | str | list[str], normalize: bool = False) -> torch.Tensor:
        """Text embeddings ``[batch, embed_dim]`` of token ids ``[batch, context_length]`` or of strings
        (tokenized by ``tokenize``); with ``normalize`` L2-normalised."""
        tokens = text if isinstance(text, torch.Tensor) else self.tokenize(text)
        return self.clip.encode_text(tokens.to(self.input_mean.device), normalize=normalize)

    @property
    def logit_scale(self) -> torch.Tensor:
        """The learned temperature as a multiplier: ``exp`` of open_clip's ``logit_scale`` parameter (100 for
        OpenAI's weights)."""
        return self.clip.logit_scale.exp()

    def logits(self, images: torch.Tensor, texts: torch.Tensor | str | list[str]) -> torch.Tensor:
        """Zero-shot logits ``[n_images, n_texts]``: ``logit_scale * cos(image, text)``."""
        img = self.encode_image(images, normalize=True)
        txt = self.encode_text(texts, normalize=True)
        return self.logit_scale * img @ txt.T


def build(name: str) -> ClipResNet:
    """``ClipResNet`` with open_clip's random initialisation (``pretrained=None``: nothing is downloaded)."""
    s = spec(name)
    open_clip = require_open_clip()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)   # open_clip warns that no pretrained weights were loaded: we load ours next
    try:
        model = open_clip.create_model(s.open_clip_name, pretrained=None)
    finally:
        logging.disable(previous)
    return ClipResNet(model, name, mean=open_clip.OPENAI_DATASET_MEAN, std=open_clip.OPENAI_DATASET_STD)


# ---------------------------------------------------------------------------------------------------- weights

def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A CLIP state dict from ``path``: OpenAI's TorchScript release files (only those whose sha256 is one of
    ``MODELS``' release hashes: a TorchScript archive can hold code), or any file ``weights.read_state_dict``
    reads (safetensors, a weights-only pickle)."""
    path = Path(path)
    if path.is_file() and _is_torchscript(path):
        found = sha256_file(path)
        if found not in {s.sha256 for s in MODELS.values()}:
            raise WeightsError(f"{path} is a TorchScript archive whose sha256 {found} is none of OpenAI's CLIP "
                               "releases; only those are opened as TorchScript. Pass a state dict (.safetensors or "
                               ".pt) instead")
        try:
            return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        except Exception as e:  # a torch version that cannot read the archive
            raise WeightsError(f"cannot read OpenAI's TorchScript file {path}: {type(e).__name__}: {e}") from e
    return read_state_dict(path)


def convert_state_dict(state_dict: dict[str, torch.Tensor], model: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """Our layout (``clip.*``) from ours, open_clip's (``visual.*``, ``transformer.*``, ``logit_scale`` ...) or
    OpenAI's (open_clip's plus ``input_resolution``/``context_length``/``vocab_size``; float16 values become the
    model's dtype on loading).  Keys or shapes that do not fit raise ``WeightsError`` naming them."""
    sd = {k: v for k, v in state_dict.items() if k not in _OPENAI_EXTRAS}
    if not any(k.startswith("clip.") for k in sd):
        sd = {f"clip.{k}": v for k, v in sd.items()}
    check_state_dict(sd, model.state_dict(), source=source)
    return sd


def weights_path(name: str, weights: str | os.PathLike, *, progress: bool = True) -> Path:
    """``"download"``: OpenAI's file in the cache (downloaded and sha256-checked when absent; ``WeightsError``
    offline); anything else: a local path."""
    if weights == "download":
        s = spec(name)
        return download(s.url, f"clip-{s.filename}", s.sha256, progress=progress)
    return Path(weights)


def load_clip(name: str, weights: str | os.PathLike = "download", *, device: str | torch.device | None = None,
              dtype: torch.dtype | None = None, seed: int | None = None, progress: bool = True) -> ClipResNet:
    """``ClipResNet`` ``name`` with ``weights``: ``"download"`` (OpenAI's release, cached, sha256-checked),
    ``"random"`` (open_clip's initialisation, seeded by ``seed``) or a path (OpenAI's, open_clip's or our
    layout).  Returned in eval mode on ``device`` (default CUDA when available) in ``dtype`` (default float32).
    ``mechscope.load`` does the same through the zoo's cards."""
    spec(name)
    require_open_clip()
    if weights == "random":
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            model = build(name)
    else:
        path = weights_path(name, weights, progress=progress)
        model = build(name)
        model.load_state_dict(convert_state_dict(read_weights(path), model, str(path)))
    return model.eval().to(device=resolve_device(device), dtype=dtype)
