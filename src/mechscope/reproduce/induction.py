"""Claims (A Mathematical Framework for Transformer Circuits, Elhage et al. 2021) on the bundled attention-only
organisms.  Five claims share one measurement (``measure``, cached per process): head scores on ``[BOS] r r``
(``transformer.heads``), K-composition, OV copying scores (``transformer.circuits``, on the LayerNorm-folded
model) and the ablation of the previous-token head.

* ``two-layer-induction-heads``: the 2-layer model has a layer-1 induction head and a layer-0 previous-token
  head; the 1-layer model has no induction head;
* ``k-composition-prev-to-induction``: the strongest K-composition into the induction head comes from that
  previous-token head;
* ``induction-head-copies``: the induction head's full OV circuit copies (eigenvalue copying score);
* ``ablating-prev-token-head``: zero-ablating the previous-token head(s) — every layer-0 head whose
  previous-token score reaches ``MIN_PREVIOUS`` — collapses the induction score (the strongest one alone is
  reported too: a model with two such heads keeps part of its induction through the other);
* ``one-layer-heads-copy``: most of the 1-layer model's heads copy.
"""

from __future__ import annotations

from contextlib import ExitStack
from functools import lru_cache
from pathlib import Path

import torch

from mechscope.reproduce.claims import Claim, Result
from mechscope.units import Head, parse_head

PAPER = "A Mathematical Framework for Transformer Circuits (Elhage et al., 2021)"
MIN_INDUCTION, MIN_PREVIOUS, MAX_ONE_LAYER_INDUCTION = 0.4, 0.4, 0.1
MIN_COPYING, MAX_ABLATED_SHARE, MIN_COPYING_HEADS_SHARE = 0.5, 0.5, 0.5
REPEAT_LEN, ROWS = 50, 32


