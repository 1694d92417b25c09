"""The per-head tables and pictures of the transformer verbs (``mechscope heads``, ``composition``, ``ov``,
``qk``), as functions a notebook calls too: rows ready for JSON, figures ready to save.

* ``head_table(model, tokenizer)``: every head's previous-token, duplicate-token and induction score (on the probe
  tokens ``heads.probe_tokens``), its OV copying score (LayerNorm folded) and its kinds (``heads.classify_heads``);
* ``composition_table(model, kind, top)``: Q-, K- or V-composition scores between every pair of heads, the
  random-matrix baseline and the strongest pairs;
* ``circuit_table(model, "ov" | "qk", layer, head, top, tokenizer)``: the strongest token pairs of a head's full
  OV or QK circuit (and the OV copying score).

Each result has ``save(out, stem)``: JSON (atomically) and, where there is a picture, a PNG beside it.

>>> import tempfile
>>> from pathlib import Path
>>> from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer
>>> model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=11,
...                                            d_vocab=30), seed=0)
>>> t = head_table(model)
>>> [r["head"] for r in t.rows], sorted(t.rows[0])
(['0.0', '0.1', '1.0', '1.1'], ['copying', 'duplicate_token', 'head', 'induction', 'kind', 'previous_token'])
>>> c = composition_table(model, "k", top=2)
>>> len(c.payload["top"]), len(c.payload["scores"]), c.payload["top"][0]["from"][0]
(2, 4, '0')
>>> sorted(circuit_table(model, "ov", 1, 0, top=3))
['circuit', 'copying_score', 'head', 'top']
>>> with tempfile.TemporaryDirectory() as d:
...     sorted(p.name for p in t.save(Path(d), "toy") + c.save(Path(d), "toy"))
['toy_composition_k.json', 'toy_composition_k.png', 'toy_heads.json', 'toy_heads.png']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from mechscope.artefacts import atomic_write_json
from mechscope.errors import MechscopeError
from mechscope.units import Head

HEAD_SCORES = ("previous_token", "duplicate_token", "induction", "copying")


@dataclass(frozen=True)
class HeadTable:
    """``scores``: ``{previous_token, duplicate_token, induction, copying: [n_layers, n_heads]}``; ``rows``: one
    per head ``{"head": "L.H", <score>: float (4 decimals), "kind": "previous_token" | ... | ""}``."""

    scores: dict[str, Tensor]
    rows: list[dict[str, Any]]

    def figure(self) -> Any:
        """One heatmap per score (layers x heads); the copying score on a diverging scale."""
        from mechscope.plots import new_figure

        n_layers = int(next(iter(self.scores.values())).shape[0])
        fig, axes = new_figure(1, 4, figsize=(11, 0.9 + 0.5 * n_layers))
        for ax, key in zip(axes, HEAD_SCORES, strict=True):
            image = ax.imshow(self.scores[key].float().numpy(), cmap="RdBu_r" if key == "copying" else "viridis",
                              vmin=-1 if key == "copying" else 0, vmax=1)
            ax.set_title(key, fontsize=8)
            ax.set_xlabel("head")
            ax.set_ylabel("layer")
            fig.colorbar(image, ax=ax, shrink=0.7)
        return fig

    def save(self, out: Path, stem: str) -> list[Path]:
        """``out/{stem}_heads.json`` (the rows) and ``out/{stem}_heads.png`` (the figure)."""
        from mechscope.plots import save_figure

        return [atomic_write_json(Path(out) / f"{stem}_heads.json", self.rows),
                save_figure(self.figure(), Path(out) / f"{stem}_heads.png")]


def head_table(model: Any, tokenizer: Any = None) -> HeadTable:
    """Every head's detector scores on ``heads.probe_tokens`` (BOS and special ids from ``tokenizer`` when given),
    its copying score on the LayerNorm-folded model, and its kind (of the kinds passing ``classify_heads``'s
    thresholds, the last in the order of the scores; ``""`` for none)."""
    from mechscope.transformer.circuits import copying_scores
    from mechscope.transformer.heads import classify_heads, probe_ids, probe_scores
    from mechscope.zoo.attn_only import with_layer_norm_folded

    bos, low = probe_ids(tokenizer, model.cfg.d_vocab)
    scores = probe_scores(model, bos=bos, low=low)
    kinds = {r["head"]: r["kind"] for r in classify_heads(scores)}
    scores["copying"] = copying_scores(with_layer_norm_folded(model))
    heads = [Head.at(l, h) for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads)]
    rows = [{"head": x.short, **{k: round(float(v[x.layer_index, x.head]), 4) for k, v in scores.items()},
             "kind": kinds.get(x.short, "")} for x in heads]
    return HeadTable(scores, rows)


@dataclass(frozen=True)
class CompositionTable:
    """``payload``: ``{"kind", "baseline", "top": [{"from", "to", "score"}], "scores": [[L*H] * L*H]}`` (rows:
    earlier heads, columns: later heads); ``flat``: the scores ``[L*H, L*H]``; ``labels``: ``"L.H"`` per row."""

    payload: dict[str, Any]
    flat: Tensor
    labels: list[str]

    def figure(self) -> Any:
        """The score matrix with head labels and the baseline in the title."""
        from mechscope.plots import new_figure

        fig, ax = new_figure(figsize=(4.5, 4))
        image = ax.imshow(self.flat.numpy(), cmap="viridis", vmin=0)
        n = len(self.labels)
        ax.set_xticks(range(n), self.labels, rotation=90, fontsize=6)
        ax.set_yticks(range(n), self.labels, fontsize=6)
        ax.set_xlabel("later head")
        ax.set_ylabel("earlier head")
        ax.set_title(f"{self.payload['kind'].upper()}-composition (baseline {self.payload['baseline']:.3f})",
                     fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.8)
        return fig

    def save(self, out: Path, stem: str) -> list[Path]:
        """``out/{stem}_composition_{kind}.json`` (with ``"model": stem`` first) and ``.png``."""
        from mechscope.plots import save_figure

        base = Path(out) / f"{stem}_composition_{self.payload['kind']}"
        return [atomic_write_json(base.with_suffix(".json"), {"model": stem, **self.payload}),
                save_figure(self.figure(), base.with_suffix(".png"))]


def composition_table(model: Any, kind: str = "k", top: int = 5) -> CompositionTable:
    """``kind``-composition (q | k | v) scores between every pair of heads of the LayerNorm-folded ``model`` (two
    layers at least), the random-matrix baseline for its ``d_model``/``d_head`` and the ``top`` strongest pairs."""
    from mechscope.transformer.circuits import composition_baseline, composition_scores
    from mechscope.zoo.attn_only import with_layer_norm_folded

    if kind not in ("q", "k", "v"):
        raise MechscopeError(f"--kind must be q, k or v, not {kind!r}")
    if model.cfg.n_layers < 2:
        raise MechscopeError(f"the model has one layer (n_layers={model.cfg.n_layers}): composition needs heads in "
                             "two layers")
    scores = composition_scores(with_layer_norm_folded(model), kind)          # [L, H, L, H]
    baseline = composition_baseline(model.cfg.d_model, model.cfg.d_head)
    L, H = model.cfg.n_layers, model.cfg.n_heads
    flat = scores.reshape(L * H, L * H)
    order = flat.flatten().argsort(descending=True)[:top].tolist()
    labels = [Head.at(l, h).short for l in range(L) for h in range(H)]
    pairs = [{"from": labels[i // (L * H)], "to": labels[i % (L * H)], "score": round(float(flat.flatten()[i]), 4)}
             for i in order]
    payload = {"kind": kind, "baseline": round(baseline, 4), "top": pairs,
               "scores": [[round(float(v), 4) for v in row] for row in flat]}
    return CompositionTable(payload, flat, labels)


CIRCUIT_COLUMNS = {"ov": ("source", "logit"), "qk": ("query", "key")}


def circuit_table(model: Any, which: str, layer: int, head: int, top: int = 10, tokenizer: Any = None
                  ) -> dict[str, Any]:
    """The ``top`` strongest entries of head ``layer.head``'s full OV (``which="ov"``: source → logit, with the
    copying score) or QK (``"qk"``: query → key) circuit of the LayerNorm-folded ``model``, tokens decoded with
    ``tokenizer`` when given: ``{"head": "L.H", "circuit", "top": [{source|query, logit|key, "value"}], ...}``."""
    from mechscope.transformer.circuits import copying_scores, ov_circuit, qk_circuit, top_token_pairs
    from mechscope.zoo.attn_only import with_layer_norm_folded

    if which not in CIRCUIT_COLUMNS:
        raise MechscopeError(f"the circuit is 'ov' or 'qk', not {which!r}")
    folded = with_layer_norm_folded(model)
    circuit = (ov_circuit if which == "ov" else qk_circuit)(folded, layer, head)
    names = CIRCUIT_COLUMNS[which]
    rows = [{names[0]: p.row_token if p.row_token is not None else p.row,
             names[1]: p.col_token if p.col_token is not None else p.col, "value": round(p.value, 4)}
            for p in top_token_pairs(circuit, top, tokenizer)]
    payload: dict[str, Any] = {"head": Head.at(layer, head).short, "circuit": which, "top": rows}
    if which == "ov":
        payload["copying_score"] = round(float(copying_scores(folded)[layer, head]), 4)
    return payload
