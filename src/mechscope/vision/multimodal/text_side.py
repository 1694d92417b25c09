"""A unit's direction in the joint image–text embedding space, and its text-side maximal response.

A unit of an image layer moves the image embedding; that move, a vector ``[D]`` in the joint space, is the unit's
*direction*, and the texts whose embeddings point the same way are the unit's text-side maximal response.  Three
ways to get the direction, from exact to general:

- ``linear_head_directions(weight)``: when the embedding is a linear map of the globally pooled layer
  (``e = W @ mean_pos(a) + b``, ``W`` ``[D, U]``), unit ``u`` adds ``a_u * W[:, u]``: the direction is ``W[:, u]``.
- ``gradient_directions(head, acts)``: any differentiable head from the layer to the embedding; the mean over a
  dataset of ``d e / d (uniform shift of channel u)``, the head's linear response to the unit.
- ``regression_directions(acts, embeddings)``: no access to the head at all; the ridge regression of the image
  embeddings on the units' pooled activations over a dataset, one row per unit (recovers ``W`` for a linear head).

``unit_directions(weight=… | head=…, acts=… | acts=…, embeddings=…)`` picks the one the arguments allow.

The paper (Goh et al. 2021) used the text side of CLIP to find the strings that maximise a neuron ("text feature
visualization"), searching over text.  The honest analogue here is a ranking of a finite list of candidate texts
(captions, words) by the cosine between their text embedding and the unit's direction: ``text_side_response``.
It finds the best of the texts offered; ``text_search.search_text`` searches free text beyond them.

Example::

    >>> import torch
    >>> texts = ["a star", "a ring", "the word star"]
    >>> emb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
    >>> r = text_side_response(torch.tensor([2.0, 0.0]), emb, texts, k=2)
    >>> r.texts, [round(s, 3) for s in r.scores.tolist()]
    (['a star', 'the word star'], [1.0, 0.994])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError


@dataclass(frozen=True)
class TextResponse:
    """The ``k`` best-aligned texts, best first: ``texts``, their ``indices`` ``[k]`` into the candidate list, and
    ``scores`` ``[k]`` (cosine between text embedding and unit direction, in ``[-1, 1]``)."""

    texts: list[str]
    indices: torch.Tensor
    scores: torch.Tensor

    def rows(self) -> list[dict[str, object]]:
        """JSON-ready ``[{"text", "index", "score"}]``, best first."""
        return [{"text": t, "index": int(i), "score": float(s)}
                for t, i, s in zip(self.texts, self.indices, self.scores)]


def text_side_response(
    unit_direction: torch.Tensor, text_embeddings: torch.Tensor, texts: Sequence[str], k: int = 5,
) -> TextResponse:
    """The ``k`` texts whose (normalised) embeddings ``[T, D]`` best align with ``unit_direction`` ``[D]``.

    ``texts`` are the ``T`` candidate strings in the order of ``text_embeddings``; ``k`` is capped at ``T``.
    """
    d = torch.as_tensor(unit_direction).detach().float().cpu()
    e = torch.as_tensor(text_embeddings).detach().float().cpu()
    if d.dim() != 1:
        raise MechscopeError(f"unit_direction must be one vector [D], got shape {tuple(d.shape)}")
    if e.dim() != 2 or e.shape[1] != d.shape[0]:
        raise MechscopeError(f"text_embeddings must be [T, {d.shape[0]}] (one row per text, the direction's width), "
                             f"got shape {tuple(e.shape)}")
    if len(texts) != e.shape[0]:
        raise MechscopeError(f"{len(texts)} texts for {e.shape[0]} text embeddings; give one text per row")
    if k < 1:
        raise MechscopeError(f"k must be a positive number of texts, not {k}")
    if d.norm() == 0:
        raise MechscopeError("unit_direction is all zeros: the unit does not move the embedding, no text aligns")
    scores = F.normalize(e, dim=1) @ F.normalize(d, dim=0)
    top = scores.topk(min(k, e.shape[0]))
    return TextResponse([texts[int(i)] for i in top.indices], top.indices, top.values)


def linear_head_directions(weight: torch.Tensor) -> torch.Tensor:
    """Unit directions ``[U, D]`` of a linear embedding head ``e = weight @ pooled + bias``, ``weight`` ``[D, U]``.

    >>> linear_head_directions(torch.eye(3)[:, :2]).shape
    torch.Size([2, 3])
    """
    w = torch.as_tensor(weight).detach()
    if w.dim() != 2:
        raise MechscopeError(f"weight must be a linear head's [D, U] matrix, got shape {tuple(w.shape)}")
    return w.T.float().contiguous()


def gradient_directions(head: Callable[[torch.Tensor], torch.Tensor], acts: torch.Tensor) -> torch.Tensor:
    """Unit directions ``[U, D]``: the mean Jacobian of the embedding with respect to each unit.

    ``head`` maps the layer's activations ``[N, U, *positions]`` (or ``[N, U]``) to embeddings ``[N, D]``;
    ``acts`` are a dataset's activations of that layer.  Row ``u`` is ``mean_n d head(acts)_n / d s_u`` where
    ``s_u`` shifts channel ``u`` by the same amount at every position: exact for a linear head after global pooling
    (``W[:, u]``), the local linear response otherwise.  Put the head in eval mode first (dropout, batch norm).

    >>> head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> dirs = gradient_directions(head, torch.rand(5, 4, 2, 2))
    >>> torch.allclose(dirs, head[2].weight.T, atol=1e-6)
    True
    """
    a = torch.as_tensor(acts).detach()
    if a.dim() < 2:
        raise MechscopeError(f"acts must be [N, U] or [N, U, H, W], got shape {tuple(a.shape)}")
    shape = (1, a.shape[1]) + (1,) * (a.dim() - 2)

    def mean_embedding(shift: torch.Tensor) -> torch.Tensor:
        out = head(a + shift.view(shape))
        if out.dim() != 2 or out.shape[0] != a.shape[0]:
            raise MechscopeError(f"head must return [N, D] embeddings for {a.shape[0]} items, got {tuple(out.shape)}")
        return out.mean(0)

    shift = torch.zeros(a.shape[1], dtype=a.dtype, device=a.device)
    try:
        jac = torch.autograd.functional.jacobian(mean_embedding, shift, vectorize=True)   # [D, U]
    except RuntimeError:            # a head vmap cannot batch (in-place ops, data-dependent control flow)
        jac = torch.autograd.functional.jacobian(mean_embedding, shift)
    return jac.T.detach().float().cpu().contiguous()


def regression_directions(acts: torch.Tensor, embeddings: torch.Tensor, ridge: float = 1e-3) -> torch.Tensor:
    """Unit directions ``[U, D]`` by ridge regression of the embeddings ``[N, D]`` on the units' activations.

    ``acts`` ``[N, U]`` (``[N, U, H, W]`` averaged over positions).  Both are centred; the solution of
    ``min_B ||E - A B||^2 + ridge * N * ||B||^2`` has one row per unit: the embedding's change per unit of that
    unit's activation, the other units held fixed.  Needs ``N`` well above ``U`` for a stable answer.

    >>> a = torch.randn(200, 3); w = torch.randn(5, 3)
    >>> torch.allclose(regression_directions(a, a @ w.T + 1.0, ridge=0.0), w.T, atol=1e-4)
    True
    """
    a = torch.as_tensor(acts).detach().double().cpu()
    if a.dim() > 2:
        a = a.flatten(2).mean(2)
    e = torch.as_tensor(embeddings).detach().double().cpu()
    if a.dim() != 2 or e.dim() != 2 or a.shape[0] != e.shape[0]:
        raise MechscopeError(f"acts [N, U] and embeddings [N, D] must have one row per item, got {tuple(a.shape)} "
                             f"and {tuple(e.shape)}")
    if ridge < 0:
        raise MechscopeError(f"ridge must be >= 0, not {ridge}")
    n, u = a.shape
    if n < 2:
        raise MechscopeError("regression_directions needs at least 2 items")
    a, e = a - a.mean(0), e - e.mean(0)
    gram = a.T @ a + ridge * n * torch.eye(u, dtype=torch.float64)
    sol = torch.linalg.lstsq(gram, a.T @ e).solution if ridge == 0 else torch.linalg.solve(gram, a.T @ e)
    return sol.float()


def unit_directions(
    *, weight: torch.Tensor | None = None, head: Callable[[torch.Tensor], torch.Tensor] | None = None,
    acts: torch.Tensor | None = None, embeddings: torch.Tensor | None = None, ridge: float = 1e-3,
) -> torch.Tensor:
    """Unit directions ``[U, D]`` by the one way the arguments give: ``weight`` ``[D, U]`` (a
    linear head: ``linear_head_directions``), ``head`` and ``acts`` (``gradient_directions``), or ``acts`` and
    ``embeddings`` (``regression_directions``).

    >>> unit_directions(weight=torch.ones(3, 2)).shape
    torch.Size([2, 3])
    """
    given = tuple(x is not None for x in (weight, head, acts, embeddings))
    ways = {(True, False, False, False): "weight", (False, True, True, False): "head",
            (False, False, True, True): "regression"}
    if given not in ways:
        raise MechscopeError("give exactly one way to find unit directions: weight=[D, U] (a linear head), "
                             "head= and acts= (its mean Jacobian), or acts= and embeddings= (a regression)")
    if weight is not None:
        return linear_head_directions(weight)
    if head is not None:
        return gradient_directions(head, acts)
    return regression_directions(acts, embeddings, ridge)
