"""Claims of *Multimodal Neurons in Artificial Neural Networks* (Goh et al., 2021) checked on the organism
``shapes-clip`` (issue 14): ``multimodal-units``, ``text-side-names-concept``, ``typographic-attacks``,
``superordinate-units``.  The analyses are ``vision.multimodal.organism``'s; stimuli are the world's held-out seeds.

Criteria (fixed before the final run; every threshold is a constant below, with where it comes from):

- **multimodal-units**: stimuli are the ten shape concepts (colours cannot be sketched, and a group's picture is
  a member's picture, so shapes and groups would compete for the same images), ``PER_CELL`` = 20 per (concept,
  modality).  A unit is multimodal when its strongest concept is the same for pictures and written words and leads
  its runner-up by ``MARGIN`` = 0.25 σ in both (``table.multimodal_units``).  Judged in ``image_embed``, the
  64-dim joint space where the towers meet; ``mixed4b`` (the last conv layer, the paper's place) is reported too.
  Passes when the count is >= ``MIN_UNITS`` = 3 and exceeds every control's by >= ``MIN_EXCESS`` = 3.  Controls
  (``CONTROLS``): the untrained network (``weights="random"``, ``UNTRAINED_SEEDS``, the largest count counts) and
  ``shapes-clip-shuffled`` (trained on shuffled captions); a control model that cannot be loaded is an error
  naming it.
- **text-side-names-concept**: the ``TEXT_TOP_K`` = 32 ``image_embed`` units with the largest picture margin
  (half the joint space); each unit's direction (its basis vector) ranks every caption, prompt and concept name
  of the grammar (``candidate_texts``, 518 texts) by cosine with their text embeddings; a hit when the best text
  names the unit's strongest picture concept.  Controls: ``RANDOM_DRAWS`` = 20 random Gaussian directions per
  unit scored against that unit's concept (the texts' chance of naming a given shape is ~0.07), and the untrained
  network's own top-32 units with its own text tower.  Passes when the hit rate is >= ``MIN_NAME_RATE`` = 0.3
  (about four times chance) and beats each control by >= ``NAME_RATE_EXCESS`` = 0.15 (about 1.5 binomial s.d.
  of a rate over 32 units).
- **typographic-attacks**: ``TYPO_N`` = 300 pictures of shape A with another shape's name B written on a label,
  zero-shot over "a picture of a {shape}".  Passes when the flip rate A->B is >= ``FLIP_MIN`` = 0.2, is >=
  ``FLIP_RATIO`` = 2 times that of random letter strings of B's length (the control with as much ink, scored for
  B; chance is ~1/9 of the items the writing moves), and writing A's own name keeps accuracy: its accuracy is
  within ``OWN_WORD_MAX_DROP`` = 0.1 of the clean accuracy (the paper's control: the word itself is no attack).
- **superordinate-units**: on ``mixed4b`` (the last conv layer; the joint space is reported too), picture
  table of the ten shapes; a unit is superordinate when, for its best group (round / pointed / linear), its
  weakest response to a member beats its strongest response to a non-member by ``MARGIN`` σ
  (``superordinate.superordinate_units``).  Passes when the count is >= ``MIN_UNITS`` and exceeds the untrained
  network's (largest over ``UNTRAINED_SEEDS``) by >= ``MIN_EXCESS``.

The margin 0.25 σ: at margin 0 the untrained network passes both tests for most of its units (72 of 128 mixed4b
units "multimodal", ~50 per group "superordinate"): a shared low-level bias makes every unit's strongest concept
the same; 0.25 is the smallest margin of the first look's grid (0, 0.25, 0.5) at which the untrained counts are 0.

History (the lead's and this module's exploration, 2026-12-05, held-out seed 2000, 20 per cell, one core):

- shape concepts, picture vs word, margins 0 / 0.25 / 0.5: mixed4b 16 / 1 / 1 (untrained seed 0: 72 / 0 / 0);
  image_embed 24 / 7 / 3 (untrained 12 / 0 / 0).  Picture vs sketch: mixed4b 58 / 34 / 21, image_embed 45 / 22 /
  11 (untrained 63 / 0 / 0 and 5 / 0 / 0).  With all 20 concepts image_embed has 6 at 0.25.  So the conv layers
  are mostly unimodal between picture and word (sketches share the picture's strokes); the word meets the picture
  in the joint space, where the claim is judged.
- superordinate gap >= 0 / 0.25 / 0.5 per group (round, pointed, linear): mixed4b 16/10/4, 3/2/0, 10/2/0 (14 at
  0.25); untrained 51/0/0, 51/0/0, 55/0/0; image_embed 4/3/1, 2/0/0, 5/3/1.
- text side (all 20 concepts, image_embed, top-K by picture margin): K = 8 / 16 / 32 / 64 name their concept at
  0.50 / 0.44 / 0.53 / 0.42, random directions 0.03-0.09; the six multimodal units 5 of 6; mixed4b through the
  linear head 0.44 (K=16) / 0.26 (all 128).  The negated direction never names it (0 of 32).
- typographic (300 items, seed 3000): flip 0.39, random letters 0.10; clean accuracy 0.99, own word 0.69: the
  organism reads any writing on a picture, its own name included, so the own-word control loses accuracy (the
  card's picture+word zero-shot 0.67 says the same).  The criterion was kept as the paper's control states it.
- final run (2026-12-05, defaults, one shared core, each claim from cold; ``shapes-clip-shuffled`` not yet in the
  registry, so multimodal-units ran with ``controls=("untrained",)``): multimodal-units PASS, 7 units in
  image_embed (4 of them polygon) vs untrained 0 and 0, mixed4b 1 (23.7 s); text-side-names-concept PASS, 0.469 of
  32 vs random directions 0.073, untrained 0.094 / 0.125, the 7 multimodal units 6 of 7 (11.0 s);
  typographic-attacks FAIL, flip 0.368 vs random letters 0.078 (passes) but own-word accuracy 0.697 vs clean
  0.987, a drop of 0.29 > 0.1 (7.8 s); superordinate-units PASS, 14 in mixed4b (round 10, pointed 2, linear 2)
  vs untrained 0 and 0, image_embed 6 (21.3 s).  All four in one run (shared caches) 27.7 s.
- shapes-clip iteration 2 (the world's ``caption_names_label`` = 0.5, so "a picture of a X" also describes a
  labelled picture; organism and shuffled control retrained; the criteria above unchanged): multimodal-units PASS,
  9 in image_embed vs 0 in every control, mixed4b 6; text-side-names-concept PASS, 0.344 vs random directions
  0.094, untrained 0.094 / 0.125, the multimodal units 5 of 9; typographic-attacks PASS, flip 0.497 vs random
  letters 0.121, own word 0.990 vs clean 0.993; superordinate-units PASS, 16 in mixed4b (round 8, pointed 1,
  linear 7) vs untrained 0.  All four 33 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.reproduce.claims import Claim, Result, fmt
from mechscope.vision.multimodal.organism import (ModalityReport, candidate_texts, encode_texts, names_concept,
                                                  picture_selective_units, superordinate_report, text_side_report,
                                                  typographic_attack, unit_modality_report, unit_text_directions)

PAPER = "Multimodal Neurons in Artificial Neural Networks (Goh et al., 2021)"
MODEL = "shapes-clip"
CONTROLS = ("untrained", "shapes-clip-shuffled")
UNTRAINED_SEEDS = (0, 1)
PER_CELL = 20
MARGIN = 0.25
MULTIMODAL_LAYER = "image_embed"
SUPERORDINATE_LAYER = "mixed4b"
LAYERS = ("mixed4b", "image_embed")
MIN_UNITS = 3
MIN_EXCESS = 3
TEXT_TOP_K = 32
RANDOM_DRAWS = 20
MIN_NAME_RATE = 0.3
NAME_RATE_EXCESS = 0.15
TYPO_N = 300
FLIP_MIN = 0.2
FLIP_RATIO = 2.0
OWN_WORD_MAX_DROP = 0.1


@lru_cache(maxsize=None)
def _model(name: str, seed: int = 0) -> nn.Module:
    """``shapes-clip``, the untrained network (``"untrained"``: random weights of ``seed``, with the organism's
    tokenizer attached so its random text tower can read) or another control organism by its zoo name."""
    import mechscope

    torch.set_num_threads(1)
    if name == "untrained":
        model = mechscope.load(MODEL, weights="random", seed=seed, device="cpu")
        model.tokenizer = _model(MODEL, 0).tokenizer
        return model.eval()
    try:
        return mechscope.load(name, device="cpu").eval()
    except MechscopeError as e:
        raise MechscopeError(f"the control model {name!r} cannot be loaded ({e}); the claim needs it: train and "
                             "register it, or run the claim with controls= that leave it out") from None


@lru_cache(maxsize=None)
def _report(name: str, seed: int, layer: str, per_cell: int) -> ModalityReport:
    return unit_modality_report(_model(name, seed), layer, per_cell=per_cell, margin=MARGIN)


def _control_runs(controls: Sequence[str]) -> list[tuple[str, str, int]]:
    """``(label, model name, seed)`` per control network."""
    runs = []
    for c in controls:
        if c == "untrained":
            runs += [(f"untrained_seed{s}", "untrained", s) for s in UNTRAINED_SEEDS]
        else:
            runs.append((c, c, 0))
    return runs


# ----------------------------------------------------------------------------------------------- multimodal-units
def check_multimodal_units(out: Path, controls: Sequence[str] = CONTROLS, per_cell: int = PER_CELL) -> Result:
    if not controls:
        raise MechscopeError(f"multimodal-units needs at least one control of {CONTROLS}")
    runs = _control_runs(controls)
    for _, name, seed in runs:                     # every control loads (or fails, naming it) before any work
        _model(name, seed)
    counts = {layer: {pair: _report(MODEL, 0, layer, per_cell).count(pair)
                      for pair in ("picture-word", "picture-sketch")} for layer in LAYERS}
    found = _report(MODEL, 0, MULTIMODAL_LAYER, per_cell)
    ctrl: dict[str, dict] = {}
    for label, name, seed in runs:
        ctrl[label] = {layer: {pair: _report(name, seed, layer, per_cell).count(pair)
                               for pair in ("picture-word", "picture-sketch")} for layer in LAYERS}
    n = counts[MULTIMODAL_LAYER]["picture-word"]
    per_control = {label: v[MULTIMODAL_LAYER]["picture-word"] for label, v in ctrl.items()}
    worst = max(per_control.values())
    passed = n >= MIN_UNITS and n - worst >= MIN_EXCESS
    units = found.tests["picture-word"].units()
    concepts = [found.concepts[int(found.tests["picture-word"].concept[0, u])] for u in units]
    numbers = {"layer": MULTIMODAL_LAYER, "margin_sigma": MARGIN, "per_cell": per_cell,
               "multimodal_units": n, "control_max": worst, "units": units, "unit_concepts": concepts,
               "counts": counts, "control_counts": ctrl, "min_units": MIN_UNITS, "min_excess": MIN_EXCESS}
    summary = (f"{n} multimodal units (picture-word, margin {MARGIN} σ) in {MULTIMODAL_LAYER} vs controls "
               + ", ".join(f"{k} {v}" for k, v in per_control.items())
               + f"; mixed4b {counts['mixed4b']['picture-word']}")
    return Result(numbers, passed, controls={"controls": list(controls), "counts": ctrl}, summary=summary, note=(
        f"Ten shape concepts x picture/sketch/word x {per_cell} held-out stimuli; σ of the stimulus set. Judged on "
        f"{MULTIMODAL_LAYER} (where image and text towers meet); mixed4b reported: its units are mostly unimodal "
        "between picture and word. Picture-sketch counts reported, not judged (sketches share the pictures' "
        "strokes)."))


# ----------------------------------------------------------------------------------------------- text side
def _name_rate(model: nn.Module, report: ModalityReport, k: int, texts: list[str], emb: torch.Tensor) -> dict:
    units, concepts = picture_selective_units(report, k)
    dirs = unit_text_directions(model, report.layer)[units]
    rows = text_side_report(dirs, emb, texts, concepts, k=3)
    return {"rate": sum(r["names_concept"] for r in rows) / len(rows), "units": units, "rows": rows}


def check_text_side(out: Path, k: int = TEXT_TOP_K, draws: int = RANDOM_DRAWS, per_cell: int = PER_CELL) -> Result:
    texts = candidate_texts()
    model = _model(MODEL, 0)
    report = _report(MODEL, 0, MULTIMODAL_LAYER, per_cell)
    emb = encode_texts(model, texts)
    found = _name_rate(model, report, k, texts, emb)
    concepts = [r["concept"] for r in found["rows"]]
    g = torch.Generator().manual_seed(0)
    hits = 0
    for _ in range(draws):
        dirs = torch.randn(len(concepts), emb.shape[1], generator=g)
        hits += sum(r["names_concept"] for r in text_side_report(dirs, emb, texts, concepts, k=1))
    random_rate = hits / (draws * len(concepts))
    chance = sum(names_concept(t, c) for c in concepts for t in texts) / (len(texts) * len(concepts))
    untrained = {}
    for s in UNTRAINED_SEEDS:
        u = _model("untrained", s)
        untrained[f"untrained_seed{s}"] = _name_rate(u, _report("untrained", s, MULTIMODAL_LAYER, per_cell), k,
                                                     texts, encode_texts(u, texts))["rate"]
    mm = report.tests["picture-word"]
    mm_units = mm.units()
    mm_rows = text_side_report(unit_text_directions(model, MULTIMODAL_LAYER)[mm_units], emb, texts,
                               [report.concepts[int(mm.concept[0, u])] for u in mm_units], k=3) if mm_units else []
    rate = found["rate"]
    controls = {"random_directions": random_rate, **untrained}
    passed = rate >= MIN_NAME_RATE and all(rate - v >= NAME_RATE_EXCESS for v in controls.values())
    numbers = {"layer": MULTIMODAL_LAYER, "top_k_units": k, "names_concept_rate": rate,
               "random_directions_rate": random_rate, "untrained_rate": untrained, "chance_share_of_texts": chance,
               "multimodal_units_rate": (sum(r["names_concept"] for r in mm_rows) / len(mm_rows)) if mm_rows else None,
               "n_texts": len(texts), "min_rate": MIN_NAME_RATE, "min_excess": NAME_RATE_EXCESS,
               "examples": [{"unit": u, **r} for u, r in zip(found["units"][:8], found["rows"][:8])]}
    summary = (f"top text names the concept of {fmt(rate)} of the {k} most picture-selective {MULTIMODAL_LAYER} "
               f"units vs random directions {fmt(random_rate)}, untrained "
               + ", ".join(fmt(v) for v in untrained.values()))
    return Result(numbers, passed, controls=controls, summary=summary, note=(
        f"Candidates: {len(texts)} texts (every caption of the grammar, the zero-shot prompts, the concept names); "
        "a hit when the best-aligned text contains the unit's strongest picture concept (shape) as a word. Ranked "
        "among the texts offered, not searched over all strings the tower could read."))


# ----------------------------------------------------------------------------------------------- typographic
def check_typographic(out: Path, n: int = TYPO_N) -> Result:
    r = typographic_attack(_model(MODEL, 0), n=n)
    a, rnd, own = r.attack, r.random_letters, r.own_word
    drop = own.clean_accuracy - own.attacked_accuracy
    ok_flip = a.flip_rate >= FLIP_MIN and a.flip_rate >= FLIP_RATIO * rnd.flip_rate
    ok_own = drop <= OWN_WORD_MAX_DROP
    numbers = {"n": n, "flip_rate": a.flip_rate, "random_letters_flip_rate": rnd.flip_rate,
               "clean_accuracy": a.clean_accuracy, "attacked_accuracy": a.attacked_accuracy,
               "random_letters_accuracy": rnd.attacked_accuracy, "own_word_accuracy": own.attacked_accuracy,
               "own_word_drop": drop, "flip_passed": ok_flip, "own_word_passed": ok_own,
               "flip_min": FLIP_MIN, "flip_ratio": FLIP_RATIO, "own_word_max_drop": OWN_WORD_MAX_DROP,
               "detail": r.as_dict()}
    missed = [] if ok_flip else [f"flip {fmt(a.flip_rate)} (needs >= {FLIP_MIN} and >= {FLIP_RATIO:g}x random "
                                 f"{fmt(rnd.flip_rate)})"]
    if not ok_own:
        missed.append(f"own-word accuracy drop {fmt(drop)} > {OWN_WORD_MAX_DROP}")
    summary = (f"word B on A flips to B {fmt(a.flip_rate)} vs random letters {fmt(rnd.flip_rate)}; own word: "
               f"accuracy {fmt(own.attacked_accuracy)} vs clean {fmt(a.clean_accuracy)}"
               + (f" (missed: {'; '.join(missed)})" if missed else ""))
    controls = {"random_letters_flip_rate": rnd.flip_rate, "random_letters_accuracy": rnd.attacked_accuracy,
                "own_word_accuracy": own.attacked_accuracy, "own_word_drop": drop}
    return Result(numbers, ok_flip and ok_own, controls=controls, summary=summary, note=(
        f"{n} held-out pictures (seed {r.seed}), shapes balanced, B a random other shape per item; zero-shot over "
        "'a picture of a {shape}'. Flip rate among items right when clean. Random letters: a string of B's length, "
        "scored for B. Own word: A's name written on A."))


# ----------------------------------------------------------------------------------------------- superordinate
def check_superordinate(out: Path, per_cell: int = PER_CELL) -> Result:
    found = {layer: superordinate_report(_report(MODEL, 0, layer, per_cell), MARGIN) for layer in LAYERS}
    untrained = {f"untrained_seed{s}": {layer: superordinate_report(_report("untrained", s, layer, per_cell),
                                                                    MARGIN).count for layer in LAYERS}
                 for s in UNTRAINED_SEEDS}
    main = found[SUPERORDINATE_LAYER]
    n = main.count
    worst = max(v[SUPERORDINATE_LAYER] for v in untrained.values())
    passed = n >= MIN_UNITS and n - worst >= MIN_EXCESS
    units = main.superordinate.nonzero().flatten().tolist()
    numbers = {"layer": SUPERORDINATE_LAYER, "margin_sigma": MARGIN, "superordinate_units": n,
               "per_group": main.per_group(), "untrained_max": worst, "untrained_counts": untrained,
               "image_embed": {"count": found["image_embed"].count, "per_group": found["image_embed"].per_group()},
               "units": [{"unit": u, "group": main.groups[int(main.group[u])], "gap": round(float(main.best_gap[u]), 3)}
                         for u in units], "min_units": MIN_UNITS, "min_excess": MIN_EXCESS}
    summary = (f"{n} superordinate units in {SUPERORDINATE_LAYER} ("
               + ", ".join(f"{g} {c}" for g, c in main.per_group().items())
               + f") vs untrained {worst}; image_embed {found['image_embed'].count}")
    return Result(numbers, passed, controls=untrained, summary=summary, note=(
        "Picture responses to the ten shapes (σ of the stimulus set); a unit is superordinate for a group when "
        f"its weakest member response beats its strongest non-member response by {MARGIN} σ."))


CLAIMS = (
    Claim("multimodal-units", PAPER, "units respond to the same concept as a picture and as its written word",
          f"{MULTIMODAL_LAYER}: >= {MIN_UNITS} units whose strongest of the ten shapes agrees for pictures and "
          f"written words with a lead >= {MARGIN} σ in both, >= {MIN_EXCESS} more than the untrained network and "
          "the network trained on shuffled captions", check_multimodal_units),
    Claim("text-side-names-concept", PAPER, "a unit's text-side maximal response names its concept",
          f"the best-aligned of the grammar's texts names the strongest picture concept for >= {MIN_NAME_RATE} of "
          f"the {TEXT_TOP_K} most picture-selective {MULTIMODAL_LAYER} units, >= {NAME_RATE_EXCESS} above random "
          "directions and the untrained network", check_text_side),
    Claim("typographic-attacks", PAPER, "writing word B on a picture of A makes the model see B",
          f"zero-shot flip rate A->B >= {FLIP_MIN} and >= {FLIP_RATIO:g}x that of random letter strings; writing "
          f"A's own name costs <= {OWN_WORD_MAX_DROP} accuracy", check_typographic),
    Claim("superordinate-units", PAPER, "units respond to a superordinate category (round / pointed / linear "
          "shapes)", f"{SUPERORDINATE_LAYER}: >= {MIN_UNITS} units whose weakest response to a group's members beats "
          f"their strongest to non-members by {MARGIN} σ, >= {MIN_EXCESS} more than the untrained network",
          check_superordinate),
)
