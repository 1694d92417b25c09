import pytest
import torch

from mechscope.data.shapes import ShapesDataset
from mechscope.errors import MechscopeError
from mechscope.vision.evidence.polysemanticity import (CONCEPTS, concept_labels, entropy_bits, from_top_examples,
                                                       image_activations, polysemanticity)


def test_entropy_of_hand_made_units():
    labels = torch.tensor([0] * 4 + [1] * 4 + [2] * 4 + [3] * 4)
    one_label = torch.zeros(16)
    one_label[:4] = torch.tensor([4.0, 3.0, 2.0, 1.0])                 # fires only on label 0
    uniform = torch.zeros(16)
    uniform[[0, 4, 8, 12]] = torch.tensor([1.0, 2.0, 3.0, 4.0])        # one image of each of 4 labels
    dead = torch.zeros(16)
    p = polysemanticity(torch.stack([one_label, uniform, dead], 1), labels, k=4, n_labels=4)
    assert p.entropy[0] == 0 and p.effective[0] == 1
    assert p.entropy[1] == pytest.approx(2.0) and p.effective[1] == pytest.approx(4.0)
    assert p.live.tolist() == [True, True, False]                      # live: positive on >= k images
    assert p.top_labels(0) == [(0, 1.0)] and p.top_index[0].tolist() == [0, 1, 2, 3]
    assert p.median() == 0.0 and p.median(live_only=False) == pytest.approx(p.entropy.median().item())
    assert entropy_bits(torch.tensor([[1, 1, 1, 1, 0]])).item() == pytest.approx(2.0)


def test_from_top_examples_matches_the_measure():
    acts, labels = torch.rand(30, 5), torch.randint(0, 3, (30,))
    p = polysemanticity(acts, labels, k=6, n_labels=3)
    q = from_top_examples(p.top_index, labels[p.top_index], 3)
    assert torch.equal(p.entropy, q.entropy) and torch.equal(p.counts, q.counts)


def test_concept_labels_of_the_shapes_world():
    _, labels = ShapesDataset(120, seed=3).sample(range(120))
    c = concept_labels(labels)
    assert len(CONCEPTS) == 23 and c.min() >= 0 and c.max() < 23
    assert torch.equal(c[labels["kind"] == 0], labels["shape"][labels["kind"] == 0])
    straight = (labels["kind"] == 1) & (labels["curve"] >= 32)
    assert (c[straight] == CONCEPTS.index("straight stroke")).all()
    assert set(c[labels["kind"] == 2].tolist()) <= set(range(19, 23))


def test_bad_input_and_image_activations():
    with pytest.raises(MechscopeError, match="k must be"):
        polysemanticity(torch.rand(4, 2), torch.zeros(4, dtype=torch.long), k=5)
    with pytest.raises(MechscopeError, match="acts"):
        polysemanticity(torch.rand(4), torch.zeros(4, dtype=torch.long), k=1)
    with pytest.raises(MechscopeError, match="labels"):
        concept_labels({"kind": torch.zeros(2)})
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = torch.rand(5, 3, 8, 8)
    acts = image_activations(net, "1", x, batch_size=2)
    assert acts.shape == (5, 4) and torch.allclose(acts, net(x).amax(dim=(2, 3)))
