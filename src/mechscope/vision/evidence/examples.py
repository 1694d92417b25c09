"""Dataset examples: the top-k and bottom-k dataset items of every channel, streamed, resumable, with crops.

``dataset_examples`` runs a model once over a stream of ``(indices, images)`` batches (``ImageFolder.batches``)
and keeps, for every channel of every requested layer, the ``k`` items where the channel fires most and least:

* top-k ranks items by the channel's **maximum** over spatial positions, bottom-k by its **minimum** over
  positions (the most negative response anywhere in the image, the mirror image of the top; use a pre-ReLU
  layer to see it: after a ReLU the minimum is mostly 0).  With each item the position ``(x, y)`` of that
  max / min is kept, ``x`` along the map's first spatial axis (Lucid's ``[batch, channel, x, y]``); among equal
  values in one map the first position in row-major order wins.  ``[batch, C]`` layers have position ``(0, 0)``.
* Ties between items are broken by dataset index (smaller first), so the ranking is a total order and the
  result does not depend on the batch size nor on where a scan was interrupted and resumed.
* Memory is constant in the dataset's size: per channel only ``k`` values, indices and positions are kept; each
  batch's candidates are merged with the running ones by a stable sort of ``k + batch`` values.

``ExamplesState`` holds the result and the scan's progress (``seen`` items, ``last_index``); pass it back as
``state=`` with ``batches(start=state.next_start)`` to continue.  ``save_state`` / ``load_state`` write and
read it as ``.npz`` (atomically), and ``dataset_examples(..., checkpoint=path, every=50)`` does so during the
scan.  Slots not yet filled (fewer than ``k`` items seen) have index ``-1``.  Dataset indices must increase
strictly along the scan (an item seen twice would otherwise be counted twice).

``example_crops`` cuts out the receptive field of the kept position of each example.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from mechscope.vision.evidence.examples import dataset_examples
    >>> model = nn.Sequential(nn.Identity())
    >>> images = torch.zeros(5, 2, 3, 3)
    >>> images[3, 1, 2, 0] = 7.0                  # item 3, channel 1 peaks at x=2, y=0
    >>> images[1, 1, 0, 1] = -4.0                 # item 1, channel 1 dips at x=0, y=1
    >>> batches = [([0, 1], images[:2]), ([2, 3, 4], images[2:])]
    >>> ex = dataset_examples(model, batches, "0", k=2, progress=False)
    >>> ex["0"].top_index[1].tolist(), ex["0"].top_values[1].tolist(), ex["0"].top_pos[1, 0].tolist()
    ([3, 0], [7.0, 0.0], [2, 0])
    >>> ex["0"].bottom_index[1].tolist(), ex["0"].bottom_pos[1, 0].tolist(), ex.seen, ex.next_start
    ([1, 0], [0, 1], 5, 5)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.artefacts import load_npz, save_npz
from mechscope.capture import as_map, capture
from mechscope.devices import model_device, resolve_device
from mechscope.errors import MechscopeError, unknown_name
from mechscope.units import parse_layers
from mechscope.vision.evidence.crops import GREY, crops_at  # noqa: F401  (GREY: re-exported)

_FIELDS = ("top_values", "top_index", "top_pos", "bottom_values", "bottom_index", "bottom_pos")
_FORMAT = 1
_NO_INDEX = torch.iinfo(torch.int64).max  # sort key of an empty slot: after every real index
"""Fill value of the part of a receptive-field crop that lies outside the image."""


@dataclass(eq=False)
class LayerExamples:
    """Top-k / bottom-k examples of every channel of one layer (``C`` channels, ``k`` slots).

    ``top_values [C, k]`` (float32, best first: the channel's max over positions), ``top_index [C, k]`` (int64
    dataset indices, ``-1`` for an empty slot), ``top_pos [C, k, 2]`` (int64 ``(x, y)`` of the max); the
    ``bottom_*`` tensors likewise for the channel's min over positions, lowest first.
    """

    top_values: torch.Tensor
    top_index: torch.Tensor
    top_pos: torch.Tensor
    bottom_values: torch.Tensor
    bottom_index: torch.Tensor
    bottom_pos: torch.Tensor

    @classmethod
    def empty(cls, channels: int, k: int) -> LayerExamples:
        def block(fill: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            return (torch.full((channels, k), fill), torch.full((channels, k), -1, dtype=torch.int64),
                    torch.full((channels, k, 2), -1, dtype=torch.int64))

        return cls(*block(float("-inf")), *block(float("inf")))

    @property
    def channels(self) -> int:
        return int(self.top_values.shape[0])

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f: getattr(self, f) for f in _FIELDS}


@dataclass(eq=False)
class ExamplesState:
    """The examples of each layer (``state[layer]`` -> ``LayerExamples``) and how far the scan has got.

    ``seen`` counts the items processed, ``last_index`` is the dataset index of the last one (``-1`` before
    any); ``next_start = last_index + 1`` is where a resumed scan starts.
    """

    k: int
    layers: dict[str, LayerExamples] = field(default_factory=dict)
    seen: int = 0
    last_index: int = -1

    @property
    def next_start(self) -> int:
        return self.last_index + 1

    def __getitem__(self, layer: str) -> LayerExamples:
        if layer not in self.layers:
            raise unknown_name("layer", layer, self.layers, where="these dataset examples")
        return self.layers[layer]

    def __repr__(self) -> str:
        return f"ExamplesState(k={self.k}, layers={list(self.layers)}, seen={self.seen}, last_index={self.last_index})"


# ---- the streaming merge -----------------------------------------------------------------------------------


def _positions(flat: torch.Tensor, y: int, items: torch.Tensor, channels: torch.Tensor | None,
               largest: bool) -> torch.Tensor:
    """``(x, y)`` of the max (or min) over positions of ``flat [B, C, X*Y]`` at ``(items[m], channels[m])`` ->
    ``[m, 2]``, or of every channel of ``items`` (``channels=None``) -> ``[m, C, 2]``.

    The first position among equal values wins.  Only the items that enter a top-k need a position, so the
    (slow) arg-reduction runs on those rows only, after the (fast) value reduction has chosen them.
    """
    items = items.to(flat.device)
    rows = flat[items] if channels is None else flat[items, channels.to(flat.device)]
    where = (rows.argmax(-1) if largest else rows.argmin(-1)).cpu()
    return torch.stack([where // y, where % y], -1)


def _extremes(acts: torch.Tensor, largest: bool) -> torch.Tensor:
    """Per item and channel the max (or min) over positions of ``[B, C, X, Y]`` -> values ``[C, B]`` (float32)."""
    flat = acts.reshape(acts.shape[0], acts.shape[1], -1)
    return (flat.amax(-1) if largest else flat.amin(-1)).T.float().cpu()


def _merge(values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, new_values: torch.Tensor,
           new_index: torch.Tensor, acts: torch.Tensor, largest: bool) -> tuple[torch.Tensor, ...]:
    """The best ``k`` of running ``[C, k]`` and new ``[C, B]`` candidates, ties broken by smaller index.

    ``acts [B, C, X, Y]`` are the new candidates' activations, from which the positions of the new entries
    are found.  Only the channels where a candidate can enter are sorted: a new item (with a larger index than
    every running one) enters only by beating the k-th running value, or into an empty slot.
    """
    kth = values[:, -1:]
    beats = (new_values > kth) | new_values.isnan() if largest else new_values < kth  # sort puts nan first
    rows = torch.nonzero(beats.any(1) | (index[:, -1] < 0)).flatten()
    if len(rows) == 0:
        return values, index, pos
    if len(rows) == len(values):
        return _merge_rows(values, index, pos, new_values, new_index, acts, largest, None)
    merged = _merge_rows(values[rows], index[rows], pos[rows], new_values[rows], new_index, acts, largest, rows)
    out = (values.clone(), index.clone(), pos.clone())
    for full, part in zip(out, merged):
        full[rows] = part
    return out


def _merge_rows(values: torch.Tensor, index: torch.Tensor, pos: torch.Tensor, new_values: torch.Tensor,
                new_index: torch.Tensor, acts: torch.Tensor, largest: bool,
                channels: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    """``_merge`` of the rows given (``channels``: their channels in ``acts``; ``None``: all, in order)."""
    c, k = values.shape
    vals = torch.cat([values, new_values], 1)
    idx = torch.cat([index, new_index[None].expand(c, -1)], 1)
    worst = float("-inf") if largest else float("inf")  # the value of an empty slot
    if bool((index < 0).any()) and bool((new_values == worst).any()):
        # Two stable sorts: by index, then by value; equal values stay in index order.  Empty slots sort last.
        order = torch.sort(torch.where(idx < 0, _NO_INDEX, idx), dim=1, stable=True).indices
        by_value = torch.sort(vals.gather(1, order), dim=1, descending=largest, stable=True).indices
        order = order.gather(1, by_value)[:, :k]
    else:
        # The running items are sorted (equal values by index), the new ones come after them in index order and
        # no new value ties an empty slot: one stable sort by value keeps equal values in index order.
        order = torch.sort(vals, dim=1, descending=largest, stable=True).indices[:, :k]
    out_pos = pos.gather(1, order.clamp(max=k - 1)[..., None].expand(-1, -1, 2))
    rows, slots = torch.nonzero(order >= k, as_tuple=True)
    if len(rows):
        flat = acts.reshape(acts.shape[0], acts.shape[1], -1)
        chans = rows if channels is None else channels[rows]
        out_pos[rows, slots] = _positions(flat, acts.shape[-1], order[rows, slots] - k, chans, largest)
    return vals.gather(1, order), idx.gather(1, order), out_pos


def _update(ex: LayerExamples, acts: torch.Tensor, index: torch.Tensor,
            extremes: tuple[torch.Tensor, torch.Tensor] | None = None) -> LayerExamples:
    """Merge one batch of activations ``[B, C, X, Y]`` of items ``index [B]`` into ``ex``.

    ``extremes``: the batch's ``(_extremes(acts, True), _extremes(acts, False))`` when already computed.
    """
    acts = acts.detach()
    extremes = extremes or (_extremes(acts, True), _extremes(acts, False))
    out = []
    for largest, prefix, new_values in ((True, "top", extremes[0]), (False, "bottom", extremes[1])):
        running = (getattr(ex, f"{prefix}_{f}") for f in ("values", "index", "pos"))
        out.extend(_merge(*running, new_values, index, acts, largest))
    return LayerExamples(*out)


def _check_order(index: torch.Tensor, last_index: int) -> None:
    """Refuse a batch whose dataset indices ``[B]`` do not continue the scan strictly increasing."""
    if int(index[0]) <= last_index or (len(index) > 1 and not bool((index.diff() > 0).all())):
        raise MechscopeError(
            f"dataset indices must increase strictly along the scan; got {index.tolist()} after index "
            f"{last_index} (resume with batches(start=state.next_start))")


def _update_layer(state: ExamplesState, name: str, acts: torch.Tensor, index: torch.Tensor) -> None:
    """Merge one batch of layer ``name``'s output ``[B, C, ...]`` for items ``index [B]`` into ``state``."""
    a = as_map(acts, name, "dataset examples")
    ex = state.layers.get(name) or LayerExamples.empty(a.shape[1], state.k)
    if ex.channels != a.shape[1]:
        raise MechscopeError(f"layer {name!r} has {a.shape[1]} channels; the state has {ex.channels}")
    state.layers[name] = _update(ex, a, index)