def _tokens(model, bos: int) -> torch.Tensor:
    from mechscope.transformer.heads import repeated_tokens

    return repeated_tokens(model.cfg.d_vocab, min(REPEAT_LEN, (model.cfg.n_ctx - 1) // 2), ROWS, bos=bos, seed=7,
                           low=3)


@lru_cache(maxsize=1)
def measure() -> dict:
    """Every number the five claims read (plain Python values)."""
    from mechscope.transformer.circuits import composition_baseline, composition_scores, copying_scores
    from mechscope.transformer.heads import ablate_head, ablation_effect, head_scores
    from mechscope.zoo.attn_only import fold_layer_norm
    from mechscope.zoo.registry import bundled_tokenizer, load

    out: dict = {}
    for name in ("attn-only-1l", "attn-only-2l"):
        model = load(name, device="cpu")
        tokens = _tokens(model, bundled_tokenizer(name).bos_id)
        scores = head_scores(model, tokens)
        folded = fold_layer_norm(model)
        out[name] = {"scores": {k: v.tolist() for k, v in scores.items()},
                     "copying": copying_scores(folded).tolist()}
        if model.cfg.n_layers == 2:
            ind = scores["induction"][1]
            prev = scores["previous_token"][0]
            h_ind, h_prev = int(ind.argmax()), int(prev.argmax())
            k_comp = composition_scores(folded, "k")[0, :, 1, h_ind]          # every layer-0 head into h_ind
            effect = ablation_effect(model, 0, h_prev, tokens)
            prev_heads = [h for h in range(model.cfg.n_heads) if float(prev[h]) >= MIN_PREVIOUS] or [h_prev]
            with ExitStack() as stack:
                for h in prev_heads:
                    stack.enter_context(ablate_head(model, 0, h))
                all_ablated = head_scores(model, tokens)["induction"][1, h_ind]
            out[name].update({
                "induction_head": Head.at(1, h_ind).short, "previous_token_head": Head.at(0, h_prev).short,
                "previous_token_heads": [Head.at(0, h).short for h in prev_heads],
                "k_composition_into_induction": k_comp.tolist(),
                "k_composition_baseline": composition_baseline(model.cfg.d_model, model.cfg.d_head),
                "induction_after_ablation": float(effect["induction_after"][1, h_ind]),
                "induction_after_ablating_all": float(all_ablated),
                "loss_before": float(effect["loss_before"]), "loss_after": float(effect["loss_after"]),
            })
    return out


def _r(x: float) -> float:
    return round(float(x), 3)


def _exist(out: Path) -> Result:
    m = measure()
    two, one = m["attn-only-2l"], m["attn-only-1l"]
    ind = max(two["scores"]["induction"][1])
    prev = max(two["scores"]["previous_token"][0])
    one_ind = max(one["scores"]["induction"][0])
    numbers = {"induction_head": two["induction_head"], "induction_score": _r(ind),
               "previous_token_head": two["previous_token_head"], "previous_token_score": _r(prev),
               "best_layer1_previous_token": _r(max(two["scores"]["previous_token"][1])),
               "one_layer_best_induction": _r(one_ind),
               "scores_2l": {k: [[_r(v) for v in row] for row in rows] for k, rows in two["scores"].items()}}
    passed = ind >= MIN_INDUCTION and prev >= MIN_PREVIOUS and one_ind <= MAX_ONE_LAYER_INDUCTION
    return Result(numbers, passed, [], f"Scores: mean attention on the induction / previous-token diagonal over "
                  f"{ROWS} rows of [BOS] + 50 random tokens repeated once.")


def _k_composition(out: Path) -> Result:
    two = measure()["attn-only-2l"]
    k = two["k_composition_into_induction"]
    prev = parse_head(two["previous_token_head"]).head
    best = max(range(len(k)), key=lambda i: k[i])
    numbers = {"induction_head": two["induction_head"], "previous_token_head": two["previous_token_head"],
               "k_composition_from_layer0": [_r(v) for v in k], "strongest_from": Head.at(0, best).short,
               "random_baseline": _r(two["k_composition_baseline"])}
    return Result(numbers, best == prev, [], "K-composition ||W_QK^T W_OV|| / (||W_QK|| ||W_OV||) on the "
                  "LayerNorm-folded weights (transformer.circuits.composition_scores).")


def _copies(out: Path) -> Result:
    two = measure()["attn-only-2l"]
    induction = parse_head(two["induction_head"])
    score = two["copying"][induction.layer_index][induction.head]
    return Result({"induction_head": two["induction_head"], "copying_score": _r(score),
                   "all_heads": [[_r(v) for v in row] for row in two["copying"]]}, score >= MIN_COPYING, [],
                  "Copying score Re(sum of eigenvalues) / sum |eigenvalues| of W_E W_V W_O W_U, from the "
                  "d_head x d_head product.")


def _ablation(out: Path) -> Result:
    two = measure()["attn-only-2l"]
    induction = parse_head(two["induction_head"])
    before = two["scores"]["induction"][induction.layer_index][induction.head]
    after = two["induction_after_ablating_all"]
    return Result({"previous_token_heads": two["previous_token_heads"], "induction_head": two["induction_head"],
                   "induction_before": _r(before), "induction_after": _r(after),
                   "strongest_previous_token_head": two["previous_token_head"],
                   "induction_after_ablating_it_alone": _r(two["induction_after_ablation"]),
                   "loss_second_repeat_before": _r(two["loss_before"]),
                   "loss_second_repeat_after_ablating_it_alone": _r(two["loss_after"])},
                  after <= MAX_ABLATED_SHARE * before, [], "Zero ablation of the output (hook_z) of every layer-0 "
                  f"head with previous-token score >= {MIN_PREVIOUS}, on the same tokens; the loss is over the "
                  "second copy's predictions.")


def _one_layer_copying(out: Path) -> Result:
    one = measure()["attn-only-1l"]["copying"][0]
    share = sum(v >= MIN_COPYING for v in one) / len(one)
    return Result({"copying_scores": [_r(v) for v in one], "share_copying": _r(share)},
                  share > MIN_COPYING_HEADS_SHARE, [], "A head copies when its copying score is at least "
                  f"{MIN_COPYING}.")


CLAIMS = (
    Claim("two-layer-induction-heads", PAPER,
          "the 2-layer organism has a layer-1 induction head and a layer-0 previous-token head; the 1-layer "
          "organism has no induction head",
          f"best layer-1 induction score >= {MIN_INDUCTION}, best layer-0 previous-token score >= {MIN_PREVIOUS}, "
          f"best 1-layer induction score <= {MAX_ONE_LAYER_INDUCTION}", _exist),
    Claim("k-composition-prev-to-induction", PAPER,
          "the strongest K-composition into the induction head comes from the previous-token head",
          "argmax over layer-0 heads of K-composition into the induction head = the previous-token head",
          _k_composition),
    Claim("induction-head-copies", PAPER, "the induction head's OV circuit copies (positive eigenvalues)",
          f"copying score of the induction head >= {MIN_COPYING}", _copies),
    Claim("ablating-prev-token-head", PAPER, "ablating the previous-token head(s) collapses the induction score",
          f"induction score after zero-ablating every layer-0 head with previous-token score >= {MIN_PREVIOUS} "
          f"<= {MAX_ABLATED_SHARE:g} x before",
          _ablation),
    Claim("one-layer-heads-copy", PAPER, "most heads of the 1-layer model copy",
          f"more than {MIN_COPYING_HEADS_SHARE:.0%} of its heads have copying score >= {MIN_COPYING}",
          _one_layer_copying),
)
