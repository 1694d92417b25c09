import json

import pytest
import torch
from torch import nn

from mechscope.errors import MechscopeError
from mechscope.vision.circuits.banding import banding_comparison, excess, layer_banding, write_banding_report

pytestmark = pytest.mark.usefixtures("one_thread")


def _nets():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 1))
    control = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 8, 3), nn.Conv2d(8, 8, 1))
    with torch.no_grad():
        net[2].weight.copy_(torch.arange(3.0)[None, :].expand(8, 4, 3, 3))    # constant along columns: vertical
    return net, control


def test_comparison_finds_vertical_bands_by_construction_and_skips_1x1():
    net, control = _nets()
    record = banding_comparison(net, control)
    assert set(record["convs"]) == {"0", "2"} == set(record["untrained_convs"])
    assert record["convs"]["2"]["vertical"] == 1.0 and record["convs"]["2"]["horizontal"] == 0.0
    gap = record["excess"]["2"]
    assert gap["vertical"] == round(1.0 - record["untrained_convs"]["2"]["vertical"], 4) > 0.5
    assert gap["horizontal"] <= 0 and excess(record["convs"], record["untrained_convs"])["2"] == gap["banded"]
    only = banding_comparison(net, control, ["2"])
    assert set(only["convs"]) == {"2"}
    with pytest.raises(MechscopeError):
        banding_comparison(net, control, ["3"])        # a 1x1 conv has no banding
    with pytest.raises(MechscopeError):
        excess(layer_banding(net), {})


def test_report_writes_png_and_json(tmp_path):
    net, control = _nets()
    record = write_banding_report(net, control, tmp_path, "toy")
    assert (tmp_path / "toy_banding.png").stat().st_size > 0
    saved = json.loads((tmp_path / "toy_banding.json").read_text())
    assert saved["excess"] == record["excess"] and saved["threshold"] == 0.5