def _batch(item: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(indices [B] int64, images [B, ...])`` from an ``(indices, images)`` pair."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], torch.Tensor)):
        raise MechscopeError(f"batches must yield (indices, images [batch, 3, H, W]) pairs as ImageFolder.batches "
                             f"does; got {type(item).__name__}")
    index = torch.as_tensor(item[0], dtype=torch.int64).flatten().cpu()
    if len(index) != len(item[1]):
        raise MechscopeError(f"a batch has {len(index)} indices for {len(item[1])} images")
    return index, item[1]


def dataset_examples(
    model: nn.Module,
    batches: Iterable[Any],
    layers: str | Iterable[str],
    *,
    k: int = 16,
    state: ExamplesState | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    every: int = 50,
) -> ExamplesState:
    """The top-k and bottom-k dataset items of every channel of ``layers``, in one pass over ``batches``.

    Args:
        model: any ``nn.Module``; run in eval mode (restored after) under ``torch.no_grad``, stopped after the
            last requested layer.
        batches: ``(indices, images [B, 3, H, W])`` pairs, e.g. ``ImageFolder.batches(64, start=...)``; the
            indices are stable dataset indices, strictly increasing along the scan.
        layers: layer names (``"mixed4a_pre_relu"``, a module path); outputs ``[B, C, x, y]`` or ``[B, C]``.
        k: examples kept per channel and direction (must equal ``state.k`` when resuming).
        state: the result of an earlier, interrupted scan to continue (it is not modified).
        progress: show a progress bar.
        device: where the model runs and the batches go; default: the model's device.
        checkpoint: save the state there (``save_state``) every ``every`` batches and at the end.

    Returns:
        ``ExamplesState``; ``state[layer].top_index [C, k]`` etc.  See the module docstring for the ranking.
    """
    names = parse_layers(layers, "dataset_examples", "index the result by channel")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise MechscopeError(f"k must be a positive int, got {k!r}")
    if not isinstance(every, int) or every < 1:
        raise MechscopeError(f"every must be a positive int (batches between checkpoints), got {every!r}")
    if state is None:
        state = ExamplesState(k=k)
    else:
        if state.k != k:
            raise MechscopeError(f"the state to resume keeps k={state.k} examples; call with k={state.k}, not {k}")
        if state.layers and set(state.layers) != set(names):
            raise MechscopeError(f"the state to resume covers layers {list(state.layers)}, not {names}")
        state = ExamplesState(k=state.k, layers=dict(state.layers), seen=state.seen, last_index=state.last_index)
    device = resolve_device(device) if device is not None else model_device(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for count, item in enumerate(tqdm(batches, desc="dataset examples", disable=not progress), 1):
                index, images = _batch(item)
                if len(index) == 0:
                    continue
                _check_order(index, state.last_index)
                acts = capture(model, images.to(device), names)
                for name in names:
                    _update_layer(state, name, acts[name], index)
                del item, images, acts  # free this batch's tensors before the next forward allocates its own
                state.seen += len(index)
                state.last_index = int(index[-1])
                if checkpoint is not None and count % every == 0:
                    save_state(state, checkpoint)
    finally:
        for module, mode in modes:
            module.training = mode
    if checkpoint is not None:
        save_state(state, checkpoint)
    return state


# ---- saving --------------------------------------------------------------------------------------------------


def state_arrays(state: ExamplesState, prefix: str = "") -> dict[str, np.ndarray]:
    """``state`` as plain arrays, names prefixed by ``prefix`` (to share one ``.npz`` with other states)."""
    arrays: dict[str, np.ndarray] = {
        "k": np.array(state.k), "seen": np.array(state.seen),
        "last_index": np.array(state.last_index), "layers": np.array(list(state.layers), dtype=str),
    }
    for i, ex in enumerate(state.layers.values()):
        for name, t in ex.tensors().items():
            arrays[f"{i}.{name}"] = t.numpy()
    return {prefix + k: v for k, v in arrays.items()}


def state_from_arrays(data: Mapping[str, np.ndarray], prefix: str = "") -> ExamplesState:
    """The inverse of ``state_arrays``."""
    layers = {str(layer): LayerExamples(**{f: torch.from_numpy(data[f"{prefix}{i}.{f}"].copy()) for f in _FIELDS})
              for i, layer in enumerate(data[prefix + "layers"])}
    return ExamplesState(k=int(data[prefix + "k"]), layers=layers, seen=int(data[prefix + "seen"]),
                         last_index=int(data[prefix + "last_index"]))


def save_state(state: ExamplesState, path: str | os.PathLike) -> Path:
    """Save ``state`` to an ``.npz`` file of plain arrays, atomically (temporary file + rename)."""
    return save_npz(path, state_arrays(state), format=_FORMAT)


def load_state(path: str | os.PathLike) -> ExamplesState:
    """Read a state written by ``save_state`` (e.g. a checkpoint of an interrupted scan)."""
    return load_npz(path, kind="dataset-examples", writer="save_state(state, path)", format=_FORMAT,
                    build=state_from_arrays)


# ---- crops -----------------------------------------------------------------------------------------------------


def example_crops(
    state: ExamplesState,
    dataset: Any,
    model: nn.Module,
    layer: str,
    channel: int,
    *,
    which: str = "top",
    input_size: int | tuple[int, int],
) -> torch.Tensor:
    """The receptive-field crops of ``channel``'s examples -> ``[n, C_img, h, w]``, best first.

    Args:
        state: the result of ``dataset_examples``.
        dataset: indexable by dataset index, giving ``[C_img, H, W]`` images (``ImageFolder``, a tensor, a list).
        model, layer: the model and layer the state was computed for.
        channel: the channel of ``layer``.
        which: ``"top"`` or ``"bottom"``.
        input_size: ``H`` or ``(H, W)`` of the images (for ``receptive_field_map``, computed once per layer).

    Returns:
        ``n = k`` crops (fewer if fewer items were seen), each the field ``(h, w) = grid.size`` around the kept
        position.  Fields cut by the image border are padded back to the full size with ``GREY`` (0.5) on the
        side that lies outside the image, so every crop has the same shape and the pixels sit where they would.
    """
    if which not in ("top", "bottom"):
        raise MechscopeError(f"which must be 'top' or 'bottom', not {which!r}")
    ex = state[layer]
    if not 0 <= channel < ex.channels:
        raise MechscopeError(f"channel {channel} is out of range for layer {layer!r} (valid: 0..{ex.channels - 1})")
    index, pos = getattr(ex, f"{which}_index")[channel], getattr(ex, f"{which}_pos")[channel]
    keep = index >= 0
    if not bool(keep.any()):
        raise MechscopeError(f"layer {layer!r} has no examples yet: run dataset_examples over some batches")
    return crops_at(dataset, index[keep].tolist(), pos[keep].tolist(), model, layer, input_size=input_size)
