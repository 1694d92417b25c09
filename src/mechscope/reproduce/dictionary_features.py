"""Claim (Towards Monosemanticity, Bricken et al. 2023): a sparse dictionary on a one-layer transformer's MLP has
features more monosemantic than the MLP's neurons.  Checked on ``mlp-1l`` and its bundled ``mlp-1l-sae``.

Stated before looking at results (the constants below were fixed first and not changed after the run):

* the text: the bundled held-out sample (``mlp_1l.held_out_sample.safetensors``: 256 rows × 128 tokens of the
  held-out split, which neither the model nor the SAE trained on);
* the units: the 512 neurons of ``blocks.0.mlp.hook_post``; the SAE's 2048 latents on it (TopK, k 16); and the
  control, ``RANDOM`` (512) seeded unit-norm random directions in the same 512-d activation space (projections);
* the measure (``transformer.monosemanticity``): each unit's top ``K`` (20) contexts from one streaming pass
  (``transformer.features.feature_contexts``); the class of each context's max token (``token_class``: special /
  whitespace / digit / punctuation / keyword / upper / lower / other); the fraction of the ``K`` in the unit's
  most common class; the mean over units whose ``K`` slots all hold positive activations;
* the criterion: latents' mean ≥ neurons' mean + ``MARGIN`` (0.10) AND latents' mean ≥ random directions' mean +
  ``MARGIN``; and at least ``MIN_SCORED`` (100) latents scored (fewer would be no evidence).  Reported but not
  criteria: the same with the max token's identity instead of its class, and neurons vs random directions.
"""

from __future__ import annotations

from pathlib import Path

from mechscope.reproduce.claims import Claim, Result, fmt

HOOK = "blocks.0.mlp.hook_post"
K = 20
RANDOM = 512
MARGIN = 0.10
MIN_SCORED = 100
SEED = 0


def measure(rows: int | None = None, k: int = K) -> dict:
    """The three scans and their scores (``rows``: the first rows of the sample; ``None``: all)."""
    from safetensors.torch import load_file

    from mechscope.transformer.features import feature_contexts
    from mechscope.transformer.monosemanticity import monosemanticity, random_directions
    from mechscope.zoo.dictionaries import load_dictionary
    from mechscope.zoo.organisms.mlp_sae_recipe import SAMPLE
    from mechscope.zoo.registry import bundle_dir, load_language_model

    model, tok = load_language_model("mlp-1l")
    sae, _ = load_dictionary("mlp-1l-sae")
    tokens = load_file(str(bundle_dir() / SAMPLE))["tokens"].long()[:rows]
    d = model.cfg.d_mlp
    scans = {"neurons": feature_contexts(model, tokens, HOOK, k=k, tokenizer=tok),
             "latents": feature_contexts(model, tokens, HOOK, sae=sae, k=k, tokenizer=tok),
             "random_directions": feature_contexts(model, tokens, HOOK, units=random_directions(RANDOM, d, SEED),
                                                   k=k, tokenizer=tok)}
    return {"tokens": int(tokens.numel()), "scans": scans,
            "class": {n: monosemanticity(s, tok, "class") for n, s in scans.items()},
            "token": {n: monosemanticity(s, tok, "token") for n, s in scans.items()}}


def check(out: Path, rows: int | None = None) -> Result:
    m = measure(rows)
    cls, ident = m["class"], m["token"]
    mean = {n: s.mean for n, s in cls.items()}
    conditions = {
        "latents_above_neurons_by_margin": mean["latents"] >= mean["neurons"] + MARGIN,
        "latents_above_random_by_margin": mean["latents"] >= mean["random_directions"] + MARGIN,
        "enough_latents_scored": cls["latents"].scored >= MIN_SCORED,
    }
    numbers = {
        "tokens": m["tokens"], "k": K, "margin": MARGIN,
        "class_concentration": {n: round(v, 4) for n, v in mean.items()},
        "token_concentration": {n: round(s.mean, 4) for n, s in ident.items()},
        "scored": {n: f"{s.scored}/{s.units}" for n, s in cls.items()},
        "latents_minus_neurons": round(mean["latents"] - mean["neurons"], 4),
        "latents_minus_random": round(mean["latents"] - mean["random_directions"], 4),
        "neurons_minus_random": round(mean["neurons"] - mean["random_directions"], 4),
        "conditions": conditions,
    }
    controls = {"random_directions_class_concentration": round(mean["random_directions"], 4),
                "random_directions_token_concentration": round(ident["random_directions"].mean, 4)}
    summary = (f"top-{K} max-token class concentration: latents {fmt(mean['latents'])} vs neurons "
               f"{fmt(mean['neurons'])}, random directions {fmt(mean['random_directions'])} (token identity: "
               f"{fmt(ident['latents'].mean)} / {fmt(ident['neurons'].mean)} / {fmt(ident['random_directions'].mean)})")
    return Result(numbers, all(conditions.values()), controls=controls, summary=summary, note=(
        f"Held-out sample, {m['tokens']} tokens. Per unit: fraction of its top-{K} contexts whose max token is in "
        f"its most common coarse token class; mean over units with {K} positive contexts (latents that fire fewer "
        f"than {K} times on the sample are not scored). Random directions: {RANDOM} seeded unit vectors in the "
        "512-d post-GELU space, uncentred."))


CLAIM = Claim(
    name="dictionary-features-monosemantic",
    paper="Towards Monosemanticity (Bricken et al. 2023)",
    statement="the latents of a sparse autoencoder on mlp-1l's MLP are more monosemantic than its neurons: their "
              "top contexts concentrate more on one token class",
    criterion=f"mean top-{K} max-token class concentration of latents >= neurons' + {MARGIN} and >= random "
              f"directions' + {MARGIN}, with >= {MIN_SCORED} latents scored",
    check=check,
)

__all__ = ["CLAIM", "check", "measure"]
