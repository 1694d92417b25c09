import json

import torch

from mechscope.units import file_stem
from mechscope.vision.circuits.reports import attribution_report, weights_report
from mechscope.zoo.registry import load


def test_weights_and_attribution_reports_save_what_the_verbs_wrote(tmp_path):
    net = load("shapes", weights="random", seed=0, device="cpu")
    w = weights_report(net, "conv2d1", "conv2d2:3", 64, nmf=2)
    assert len(w.strongest) == 8 and w.norms == sorted(w.norms, reverse=True)
    assert [p.name for p in w.save(tmp_path)] == ["conv2d2_3_from_conv2d1_weights.png",
                                                  "conv2d2_3_from_conv2d1_nmf.png",
                                                  "conv2d2_3_from_conv2d1_weights.json"]
    assert json.loads((tmp_path / "conv2d2_3_from_conv2d1_weights.json").read_text())["shape"] == list(w.weights.shape)
    a = attribution_report(net, "conv2d1:3", "conv2d0", torch.rand(1, 3, 64, 64), top=4, about={"index": 7})
    assert list(a.payload) == ["unit", "source", "index", "value", "top"] and len(a.payload["top"]) == 4
    assert sorted(p.name for p in a.save(tmp_path) if "weights" not in p.name) == [
        "conv2d1_3_from_conv2d0.json", "conv2d1_3_from_conv2d0_map.png", "conv2d1_3_from_conv2d0_top.png"]
    assert file_stem("a:1@2,3") == "a_1_at_2_3"
