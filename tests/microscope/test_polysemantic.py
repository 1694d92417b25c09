import torch

from mechscope.data.shapes import ShapesDataset
from mechscope.microscope import site
from mechscope.microscope.build import build
from mechscope.microscope.kinds import POLYSEMANTIC_UNITS, POLYSEMANTICITY
from mechscope.microscope.options import DatasetEvidence, Evidence
from mechscope.store import open_store, read_rows


def test_built_units_carry_a_polysemanticity_score_the_grid_sorts_by(tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.ReLU()).eval()
    build(net, "toy", ["1"], tmp_path, evidence=Evidence(steps=1, size=16, negative=False, tuning=False),
          dataset=DatasetEvidence(ShapesDataset(12, size=16), "shapes:12", examples_k=3), progress=False)
    with open_store(tmp_path) as store:
        units = read_rows(store, "figures", layer="1", kind=POLYSEMANTICITY.name)
        layer_wide, = read_rows(store, "figures", layer="1", kind=POLYSEMANTIC_UNITS.name)
        assert [r["channel"] for r in units] == [0, 1, 2]
        for r in units:
            s = r["settings"]
            assert s["score_name"] == "polysemanticity (bits)" and 0 <= s["score"] <= 2 ** 0.5 + 1
            assert s["effective_labels"] >= 1 and s["table"]["rows"] and s["dataset"] == "shapes:12"
        assert layer_wide["channel"] == -1 and layer_wide["png"] and len(layer_wide["settings"]["units"]) == 3
        page = site.render_layer(store, "toy", "1")
        assert "polysemanticity (bits)" in page and "most polysemantic" in page
        assert "Polysemanticity" in site.render_unit(store, "toy", "1", 0)


def test_a_dataset_without_labels_gets_no_polysemanticity(tmp_path):
    class Images:
        def batches(self, batch_size, start=0):
            x = torch.rand(6, 3, 16, 16)
            for i in range(start, 6, batch_size):
                yield list(range(i, min(i + batch_size, 6))), x[i:i + batch_size]

        def __getitem__(self, i):
            return torch.rand(3, 16, 16)

        def __len__(self):
            return 6

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU()).eval()
    build(net, "toy", ["1"], tmp_path, evidence=Evidence(steps=1, size=16, negative=False, tuning=False),
          dataset=DatasetEvidence(Images(), "images", examples_k=2), progress=False)
    with open_store(tmp_path) as store:
        assert not read_rows(store, "figures", kind=POLYSEMANTICITY.name)
