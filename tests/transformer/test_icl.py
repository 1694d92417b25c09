"""transformer.icl: the ICL score's bands, the curves read from probe records, and where a curve moves; and the
bundled attention-only cards' curves, whose final ICL score is reproduced on fresh held-out text."""

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.transformer.icl import (EARLY, LATE, curves, formation_step, icl_score, steepest_window,
                                       window_change)


def _probe(step, late_loss, induction, n_layers=2):
    position_loss = [3.0] * (LATE[0] - 1) + [late_loss] * (127 - LATE[0] + 1)
    return {"step": step, "held_out_loss": sum(position_loss) / 127, "position_loss": position_loss,
            "induction": [[0.0, 0.0]] * (n_layers - 1) + [[induction, 0.1]],
            "previous_token": [[0.2, 0.0]] * n_layers}


def test_icl_score_is_late_band_minus_early_band():
    loss = [float(t) for t in range(1, 128)]          # loss of token t is t
    early = sum(range(*EARLY)) / (EARLY[1] - EARLY[0])
    late = sum(range(*LATE)) / (LATE[1] - LATE[0])
    assert icl_score(loss) == pytest.approx(late - early, abs=1e-4)
    assert icl_score(loss, early=(1, 2), late=(127, 128)) == 126.0
    with pytest.raises(MechscopeError, match="position_loss has 50 entries"):
        icl_score([1.0] * 50)


def test_curves_read_probe_records_in_step_order_and_skip_old_ones():
    probes = [_probe(100, 1.0, 0.8), _probe(0, 3.0, 0.0), {"step": 50, "induction": [[0.0]], "held_out_loss": 3}]
    c = curves(probes)
    assert c["step"] == [0, 100] and c["icl"] == [0.0, -2.0] and c["induction"] == [0.1, 0.8]
    assert curves([_probe(0, 3.0, 0.3, n_layers=1)])["induction"] == [0.3]   # 1 layer: layer 0 is read
    with pytest.raises(MechscopeError, match="predates the ICL probes"):
        curves([{"step": 0, "induction": [[0.0]]}])
    with pytest.raises(MechscopeError, match="layers 0..1"):
        curves(probes, from_layer=2)


def test_formation_and_windows_on_a_falling_and_a_rising_curve():
    steps = [0, 10, 20, 40, 80, 160, 320]
    assert formation_step(steps, [0, 0, 0.2, 0.7, 0.9, 1.0, 1.0]) == 40
    assert formation_step(steps, [5, 5, 4, 3, 1, 1, 1]) == 40          # falling: half-way is 3
    assert window_change(steps, [5, 5, 4, 3, 1, 1, 1], 40) == -3        # from step 20 to step 80
    assert window_change(steps, [5, 5, 4, 3, 1, 1, 1], 320) == 0        # past the end: the last value
    assert steepest_window(steps, [5, 5, 4, 3, 1, 1, 1]) == {"center": 40, "start": 20, "end": 80, "change": -3}
    with pytest.raises(MechscopeError, match="steps must increase"):
        window_change([0, 0], [1, 2], 1)
    with pytest.raises(MechscopeError, match="factor must exceed 1"):
        window_change(steps, [0] * 7, 10, factor=1)


@pytest.mark.parametrize("name", ["attn-only-1l", "attn-only-2l"])
def test_bundled_cards_carry_the_curves_and_their_final_icl_holds_on_fresh_text(name):
    from safetensors.torch import load_file

    from mechscope.zoo.organisms.attn_only_recipe import position_losses
    from mechscope.zoo.registry import bundle_dir, bundled_card, load

    card = bundled_card(name)
    c = curves(card["probes"])
    assert c["step"][0] == 0 and c["step"][-1] == card["recipe"]["steps"]
    assert len(c["step"]) >= card["recipe"]["log_probes"]
    assert c["step"][1:12] == sorted(c["step"][1:12]) and c["step"][1] == 10   # log-spaced from step 10
    # fresh text: the last 256 held-out rows (the cards' probes read the first 256), bundled with mlp-1l
    rows = load_file(bundle_dir() / "mlp_1l.held_out_sample.safetensors")["tokens"].long()
    model = load(name, device="cpu")
    with torch.no_grad():
        loss = torch.cat([position_losses(model(rows[i: i + 64]), rows[i: i + 64]) for i in range(0, 256, 64)])
    fresh = icl_score(loss.mean(0).tolist())
    assert fresh == pytest.approx(c["icl"][-1], abs=0.15)
    assert fresh < 0   # later tokens are predicted better than early ones
