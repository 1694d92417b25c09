"""The per-batch arithmetic of activation statistics, in cache-sized chunks of channels (``stats.py`` uses it).

``batch_arrays(acts, low, high, bins)`` returns, per channel of a batch ``[batch, C, ...]``, the count-free
moments (``mean``, ``m2``), ``positive`` (values > 0), ``min``, ``max`` and ``hist [C, bins + 2]`` (underflow,
bins, overflow) for the histogram range ``low``..``high``.  float64 activations are handled exactly; lower
precisions take a float32 path whose moments are corrected in float64 (see ``_chunk_fast``).

Example::

    >>> import numpy as np, torch
    >>> from mechscope.vision.evidence.stats_kernels import batch_arrays
    >>> out = batch_arrays(torch.tensor([[[1.0, -1.0, 3.0]]]), np.array([-2.0]), np.array([2.0]), 4)
    >>> out["mean"].round(3).tolist(), out["positive"].tolist(), out["hist"].tolist()
    ([1.0], [2.0], [[0, 0, 1, 0, 1, 1]])
"""

from __future__ import annotations

import numpy as np
import torch

_CHUNK = 1 << 17  # values per working copy: stays in cache


def _edges32(low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 thresholds equivalent to the float64 range for float32 values: ``x < low`` iff ``x < lo32`` and
    ``x > high`` iff ``x > hi32`` (``lo32`` = the smallest float32 >= low, ``hi32`` = the largest <= high)."""
    lo32, hi32 = low.astype(np.float32), high.astype(np.float32)
    lo32 = np.where(lo32 < low, np.nextafter(lo32, np.float32(np.inf)), lo32)
    hi32 = np.where(hi32 > high, np.nextafter(hi32, np.float32(-np.inf)), hi32)
    return lo32, hi32


def _chunk_exact(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, bins: int) -> dict[str, torch.Tensor]:
    """Moments, firing, min/max and bin slots of float64 values ``x [k, n]`` (range ``lo``, ``hi`` ``[k, 1]``)."""
    var, mean = torch.var_mean(x, 1, correction=0)
    # bin of each value, with slot 0 for underflow (x < low) and slot bins + 1 for overflow (x > high, or nan);
    # the last bin includes high, as in numpy.histogram
    pos = ((x - lo) / (hi - lo) * bins).floor_().clamp_(-1, bins - 1).masked_fill_(x > hi, bins)
    return {"mean": mean, "m2": var * x.shape[1], "positive": (x > 0).sum(1), "min": x.amin(1), "max": x.amax(1),
            "slot": pos.nan_to_num_(nan=bins)}


_TINY = float(np.finfo(np.float32).tiny)  # 2**-126: clamp(x, 0, _TINY) / _TINY counts the positive values


def _count_above(a: torch.Tensor, b: torch.Tensor, buf: torch.Tensor) -> torch.Tensor:
    """Per row the number of ``a > b`` (``[k, n]`` vs ``[k, 1]`` or the reverse), in float passes only.

    ``clamp(a - b, 0, 2**-126)`` is ``2**-126`` exactly where ``a > b`` (the difference of two different float32
    values is at least ``2**-149``; only values near ``1e-38`` could fall short), so the row sum / ``2**-126``
    counts them, exactly below 2**24 values.
    """
    return torch.sub(a, b, out=buf).clamp_(0, _TINY).sum(1).div_(_TINY)


def _chunk_fast(x: torch.Tensor, lo32: torch.Tensor, hi32: torch.Tensor, scale: torch.Tensor, bins: int,
                offsets: torch.Tensor, work: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """As ``_chunk_exact`` for float32 values ``x [k, n]`` (``n < 2**24``), in few float passes (boolean masks
    are slow), the histogram included (``hist [k, bins + 2]``: underflow, bins, overflow).

    Moments: a float32 mean corrected in float64 by the sum of the deviations from it, and ``m2`` the sum of
    squared deviations minus that correction, so they keep float64's accuracy where it matters.  Firing and
    under/overflow: ``_count_above``, exact.  Bins: ``(x - lo32) * scale`` clamped to the row's bins (or to the
    under/overflow slots in rows whose min / max says they hold such values) and truncated; truncation can only
    move a value between a border slot and its neighbour, which the exact counts then put right.  Every
    elementwise result goes to the preallocated buffers ``work`` (float32 and int32, at least ``[k, n]``):
    fresh tensors cost more in page faults than the arithmetic.
    """
    k, n = x.shape
    buf, slot = (w[:k] for w in work)
    rough = x.sum(1, keepdim=True).div_(n)
    d = torch.sub(x, rough, out=buf)
    sd, m2 = d.sum(1).double(), d.mul_(d).sum(1).double()
    mean = rough[:, 0].double() + sd / n
    m2 = m2 - sd * sd / n
    mn, mx = x.amin(1), x.amax(1)
    zero = torch.zeros((), device=x.device)
    fire = _count_above(x, zero, buf)
    odd = torch.isnan(mean)  # rows holding nan or inf
    any_odd = bool(odd.any())
    under_rows, over_rows = (mn < lo32[:, 0]) | odd, (mx > hi32[:, 0]) | odd
    some_under, some_over = bool(under_rows.any()), bool(over_rows.any())
    under = _count_above(lo32, x, buf) if some_under else None
    over = _count_above(x, hi32, buf) if some_over else None
    z = torch.sub(x, lo32, out=buf).mul_(scale)  # (tensor-bound clamp_ and broadcast addcmul are slow)
    if any_odd:
        z.nan_to_num_(nan=float("inf"))  # nan counts as overflow
    z.clamp_min_(-under_rows[:, None].float()).clamp_max_(bins - 1 + over_rows[:, None].float())
    hist = torch.bincount(slot.copy_(z).add_(offsets[:k]).reshape(-1), minlength=k * (bins + 2)).reshape(k, bins + 2)
    if any_odd:  # nan values: not positive, not below low, above high; count those rows exactly
        r = torch.nonzero(odd).flatten()
        xr = x[r]
        fire[r] = (xr > 0).sum(1).to(fire.dtype)
        under[r] = (xr < lo32[r]).sum(1).to(under.dtype)
        over[r] = (~(xr <= hi32[r])).sum(1).to(over.dtype)
    for rows, border, inner, true in ((under_rows, 0, 1, under), (over_rows, bins + 1, bins, over)):
        if true is not None:
            r = torch.nonzero(rows).flatten()
            exact = true[r].round().long()
            hist[r, inner] += hist[r, border] - exact
            hist[r, border] = exact
    return {"mean": mean, "m2": m2.clamp_(min=0), "positive": fire, "min": mn, "max": mx, "hist": hist}


def batch_arrays(acts: torch.Tensor, low: np.ndarray, high: np.ndarray, bins: int) -> dict[str, np.ndarray]:
    """Statistics arrays of one batch of activations ``[batch, C, ...]`` on their device, a few channels at a time.

    float64 activations are worked on in float64 (``_chunk_exact``); lower precisions in float32 with the
    moments corrected in float64 (``_chunk_fast``): under/overflow are decided exactly against the float64
    range, the bin inside it by float32 arithmetic (a value within rounding of a bin edge may land in the
    neighbouring bin).  Chunks of ``_CHUNK`` values stay in cache: several times faster than whole-tensor passes.
    """
    acts = acts.detach().cpu() if acts.device.type == "mps" else acts.detach()  # no float64 on mps
    b, c = acts.shape[:2]
    x_all = acts.reshape(b, c, -1)
    n = x_all.shape[0] * x_all.shape[2]
    exact = acts.dtype == torch.float64 or n >= 2**24  # float32 counts are exact below 2**24 values per row
    step = max(1, min(c, _CHUNK // max(n, 1)))  # channels per chunk
    dev = acts.device
    if exact:
        lo_t, hi_t = torch.as_tensor(np.array(low), device=dev)[:, None], torch.as_tensor(np.array(high), device=dev)[:, None]
    else:
        lo_t, hi_t = (torch.as_tensor(v, device=dev)[:, None] for v in _edges32(low, high))
        scale = torch.as_tensor(bins / (high - low), dtype=torch.float32, device=dev)[:, None]
        work = (torch.empty(step, n, device=dev), torch.empty(step, n, dtype=torch.int32, device=dev))
        xbuf = torch.empty(step, b, x_all.shape[2], device=dev)
    offsets = (torch.arange(step, device=dev) * (bins + 2) + 1).to(torch.int32)[:, None]
    parts: dict[str, list[torch.Tensor]] = {}
    for c0 in range(0, c, step):
        k = min(step, c - c0)
        part = slice(c0, c0 + k)
        if exact:
            x = x_all[:, part].transpose(0, 1).reshape(k, -1).double()  # [k, samples]: a cache-sized copy
            found = _chunk_exact(x, lo_t[part], hi_t[part], bins)
            slot = found.pop("slot").to(torch.int32).add_(offsets[:k])
            found["hist"] = torch.bincount(slot.reshape(-1), minlength=k * (bins + 2)).reshape(k, bins + 2)
        else:
            x = xbuf[:k].copy_(x_all[:, part].transpose(0, 1)).reshape(k, -1)  # cast to float32 on the way
            found = _chunk_fast(x, lo_t[part], hi_t[part], scale[part], bins, offsets, work)
        for key, value in found.items():
            parts.setdefault(key, []).append(value)
    joined = {k: torch.cat(v).cpu().numpy() for k, v in parts.items()}
    return joined
