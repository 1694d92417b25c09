"""Text feature visualization: search free text for the string whose embedding best aligns with a unit.

``text_side_response`` ranks texts someone wrote down; the paper (Goh et al. 2021) searched the text side for the
strings that maximise a neuron.  ``search_text`` does that search over sequences of words: a beam search that
grows texts one word at a time (appended at the end or put in front), scoring every candidate by the cosine
between its text embedding and the unit's direction, and keeping the ``beam`` best at each length.  Any text
encoder works: it is a callable from a list of strings to embeddings ``[T, D]``.  The vocabulary is any list of
words (default for a model with a BPE tokenizer: ``tokenizer_words``, the whole-word tokens it knows), so the
search can find texts no caption template contains.

The search is greedy, so its best text is a lower bound on the best string of that length; it always scores at
least as well as every single word of the vocabulary and, given ``seeds``, as every seed text.

Example::

    >>> import torch
    >>> table = {"red": [1.0, 0.0, 0.0], "star": [0.0, 1.0, 0.0], "ring": [0.0, 0.0, 1.0]}
    >>> def encode(texts):      # a bag-of-words encoder
    ...     return torch.tensor([[sum(table[w][j] for w in t.split()) for j in range(3)] for t in texts])
    >>> r = search_text(encode, torch.tensor([1.0, 1.0, 0.0]), ["red", "star", "ring"], max_words=2, beam=2)
    >>> r.texts[0], round(float(r.scores[0]), 3)
    ('red star', 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal.text_side import TextResponse

__all__ = ["search_text", "tokenizer_words"]


def tokenizer_words(tokenizer: Any, min_length: int = 2) -> list[str]:
    """The word-initial tokens of a byte-level BPE tokenizer (those that decode with a leading space): lowercase
    alphabetic, at least ``min_length`` letters, in vocabulary order, without the space.  Mostly whole words;
    a few are word beginnings the merges stopped at (``"pict"``), which the text tower reads all the same."""
    vocab = tokenizer.vocab_size if hasattr(tokenizer, "vocab_size") else len(tokenizer)
    words: dict[str, None] = {}
    for i in range(int(vocab)):
        try:
            text = tokenizer.decode([i])
        except Exception:       # specials some tokenizers refuse to decode alone
            continue
        w = text[1:] if text.startswith(" ") else ""
        if len(w) >= min_length and w.isalpha() and w.islower():
            words[w] = None
    if not words:
        raise MechscopeError("the tokenizer holds no whole-word tokens; pass a vocabulary of words instead")
    return list(words)


def _scores(encode: Callable[[list[str]], torch.Tensor], texts: list[str], direction: torch.Tensor,
            batch: int) -> torch.Tensor:
    out = []
    for lo in range(0, len(texts), batch):
        e = torch.as_tensor(encode(texts[lo: lo + batch])).detach().float().cpu()
        if e.dim() != 2 or e.shape[1] != direction.shape[0]:
            raise MechscopeError(f"encode must return [T, {direction.shape[0]}] embeddings, got {tuple(e.shape)}")
        out.append(F.normalize(e, dim=1) @ direction)
    return torch.cat(out)


def search_text(
    encode: Callable[[list[str]], torch.Tensor], direction: torch.Tensor, words: Sequence[str], *,
    max_words: int = 4, beam: int = 8, k: int = 5, seeds: Sequence[str] = (), batch: int = 512,
) -> TextResponse:
    """The ``k`` best texts of up to ``max_words`` words from ``words`` for ``direction`` ``[D]``, best first.

    ``encode(texts) -> [T, D]``; ``seeds``: texts scored beside the single words (e.g. the best captions of
    ``text_side_response``), so the result is never worse than they are; those shorter than ``max_words`` words
    may also start the beam.  ``indices`` of the result are ranks in the explored set (the texts are
    new strings, not rows of a candidate list).  Cost: about ``max_words * beam * 2 * len(words)`` encodings.
    """
    d = torch.as_tensor(direction).detach().float().cpu()
    if d.dim() != 1 or d.norm() == 0:
        raise MechscopeError(f"direction must be a non-zero vector [D], got shape {tuple(d.shape)}")
    vocab = list(dict.fromkeys(str(w).strip() for w in words if str(w).strip()))
    if not vocab:
        raise MechscopeError("search_text needs a non-empty vocabulary of words")
    if max_words < 1 or beam < 1 or k < 1:
        raise MechscopeError(f"max_words, beam and k must be >= 1, got {max_words}, {beam}, {k}")
    d = F.normalize(d, dim=0)
    seen: dict[str, float] = {}

    def score(texts: list[str]) -> None:
        new = [t for t in dict.fromkeys(texts) if t not in seen]
        if new:
            for t, s in zip(new, _scores(encode, new, d, batch).tolist()):
                seen[t] = s

    seeds = [s.strip() for s in seeds if s.strip()]
    score(vocab + seeds)
    # the beam grows from words and from seeds short enough to grow; longer seeds only compete in the final ranking
    frontier = sorted([t for t in seen if len(t.split()) < max_words] or vocab, key=seen.__getitem__,
                      reverse=True)[:beam]
    for _ in range(max_words - 1):
        grown = [f"{t} {w}" for t in frontier if len(t.split()) < max_words for w in vocab]
        grown += [f"{w} {t}" for t in frontier if len(t.split()) < max_words for w in vocab]
        if not grown:
            break
        score(grown)
        frontier = sorted(dict.fromkeys(grown), key=seen.__getitem__, reverse=True)[:beam]
    best = sorted(seen, key=seen.__getitem__, reverse=True)[:k]
    return TextResponse(best, torch.arange(len(best)), torch.tensor([seen[t] for t in best]))
