"""The natural-text runs of the ICL claims: the attention-only recipe without its curriculum, probed by the same rule
as the bundled organisms, over a longer run (20000 steps)."""

from mechscope.zoo.organisms.attn_only_recipe import AttnOnlyRecipe, natural_recipe


def test_natural_recipe_drops_the_curriculum_and_keeps_everything_else():
    r = natural_recipe(2)
    assert r.name == "attn-only-2l-natural" and AttnOnlyRecipe(n_layers=2).name == "attn-only-2l"
    assert [r.synthetic_share(s) for s in (0, 999, 5999)] == [0.0, 0.0, 0.0]
    assert r.repeat_prob == 0.3 and r.tokenizer_from == "attn_only_2l.tokenizer.json"
    assert r.steps == 20_000 and r.probe_steps() == AttnOnlyRecipe(n_layers=2, steps=20_000).probe_steps()


def test_probe_steps_start_at_zero_and_are_log_spaced_then_every_probe_every():
    steps = AttnOnlyRecipe().probe_steps()
    assert steps[:4] == [0, 10, 12, 14] and steps[-1] == 6000 and 500 in steps and 5500 in steps
    assert len(steps) == len(set(steps)) and 40 <= len(steps) <= 55
    assert AttnOnlyRecipe(log_probes=0).probe_steps() == [0, *range(500, 6001, 500)]
