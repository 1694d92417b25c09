"""The modality-table figure: one or several units, saved atomically as a PNG; bad input refused."""

import pytest
import torch

from mechscope.errors import MechscopeError
from mechscope.vision.multimodal import plot_modality_table


def test_one_unit_and_several_units(tmp_path):
    table = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    table[2, 4, 1] = float("nan")                                     # an empty cell stays blank
    fig = plot_modality_table(table, 1, [f"c{i}" for i in range(5)], ["picture", "sketch", "word"],
                              path=tmp_path / "one.png")
    assert len(fig.axes) == 2                                         # the panel and the colour bar
    assert (tmp_path / "one.png").read_bytes()[:4] == b"\x89PNG"
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == 14 and f"{float(table[0, 0, 1]):.1f}" in texts
    fig = plot_modality_table(table, [0, 1, 2, 3], columns=2)
    assert len(fig.axes) == 5


@pytest.mark.parametrize("call, message", [
    (lambda: plot_modality_table(torch.zeros(2, 3), 0), r"\[modalities, concepts, units\]"),
    (lambda: plot_modality_table(torch.zeros(2, 3, 4), [1, 4]), r"\[4\] are outside 0\.\.3"),
    (lambda: plot_modality_table(torch.zeros(2, 3, 4), []), "at least one"),
    (lambda: plot_modality_table(torch.zeros(2, 3, 4), 0, ["a", "b"]), "3 concept names and 2 modality names"),
])
def test_bad_input_is_refused(call, message):
    with pytest.raises(MechscopeError, match=message):
        call()
