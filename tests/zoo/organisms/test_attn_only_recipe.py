import numpy as np
import pytest
import torch

from mechscope.zoo.organisms.attn_only_recipe import (SPECIALS, AttnOnlyRecipe, batch_at, repeat_row,
                                                      with_repeat)


def test_curriculum_share_falls_from_all_synthetic_to_the_final_share():
    r = AttnOnlyRecipe(synthetic_steps=100, ramp_steps=200, final_synthetic=0.25)
    assert r.synthetic_share(0) == r.synthetic_share(99) == 1.0
    assert r.synthetic_share(200) == pytest.approx(1 - 0.5 * 0.75)
    assert r.synthetic_share(300) == r.synthetic_share(10_000) == pytest.approx(0.25)


def test_repeat_rows_repeat_a_span_of_non_special_tokens_after_bos():
    g = torch.Generator().manual_seed(0)
    row = repeat_row(g, 64, 100, bos=0)
    assert row[0] == 0 and int(row[1:].min()) >= SPECIALS and len(row) == 64
    period = next(n for n in range(10, 41) if torch.equal(row[1 + n: 64], row[1: 64 - n]))
    assert 10 <= period <= 40


def test_with_repeat_copies_a_stretch_further_on():
    row = torch.arange(128)
    out = with_repeat(row, torch.Generator().manual_seed(3))
    changed = (out != row).nonzero()[:, 0]
    assert len(changed) >= 8 and torch.equal(out[:changed[0]], row[:changed[0]])
    start = int(changed[0])
    src = int(out[start])          # the copied stretch starts at an earlier position of the row
    assert src < start and torch.equal(out[start: start + 8], row[src: src + 8])


def test_batches_are_a_pure_function_of_the_step_and_follow_the_curriculum():
    rows = np.arange(50 * 16, dtype=np.uint16).reshape(50, 16) % 90 + 3
    r = AttnOnlyRecipe(n_ctx=16, d_vocab=100, batch_size=64, synthetic_steps=10, ramp_steps=10, final_synthetic=0.0,
                       repeat_prob=0.0)
    a, _ = batch_at(5, r, rows, bos=0)
    b, _ = batch_at(5, r, rows, bos=0)
    assert torch.equal(a, b)
    natural = {tuple(x) for x in rows.astype(np.int64).tolist()}
    assert not any(tuple(x) in natural for x in a.tolist())          # synthetic phase: no natural rows
    late, _ = batch_at(25, r, rows, bos=0)
    assert all(tuple(x) in natural for x in late.tolist())            # after the ramp: only natural rows
