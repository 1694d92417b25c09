import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import mechscope  # noqa: E402
from mechscope.errors import MechscopeError, UnknownNameError  # noqa: E402
from mechscope.vision.circuits import graph as circuits  # noqa: E402
from mechscope.vision.circuits.graph import CircuitGraph, circuit_graph, upstream  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


def _net() -> nn.Sequential:
    """input (``0``) → conv 3→4 (``1``) → ReLU (``2``) → conv 4→2 (``3``), every weight small except:

    - unit ``3:0`` reads channel 2 with a positive kernel (norm 3) and channel 1 with a negative one (norm 1.5);
    - ``2:2`` reads input channel 0 positively (norm 2) and channel 1 negatively (norm 0.9);
    - ``2:1`` reads input channel 0 negatively (norm 1.2) and channel 2 positively (norm 0.6).
    """
    torch.manual_seed(0)
    net = nn.Sequential(nn.Identity(), nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.ReLU(),
                        nn.Conv2d(4, 2, 3, padding=1, bias=False))
    with torch.no_grad():
        for conv in (net[1], net[3]):
            conv.weight.uniform_(-0.01, 0.01)
        net[3].weight[0, 2] = 1.0
        net[3].weight[0, 1] = -0.5
        net[1].weight[2, 0] = torch.tensor([[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
        net[1].weight[2, 1] = -0.3
        net[1].weight[1, 0] = -0.4
        net[1].weight[1, 2] = 0.2
    return net


def test_upstream_ranks_the_excitatory_and_inhibitory_inputs_built_in():
    net = _net()
    rows = upstream(net, "3:0", "2", 12, k=4)
    assert [r.unit for r in rows[:2]] == ["2:2", "2:1"]
    assert (rows[0].sign, rows[1].sign) == ("+", "-")
    assert rows[0].excitatory == pytest.approx(3.0) and rows[1].inhibitory == pytest.approx(1.5)
    assert rows[0].inhibitory == 0.0 and rows[1].excitatory == 0.0
    torch.testing.assert_close(rows[0].weights, net[3].weight[0, 2].detach())  # adjacent: the kernel itself
    assert upstream(net, "3:0", "2", 12, k=1, by="excitatory")[0].unit == "2:2"
    assert upstream(net, "3:0", "2", 12, k=1, by="inhibitory")[0].unit == "2:1"
    assert len(upstream(net, "3:0", "2", 12, k=99)) == 4


def test_upstream_drops_channels_with_nothing_on_the_ranked_side():
    net = _net()
    with torch.no_grad():
        net[3].weight[0].clamp_(min=0)  # unit 0 now has no inhibitory input at all
    assert upstream(net, "3:0", "2", 12, k=4, by="inhibitory") == []


def test_circuit_graph_has_the_nodes_and_edges_built_in():
    g = circuit_graph(_net(), "3:0", ["2", "0"], 12, k=2)
    assert [(n.unit, n.depth) for n in g.nodes] == [("3:0", 0), ("2:2", 1), ("2:1", 1), ("0:0", 2),
                                                     ("0:1", 2), ("0:2", 2)]
    got = {(e.source, e.target, e.sign) for e in g.edges}
    assert got == {("2:2", "3:0", "+"), ("2:1", "3:0", "-"), ("0:0", "2:2", "+"), ("0:1", "2:2", "-"),
                   ("0:0", "2:1", "-"), ("0:2", "2:1", "+")}
    e = next(e for e in g.edges if (e.source, e.target) == ("0:0", "2:2"))
    assert e.strength == pytest.approx(2.0) and e.kernel == [[0.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    assert [len(level) for level in g.levels()] == [1, 2, 3]


def test_json_round_trip():
    g = circuit_graph(_net(), "3:0", ["2", "0"], (3, 12, 12), k=2)
    data = json.loads(json.dumps(g.to_json()))
    assert {"from", "to", "sign", "strength", "kernel"} <= set(data["edges"][0])
    assert data["nodes"][0] == {"unit": "3:0", "layer": "3", "depth": 0}
    assert CircuitGraph.from_json(data) == g
    with pytest.raises(MechscopeError, match="circuit graph"):
        CircuitGraph.from_json({"root": "3:0"})


def test_draw_without_featvis_writes_a_png(tmp_path):
    g = circuit_graph(_net(), "3:0", ["2", "0"], 12, k=2)
    out = g.draw(tmp_path / "sub" / "circuit.png", featvis=False)
    assert out.read_bytes().startswith(PNG)
    assert [p.name for p in out.parent.iterdir()] == ["circuit.png"]  # no temporary file left behind


def test_draw_renders_every_node_in_one_batch(tmp_path, monkeypatch):
    calls = []

    class Fake:
        def __init__(self, n: int, size: int) -> None:
            self.final = torch.rand(n, 3, size, size)

    def fake_render(model, units, *, size, steps, progress):
        calls.append((list(units), size, steps, progress))
        return Fake(len(units), size)

    monkeypatch.setattr(circuits, "render_units", fake_render)
    g = circuit_graph(_net(), "3:0", ["2"], 12, k=2)
    assert g.draw(tmp_path / "c.png", steps=5).read_bytes().startswith(PNG)
    assert calls == [(["3:0", "2:2", "2:1"], 12, 5, False)]
    with pytest.raises(MechscopeError, match="needs the model"):
        CircuitGraph.from_json(g.to_json()).draw(tmp_path / "d.png")


def test_clear_errors():
    net = _net()
    with pytest.raises(UnknownNameError, match="Valid names: 0, 1, 2, 3"):
        upstream(net, "3:0", "nope", 12)
    with pytest.raises(UnknownNameError):
        circuit_graph(net, "33:0", ["2"], 12)
    with pytest.raises(MechscopeError, match="out of range"):
        circuit_graph(net, "3:7", ["2"], 12)
    with pytest.raises(MechscopeError, match="at least one"):
        circuit_graph(net, "3:0", [], 12)
    with pytest.raises(MechscopeError, match="repeated"):
        circuit_graph(net, "3:0", ["2", "2"], 12)
    with pytest.raises(MechscopeError, match="k is"):
        upstream(net, "3:0", "2", 12, k=0)
    with pytest.raises(MechscopeError, match="by must"):
        upstream(net, "3:0", "2", 12, by="signed")  # type: ignore[arg-type]
    with pytest.raises(MechscopeError, match="expected a unit"):
        upstream(net, "3", "2", 12)


def test_shapes_organism_circuit_of_mixed3b():
    net = mechscope.load("shapes")
    g = circuit_graph(net, "mixed3b:5", ["mixed3a"], 64, k=3)
    assert len(g.nodes) == 4 and len(g.edges) == 3
    assert all(n.unit.startswith("mixed3a:") for n in g.nodes[1:])
    assert all(e.target == "mixed3b:5" and e.sign in "+-" for e in g.edges)
    strengths = [e.strength for e in g.edges]
    assert strengths == sorted(strengths, reverse=True) and strengths[-1] > 0
