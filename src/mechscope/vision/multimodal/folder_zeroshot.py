"""Zero-shot classification of a folder of images with one subfolder per class, on an image–text model.

``folder_zeroshot(model, root)``: the classes are the names of ``root``'s immediate subfolders (sorted;
underscores read as spaces in the prompt), every image under a class subfolder (recursively, through
``data.folders.ImageFolder``) is labelled by that subfolder, and each image is classified by the nearest of the
prompts ``template.format(class)`` ("a picture of a {}").  Images directly in ``root`` belong to no class and are
counted in ``unlabelled``; unreadable files are counted in ``skipped``.

Example::

    >>> import tempfile, pathlib
    >>> from mechscope.vision.multimodal.folder_zeroshot import folder_classes
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "star").mkdir(); (root / "ring").mkdir()
    >>> folder_classes(root)
    ['ring', 'star']
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from mechscope.data.folders import ImageFolder
from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.organism import encode_images, encode_texts, require_image_text

TEMPLATE = "a picture of a {}"


def folder_classes(root: str | os.PathLike) -> list[str]:
    """The names of ``root``'s immediate subfolders, sorted (hidden ones left out)."""
    root = Path(root)
    if not root.is_dir():
        raise MechscopeError(f"dataset {str(root)!r} is not a folder; give a folder with one subfolder of images "
                             "per class (e.g. star/, ring/)")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass(frozen=True)
class FolderZeroshot:
    """Accuracy over the ``n`` readable labelled images, per class accuracy, and what was left out."""

    classes: tuple[str, ...]
    accuracy: float
    per_class: dict[str, float]
    n: int
    unlabelled: int
    skipped: int

    def as_dict(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "accuracy": round(self.accuracy, 4),
                "per_class": {c: round(v, 4) for c, v in self.per_class.items()}, "n": self.n,
                "unlabelled": self.unlabelled, "skipped": self.skipped}


@torch.no_grad()
def folder_zeroshot(model: Any, root: str | os.PathLike, template: str = TEMPLATE,
                    batch_size: int = 128) -> FolderZeroshot:
    """Zero-shot accuracy of ``model`` on the class subfolders of ``root`` (see the module docstring).  Images are
    read at the model's ``spec.image_size`` when it has one, else at 64 px (the world's size)."""
    require_image_text(model)
    classes = folder_classes(root)
    if len(classes) < 2:
        raise MechscopeError(f"dataset {str(root)!r} has {len(classes)} class subfolder(s) ({classes}); zero-shot "
                             "needs at least two: one subfolder of images per class, named by the class")
    if "{}" not in template:
        raise MechscopeError(f"template must contain '{{}}' for the class name, got {template!r}")
    size = getattr(getattr(model, "spec", None), "image_size", None) or 64
    folder = ImageFolder(root, size)
    root = Path(root)
    label = [classes.index(p.relative_to(root).parts[0]) if len(p.relative_to(root).parts) > 1 else -1
             for p in folder.paths]
    prompts = encode_texts(model, [template.format(c.replace("_", " ")) for c in classes])
    right = torch.zeros(len(classes))
    total = torch.zeros(len(classes))
    for idx, images in folder.batches(batch_size):
        y = torch.tensor([label[i] for i in idx])
        keep = y >= 0
        if not keep.any():
            continue
        pred = (encode_images(model, images[keep]) @ prompts.T).argmax(1)
        total += torch.bincount(y[keep], minlength=len(classes)).float()
        right += torch.bincount(y[keep][pred == y[keep]], minlength=len(classes)).float()
    n = int(total.sum())
    if n == 0:
        raise MechscopeError(f"dataset {str(root)!r} has no readable images inside its class subfolders {classes}")
    per_class = {c: float(right[i] / total[i]) for i, c in enumerate(classes) if total[i] > 0}
    return FolderZeroshot(tuple(classes), float(right.sum()) / n, per_class, n, label.count(-1),
                          len(folder.skipped))
