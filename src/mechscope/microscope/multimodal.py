"""Microscope pages for the units of an image–text model of the multimodal world (``shapes-clip``): per unit, how
it responds to every concept as a picture, a sketch and a written word, the texts that best align with it, its
faceted feature visualizations and a typographic attack on it (Goh et al. 2021, *Multimodal Neurons*).

``build_multimodal(model, name, layers, store)`` renders every concept of the world in each modality
(``vision.multimodal.concept_stimuli``, ``options.per_cell`` per cell, held-out seed), reads the layers in one pass,
and writes the rows ``microscope.site`` reads (its store contract), kinds declared in ``microscope.kinds``:

* a ``layers`` row per layer (``channels`` = its width; ``settings["thumbnail"] = "modality_table"``, merged into
  what the store had);
* per unit, ``modality_table``: the unit's concepts x modalities heatmap in σ of the stimuli
  (``plot_modality_table``), its strongest concept per modality with σ and lead over the runner-up, and whether it
  is multimodal (``multimodal_units``, picture vs word, ``options.margin``); ``score`` = the smaller of the two
  leads when picture and word agree, else 0 (``"multimodal margin (σ)"``: the grid sorts by it);
* per unit, ``text_side``: the ``options.texts`` captions of the world's grammar (``data.concepts
  .concept_captions``, every concept and style) whose text embeddings best align with the unit's direction in the
  joint space (``unit_directions``: ridge regression of the image embeddings on the unit's pooled activations --
  exact for a linear head); ``settings["names"]`` = the concepts the top text names;
* for the ``options.facet_units`` units with the highest score, ``faceted``: the unit drawn as a picture and as a
  word (``vision.multimodal.faceted``; facets fitted on ``options.facet_layer``'s -- default: the unit's layer --
  position-averaged responses to the world's pictures and words of the shapes);
* per unit whose strongest word concept is known, ``typographic``: pictures of the shape the unit likes least,
  clean, with the unit's word written on them, and with random letters of the same length (the control); the
  unit's response (σ) and the zero-shot prediction over the ten shapes for each row;
* per layer (channel ``-1``), ``multimodal_units``: the multimodal units' table and links, counts at margins
  0 / 0.25 / 0.5 / 1.

Incremental: a layer whose ``multimodal_units`` row holds the same settings (``MultimodalPages`` and the unit
selection) and whose listed units all have their rows is skipped; otherwise the layer's rows of these kinds are
replaced in one ``transaction`` (PNGs first).

Example (random weights, tiny settings)::

    >>> import tempfile
    >>> from mechscope.zoo.organisms.shapes_clip_net import ShapesClipNet
    >>> from mechscope.zoo.registry import bundled_tokenizer
    >>> net = ShapesClipNet(seed=0).eval()
    >>> net.tokenizer = bundled_tokenizer("shapes-clip")
    >>> small = MultimodalPages(per_cell=2, facet_units=1, facet_steps=2, facet_size=32, attack_examples=2)
    >>> out = tempfile.mkdtemp()
    >>> build_multimodal(net, "clip", ["image_embed"], out, units=2, options=small, progress=False)
    {'built': 2, 'skipped': 0}
    >>> build_multimodal(net, "clip", ["image_embed"], out, units=2, options=small, progress=False)
    {'built': 0, 'skipped': 2}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from mechscope.data.concepts import CONCEPT_NAMES, STYLES, class_prompts, concept_captions
from mechscope.data.multimodal import render
from mechscope.data.shapes import SHAPE_CLASSES
from mechscope.errors import MechscopeError
from mechscope.microscope.kinds import FACETED, MODALITY_TABLE, MULTIMODAL_UNITS, TEXT_SIDE, TYPOGRAPHIC
from mechscope.plots import agg_figure, png_of
from mechscope.store import Store, delete_rows, open_store, put_png, put_rows, read_rows, transaction
from mechscope.units import layer_width
from mechscope.vision.multimodal import (FacetedOptions, concept_stimuli, facet_direction, faceted_render,
                                         modality_table, multimodal_units, plot_modality_table,
                                         random_letter_strings, text_side_response, unit_directions)
from mechscope.vision.multimodal.organism import encode_images, encode_texts
from mechscope.vision.multimodal.stimuli import HELD_OUT_SEED, MODALITIES

KINDS = (MODALITY_TABLE, TEXT_SIDE, FACETED, TYPOGRAPHIC, MULTIMODAL_UNITS)
ATTACK_SEED = HELD_OUT_SEED + 500    # the attack pictures' world items, apart from the stimuli's
COUNT_MARGINS = (0.0, 0.25, 0.5, 1.0)


@dataclass(frozen=True)
class MultimodalPages:
    """What the multimodal pages compute: ``per_cell`` renderings per concept and modality (world seed ``seed``);
    the multimodal test's ``margin`` (σ, picture vs word); the ``texts`` best-aligned captions shown; faceted
    visualizations for the ``facet_units`` best units of a layer (``facet_steps`` steps at ``facet_size`` px,
    facet weight ``facet_weight``; 0 units: none), with facets fitted in ``facet_layer`` (``None``: the unit's own
    layer, skipped for a layer without spatial maps such as ``image_embed``; e.g. ``"mixed4b"`` draws the embedding's
    units too); ``attack_examples`` pictures per typographic row (0: none)."""

    per_cell: int = 10
    seed: int = HELD_OUT_SEED
    margin: float = 0.25
    texts: int = 8
    facet_units: int = 4
    facet_steps: int = 48
    facet_size: int = 64
    facet_weight: float = 1.0
    facet_layer: str | None = None
    attack_examples: int = 4

    def __post_init__(self) -> None:
        if self.per_cell < 1 or self.texts < 1 or self.facet_units < 0 or self.attack_examples < 0:
            raise MechscopeError("MultimodalPages needs per_cell >= 1, texts >= 1, facet_units >= 0 and "
                                 f"attack_examples >= 0; got {self}")

    def settings(self) -> dict[str, Any]:
        return asdict(self)


def _all_captions() -> list[str]:
    """Every caption the world's grammar makes for any concept, sorted (the text side's candidates)."""
    return sorted({t for c in CONCEPT_NAMES for s in STYLES for t in concept_captions(c, s)})


def _top(table: torch.Tensor, m: int, u: int) -> tuple[int, float, float] | None:
    """(concept, σ, lead over the runner-up) of unit ``u`` in modality ``m``; ``None`` for a modality with no cells."""
    col = table[m, :, u]
    ok = torch.isfinite(col)
    if int(ok.sum()) < 1:
        return None
    v = torch.where(ok, col, torch.full_like(col, -math.inf))
    top = v.topk(min(2, int(ok.sum())))
    lead = float(top.values[0] - top.values[1]) if top.values.numel() > 1 else 0.0
    return int(top.indices[0]), float(top.values[0]), lead


def _images_png(rows: Sequence[tuple[str, torch.Tensor, Sequence[str]]], title: str) -> bytes:
    """A grid of images drawn as one picture: one row per ``(row label, images [n, 3, S, S], per-image captions)``,
    the captions under the images."""
    n = max(len(images) for _, images, _ in rows)
    side = rows[0][1].shape[-1]
    pad = side // 3
    grid = torch.ones(3, len(rows) * (side + pad) + pad, n * (side + 4))
    for r, (_, images, _) in enumerate(rows):
        for i, image in enumerate(images):
            top = pad + r * (side + pad)
            grid[:, top:top + side, i * (side + 4):i * (side + 4) + side] = image.clamp(0, 1)
    width = max(0.9 * n + 0.3, 2.2)
    height = grid.shape[1] / grid.shape[2] * width
    fig = agg_figure(width, height + 0.25, layout=None)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 0.25)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(title, fontsize=7, y=0.99)
    for r, (label, images, captions) in enumerate(rows):
        top = pad + r * (side + pad)
        ax.text(0, top - 2, label, fontsize=6, va="bottom")
        for i, text in enumerate(captions):
            if text:
                ax.text(i * (side + 4) + side / 2, top + side + 1, text, fontsize=5, ha="center", va="top")
    return png_of(fig)


@torch.no_grad()
def _zeroshot(model: nn.Module, images: torch.Tensor) -> list[str] | None:
    """The zero-shot shape of each image (the ten shapes' picture prompts), or ``None`` without a text tower."""
    if not hasattr(model, "encode_text") or getattr(model, "tokenizer", None) is None:
        return None
    scores = encode_images(model, images) @ encode_texts(model, class_prompts("picture")).T
    return [SHAPE_CLASSES[int(i)] for i in scores.argmax(1)]


def _attack(model: nn.Module, layer: str, u: int, table: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor,
            concepts: Sequence[str], n: int) -> tuple[dict[str, Any], bytes] | None:
    """The typographic attack on unit ``u``: its strongest word written on the shape it likes least as a picture."""
    from mechscope.vision.multimodal.stimuli import layer_responses

    word_top = _top(table, MODALITIES.index("word"), u)
    if word_top is None:
        return None
    word = concepts[word_top[0]]
    pictures = table[MODALITIES.index("picture"), :, u]
    shapes = [(float(pictures[concepts.index(s)]), s) for s in SHAPE_CLASSES if s in concepts and s != word]
    if not shapes:
        return None
    target = min(shapes)[1]
    idx = list(range(n))
    control = random_letter_strings(n, len(word), seed=u, exclude=CONCEPT_NAMES)
    rows = {"clean": render([target] * n, None, "picture", seed=ATTACK_SEED, indices=idx).images,
            f"word '{word}'": render([target] * n, None, "picture+word", word=word, seed=ATTACK_SEED,
                                     indices=idx).images,
            "random letters": render([target] * n, None, "picture+word", text=control, seed=ATTACK_SEED,
                                     indices=idx).images}
    batch = torch.cat(list(rows.values()))
    z_all = ((layer_responses(model, layer, batch)[:, u].double() - mu[u]) / sigma[u].clamp_min(1e-12)).float()
    predicted_all = _zeroshot(model, batch)
    table_rows, png_rows = [], []
    for r, (label, images) in enumerate(rows.items()):
        z = z_all[r * n:(r + 1) * n]
        predicted = None if predicted_all is None else predicted_all[r * n:(r + 1) * n]
        said_word = None if predicted is None or word not in SHAPE_CLASSES else \
            sum(p == word for p in predicted) / n
        table_rows.append([label, round(float(z.mean()), 3), None if predicted is None else ", ".join(predicted),
                           None if said_word is None else round(said_word, 3)])
        png_rows.append((label, images, [f"{float(v):+.1f}σ" + (f" {p}" if predicted else "")
                                         for v, p in zip(z, predicted or [""] * n)]))
    settings = {"word": word, "picture": target, "control": control,
                "table": {"columns": ["written", "unit response (σ)", "zero-shot shape", f"share predicted '{word}'"],
                          "rows": table_rows},
                "note": f"pictures of a {target} (the shape {layer}:{u} likes least) clean, with its strongest "
                        f"word '{word}' written on them, and with random letters of the same length (control)"}
    return settings, _images_png(png_rows, f"{layer}:{u}: typographic attack")


def _stale(store: Store, name: str, layer: str, want: dict[str, Any]) -> list[int] | None:
    """The layer's built units when the store holds its pages built with ``want``, else ``None``."""
    rows = read_rows(store, "figures", model=name, layer=layer, channel=-1, kind=MULTIMODAL_UNITS.name)
    if not rows or not MULTIMODAL_UNITS.up_to_date(rows[0]["settings"], {"build": want}):
        return None
    units = rows[0]["settings"].get("built", [])
    have = {r["channel"] for r in read_rows(store, "figures", model=name, layer=layer, kind=MODALITY_TABLE.name)}
    return units if set(units) <= have else None


def build_multimodal(model: nn.Module, name: str, layers: Sequence[str], store_dir: str | os.PathLike | Store, *,
                     units: int | Mapping[str, Sequence[int]] | None = None,
                     options: MultimodalPages = MultimodalPages(), progress: bool = True) -> dict[str, int]:
    """Write the multimodal pages of ``layers`` of ``model`` (stored as ``name``) into ``store_dir``.

    ``units``: ``None`` every unit of each layer; an int: that many units per layer, the highest
    ``multimodal margin`` first; a mapping: the channels of each layer.  The model takes images ``[N, 3, S, S]``
    in [0, 1]; with ``encode_image``, ``encode_text`` and a ``tokenizer`` it gets the text side and zero-shot
    predictions, otherwise only the image-side figures.  Returns ``{"built", "skipped"}`` unit counts.
    """
    # One intra-op thread: the pages run many small-batch forwards and featvis backwards, where a second thread
    # cost more than it gave (the demo's pages: 13.9 s of CPU at 1 thread, 190 s at 2, on a loaded 2-core machine).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        if isinstance(store_dir, Store):
            return _build(model, name, list(layers), store_dir, units, options, progress)
        with open_store(store_dir) as store:
            return _build(model, name, list(layers), store, units, options, progress)
    finally:
        torch.set_num_threads(threads)


def _build(model: nn.Module, name: str, layers: list[str], store: Store, units: Any, options: MultimodalPages,
           progress: bool) -> dict[str, int]:
    from mechscope.capture import capture

    if not layers:
        raise MechscopeError("give at least one layer (e.g. 'mixed4b', 'image_embed')")
    widths = {layer: layer_width(model, layer) for layer in layers}
    spec = units if units is None or isinstance(units, int) else {k: sorted(int(c) for c in v)
                                                                    for k, v in units.items()}
    for layer, chosen in (spec.items() if isinstance(spec, dict) else ()):
        bad = [c for c in chosen if layer in widths and not 0 <= c < widths[layer]]
        if bad:
            raise MechscopeError(f"units {bad} are outside {layer}'s 0..{widths[layer] - 1}")
    want = {**options.settings(), "units": spec}
    tag = {"build": want}
    counts = {"built": 0, "skipped": 0}
    todo = []
    for layer in layers:
        done = _stale(store, name, layer, want)
        if done is None:
            todo.append(layer)
        else:
            counts["skipped"] += len(done)
    if not todo:
        return counts
    was_training = model.training
    model.eval()
    stimuli = concept_stimuli(per_cell=options.per_cell, seed=options.seed)
    concepts = list(stimuli.concepts)
    with torch.no_grad():
        read = list(dict.fromkeys(todo + ([options.facet_layer] if options.facet_layer else [])))
        parts = [capture(model, stimuli.images[lo:lo + 256], read) for lo in range(0, len(stimuli.images), 256)]
        maps = {layer: torch.cat([p[layer] for p in parts]).float() for layer in read}
        embeds = torch.cat([model(stimuli.images[lo:lo + 256]) for lo in range(0, len(stimuli.images), 256)]).float()
    has_text = hasattr(model, "encode_text") and getattr(model, "tokenizer", None) is not None
    texts = _all_captions() if has_text else []
    with torch.no_grad():
        text_embeds = model.encode_text(texts) if has_text else None
    for layer in todo:
        acts = maps[layer].flatten(2).mean(2) if maps[layer].dim() > 2 else maps[layer]      # [N, U]
        mu, sigma = acts.double().mean(0), acts.double().std(0, unbiased=False)
        table = modality_table(acts, stimuli.concept, stimuli.modality, len(concepts), len(MODALITIES))
        test = multimodal_units(table, ("picture", "word"), options.margin, modality_names=MODALITIES)
        score = torch.where(test.agree, test.margin.min(0).values, torch.zeros(widths[layer]))
        if spec is None:
            chosen = list(range(widths[layer]))
        elif isinstance(spec, int):
            chosen = sorted(score.argsort(descending=True, stable=True)[:spec].tolist())
        else:
            chosen = spec.get(layer, [])
        directions = unit_directions(acts=acts, embeddings=embeds) if has_text else None
        facet_units = sorted(chosen, key=lambda c: (-float(score[c]), c))[:options.facet_units]
        facets, facet_layer = None, options.facet_layer or layer
        if facet_units and maps[facet_layer].dim() == 4:
            pooled = maps[facet_layer].flatten(2).mean(2)
            word, picture = (stimuli.modality == MODALITIES.index(m) for m in ("word", "picture"))
            shape = torch.tensor([c in SHAPE_CLASSES for c in concepts])[stimuli.concept]
            facets = {"picture": facet_direction(pooled[picture & shape], pooled[word & shape]),
                      "word": facet_direction(pooled[word & shape], pooled[picture & shape])}
        pngs: list[tuple[dict[str, Any], bytes]] = []
        rows: list[dict[str, Any]] = []
        base = {"model": name, "layer": layer}
        for c in tqdm(chosen, desc=f"{name} {layer}", disable=not progress):
            tops = {m: _top(table, i, c) for i, m in enumerate(MODALITIES)}
            multi = bool(test.multimodal[c])
            p, w = (concepts[int(test.concept[i, c])] for i in (0, 1))
            note = (f"multimodal: picture and word agree on '{p}', both leads >= {options.margin} σ" if multi else
                    f"not multimodal at {options.margin} σ: picture '{p}', word '{w}'"
                    + (" (they agree, a lead is smaller)" if bool(test.agree[c]) else ""))
            settings = {**tag, "score": round(float(score[c]), 4), "score_name": "multimodal margin (σ)",
                        "multimodal": multi, "note": note,
                        "table": {"columns": ["modality", "strongest concept", "σ", "lead over runner-up (σ)"],
                                  "rows": [[m, concepts[t[0]], round(t[1], 3), round(t[2], 3)]
                                           for m, t in tops.items() if t is not None]}}
            pngs.append(({**base, "channel": c, "kind": MODALITY_TABLE.name, "settings": settings},
                         png_of(plot_modality_table(table, c, concepts, MODALITIES))))
            if directions is not None:
                if float(directions[c].norm()) == 0:
                    rows.append({**base, "channel": c, "kind": TEXT_SIDE.name, "png": None,
                                 "settings": {**tag, "note": "the unit does not move the image embedding"}})
                else:
                    r = text_side_response(directions[c], text_embeds, texts, k=options.texts)
                    named = [k for k in concepts if k in r.texts[0].split()]
                    rows.append({**base, "channel": c, "kind": TEXT_SIDE.name, "png": None, "settings": {
                        **tag, "names": named, "score": round(float(r.scores[0]), 4),
                        "score_name": "text-side cosine",
                        "note": "captions of the world's grammar ranked by the cosine between their text embedding "
                                "and the unit's direction in the joint space (ridge regression of the image "
                                f"embedding on the unit); {len(texts)} candidates",
                        "table": {"columns": ["text", "cosine"],
                                  "rows": [[t, round(float(s), 4)] for t, s in zip(r.texts, r.scores)]}}})
            if facets is not None and c in facet_units:
                fo = FacetedOptions(weight=options.facet_weight, steps=options.facet_steps, size=options.facet_size)
                out = faceted_render(model, f"{layer}:{c}", facets, facet_layer, fo)
                pngs.append(({**base, "channel": c, "kind": FACETED.name,
                              "settings": {**tag, "facet_layer": facet_layer,
                                           "values": {k: round(v, 4) for k, v in out.values.items()}}},
                             _images_png([("", torch.cat([out.images[k] for k in ("picture", "word")]),
                                           ["picture facet", "word facet"])], f"{layer}:{c} as a picture / a word")))
            if options.attack_examples:
                attack = _attack(model, layer, c, table, mu, sigma, concepts, options.attack_examples)
                if attack is not None:
                    pngs.append(({**base, "channel": c, "kind": TYPOGRAPHIC.name,
                                  "settings": {**tag, **attack[0]}}, attack[1]))
        multi_units = test.units()
        counts_at = {str(m): multimodal_units(table, ("picture", "word"), m, modality_names=MODALITIES).count
                     for m in COUNT_MARGINS}
        layer_settings = {
            **tag, "built": chosen, "counts": counts_at,
            "units": [{"unit": f"{layer}:{u}", "weight": round(float(score[u]), 4)} for u in multi_units],
            "note": f"{len(multi_units)} of {widths[layer]} units multimodal (picture vs word, margin "
                    f"{options.margin} σ); at margins {', '.join(f'{k}: {v}' for k, v in counts_at.items())}",
            "table": {"columns": ["unit", "concept", "picture σ", "word σ", "leads (σ)"],
                      "rows": [[f"{layer}:{u}", concepts[int(test.concept[0, u])], round(float(test.response[0, u]), 3),
                                round(float(test.response[1, u]), 3),
                                f"{float(test.margin[0, u]):.2f} / {float(test.margin[1, u]):.2f}"]
                               for u in multi_units]}}
        layer_png = png_of(plot_modality_table(table, multi_units[:8], concepts, MODALITIES)) if multi_units else None
        old = read_rows(store, "layers", model=name, layer=layer)
        layer_row = {"model": name, "layer": layer, "channels": widths[layer],
                     "settings": {**(old[0]["settings"] if old and isinstance(old[0]["settings"], dict) else {}),
                                  "kind": "vision", "thumbnail": MODALITY_TABLE.name}}
        with transaction(store):
            written = [{**row, "png": put_png(store, data)} for row, data in pngs]
            lw = {**base, "channel": -1, "kind": MULTIMODAL_UNITS.name, "settings": layer_settings,
                  "png": put_png(store, layer_png) if layer_png else None}
            for kind in KINDS:
                delete_rows(store, "figures", model=name, layer=layer, kind=kind.name)
            put_rows(store, "layers", [layer_row])
            put_rows(store, "figures", written + rows + [lw])
        counts["built"] += len(chosen)
    model.train(was_training)
    return counts


__all__ = ["MultimodalPages", "build_multimodal", "KINDS"]
