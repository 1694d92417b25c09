import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

import mechscope  # noqa: E402
from mechscope.errors import MechscopeError, UnknownNameError  # noqa: E402
from mechscope.vision.circuits.weights import (Linearized, banding, banding_plot, expanded_weights, kernel_banding, kernel_between,  # noqa: E402
                                      kernel_heatmap, unit_weights)
from mechscope.vision.circuits.nmf import nmf_factors, nmf_rgb  # noqa: E402


def _compose(w2: torch.Tensor, w1: torch.Tensor) -> torch.Tensor:
    """Explicit kernel of conv(w2) after conv(w1) (cross-correlations): ``E[o, i, j+k] += W2[o, m, j] W1[m, i, k]``."""
    o, _, k2h, k2w = w2.shape
    _, i, k1h, k1w = w1.shape
    out = torch.zeros(o, i, k1h + k2h - 1, k1w + k2w - 1, dtype=torch.float64)
    for a in range(k2h):
        for b in range(k2w):
            out[:, :, a:a + k1h, b:b + k1w] += torch.einsum("om,mikl->oikl", w2[:, :, a, b].double(), w1.double())
    return out


def _stack(*middle: nn.Module, k1: int = 3, k2: int = 3, c: tuple[int, int, int] = (3, 5, 4)) -> nn.Sequential:
    return nn.Sequential(nn.Identity(), nn.Conv2d(c[0], c[1], k1, padding=k1 // 2), *middle,
                         nn.Conv2d(c[1], c[2], k2, padding=k2 // 2)).double()


def test_expanded_weights_of_two_linear_convs_equal_their_explicit_composition():
    net = _stack()
    explicit = _compose(net[2].weight.detach(), net[1].weight.detach())
    for ch in range(4):
        got = expanded_weights(net, "0", f"2:{ch}", (3, 16, 16))
        assert got.shape == (3, 5, 5)
        torch.testing.assert_close(got, explicit[ch])


def test_expanded_weights_through_a_1x1_bottleneck_are_the_matrix_product():
    net = _stack(k1=1, k2=1)
    got = expanded_weights(net, "0", "2:3", 8)
    assert got.shape == (3, 1, 1)
    product = net[2].weight[:, :, 0, 0] @ net[1].weight[:, :, 0, 0]  # [4, 3]
    torch.testing.assert_close(got[:, 0, 0], product[3].detach())


def test_relu_is_the_identity_in_the_linearized_model():
    net = _stack(nn.ReLU())
    explicit = _compose(net[3].weight.detach(), net[1].weight.detach())
    torch.testing.assert_close(expanded_weights(net, "0", "3:2", 16), explicit[2])
    with Linearized():  # the forward semantics themselves
        x = torch.randn(1, 2, 4, 4)
        assert torch.equal(torch.relu(x), x) and torch.equal(nn.ReLU(inplace=True)(x.clone()), x)
        torch.testing.assert_close(nn.MaxPool2d(3, 1, 1)(x), nn.AvgPool2d(3, 1, 1, count_include_pad=False)(x))


def test_max_pool_stands_in_as_average_pool():
    torch.manual_seed(1)
    with_max = _stack(nn.ReLU(), nn.MaxPool2d(2))
    with_avg = _stack(nn.AvgPool2d(2))
    with_avg[1].load_state_dict(with_max[1].state_dict())
    with_avg[3].load_state_dict(with_max[4].state_dict())
    torch.testing.assert_close(expanded_weights(with_max, "0", "4:1", 16), expanded_weights(with_avg, "0", "3:1", 16))


def test_adjacent_expanded_weights_are_the_kernel_and_bias_free():
    net = _stack(nn.ReLU())
    with torch.no_grad():
        net[3].bias.fill_(5.0)
    torch.testing.assert_close(expanded_weights(net, "2", "3:1", 12), net[3].weight[1].detach())
    torch.testing.assert_close(unit_weights(net, "2", "3:1"), net[3].weight[1].detach())


def test_kernel_between_reads_the_conv_slice_and_checks_adjacency():
    net = _stack(nn.ReLU())
    assert torch.equal(kernel_between(net, "2:4", "3:1"), net[3].weight[1, 4].detach())
    assert torch.equal(kernel_between(net, "2:4", "3:1", input_size=8), net[3].weight[1, 4].detach())
    with pytest.raises(MechscopeError, match="not the input"):  # same width, but a ReLU in between
        kernel_between(net, "1:4", "3:1", input_size=8)
    with pytest.raises(MechscopeError, match="ReLU"):
        kernel_between(net, "1:0", "2:1")
    with pytest.raises(MechscopeError, match="not adjacent"):  # widths differ: 4 channels into a 5-channel conv
        kernel_between(nn.Sequential(nn.Conv2d(3, 4, 1), nn.Conv2d(5, 2, 1)), "0:0", "1:1")
    with pytest.raises(MechscopeError, match="not the input"):
        kernel_between(net, "0:0", "3:1", input_size=8)


def test_grouped_convolution_weights_are_zero_outside_the_group():
    net = nn.Sequential(nn.Identity(), nn.Conv2d(4, 4, 3, groups=2))
    w = unit_weights(net, "0", "1:3")
    assert w.shape == (4, 3, 3)
    assert torch.equal(w[2:], net[1].weight[3].detach()) and not w[:2].any()


def test_unknown_names_list_the_closest_valid_ones():
    model = mechscope.load("shapes", device="cpu")
    with pytest.raises(UnknownNameError, match="mixed3a_3x3_pre_relu"):
        kernel_between(model, "mixed3a_3x3_bottleneck:1", "mixed3a_3x3_pre_reluu:5")
    with pytest.raises(UnknownNameError, match="mixed3a"):
        expanded_weights(model, "mixed3aa", "mixed3b:5", 64)
    with pytest.raises(MechscopeError, match="out of range"):
        kernel_between(model, "mixed3a_3x3_bottleneck:1", "mixed3a_3x3_pre_relu:500")
    with pytest.raises(MechscopeError, match="Concat"):
        kernel_between(model, "mixed3a:1", "mixed3a_pre_relu:3")


@pytest.fixture(scope="module")
def shapes():
    return mechscope.load("shapes", device="cpu")


def test_organism_adjacent_kernel_is_the_stored_conv_weight(shapes):
    got = kernel_between(shapes, "mixed3a_3x3_bottleneck:12", "mixed3a_3x3_pre_relu:5", input_size=64)
    assert torch.equal(got, shapes.mixed3a.b3x3.conv.weight[5, 12].detach())
    # the post-ReLU name reads the same convolution; so does the expanded weight of the adjacent pair
    assert torch.equal(kernel_between(shapes, "mixed3a_3x3_bottleneck:12", "mixed3a_3x3:5"), got)
    torch.testing.assert_close(expanded_weights(shapes, "mixed3a_3x3_bottleneck", "mixed3a_3x3_pre_relu:5", 64)[12],
                               got)


def test_organism_expanded_weights_from_mixed3a_to_mixed3b(shapes):
    # mixed3b channels: 1x1 0..47, 3x3 48..143, 5x5 144..175, pool 176..207; mixed3a has 128 channels
    assert expanded_weights(shapes, "mixed3a", "mixed3b:5", 64).shape == (128, 1, 1)
    assert expanded_weights(shapes, "mixed3a", "mixed3b:100", 64).shape == (128, 3, 3)
    assert expanded_weights(shapes, "mixed3a", "mixed3b:150", 64).shape == (128, 5, 5)
    assert expanded_weights(shapes, "mixed3a", "mixed3b:190", 64).shape == (128, 3, 3)
    # through the bottleneck: the explicit product of the 3x3 kernel and the 1x1 bottleneck
    w3 = shapes.mixed3b.b3x3.conv.weight.detach()[100 - 48]  # [64, 3, 3]
    w1 = shapes.mixed3b.b3x3_bottleneck.conv.weight.detach()[:, :, 0, 0]  # [64, 128]
    torch.testing.assert_close(expanded_weights(shapes, "mixed3a", "mixed3b:100", 64),
                               torch.einsum("mkl,mi->ikl", w3, w1), rtol=1e-4, atol=1e-6)


def test_nmf_rgb_recovers_two_planted_factors(tmp_path):
    gen = torch.Generator().manual_seed(0)
    left = torch.zeros(5, 5)
    left[:, :2] = 1.0
    right = torch.zeros(5, 5)
    right[:, 3:] = 1.0
    a, b = torch.rand(6, generator=gen), torch.rand(6, generator=gen)
    w = a[:, None, None] * left - b[:, None, None] * right  # excitatory left, inhibitory right
    res = nmf_rgb(w, n=2)
    assert res.factors.shape == (2, 5, 5) and res.components.shape == (2, 12) and res.image.shape == (3, 5, 5)
    assert res.image.min() >= 0 and res.image.max() == 1 and not res.image[2].any()
    assert res.error < 1e-3
    maps = res.factors / res.factors.flatten(1).amax(1)[:, None, None]
    assert {(maps[k] > 0.5).nonzero()[:, 1].unique().tolist().__str__() for k in range(2)} == {"[0, 1]", "[3, 4]"}
    png = tmp_path / "nmf.png"
    assert res._repr_png_().startswith(b"\x89PNG") and res.save(png, scale=4) == png and png.stat().st_size > 0
    full = nmf_rgb(torch.randn(8, 3, 3, generator=gen))
    assert full.image.shape == (3, 3, 3) and 0 <= full.image.min() and full.image.max() <= 1


def test_nmf_factors_share_components_across_a_family():
    ws = [torch.randn(4, 3, 3) for _ in range(5)]
    res = nmf_factors(ws, n=2)
    assert res.factors.shape == (5, 2, 3, 3) and res.components.shape == (2, 8) and res.image.shape == (5, 3, 3, 3)
    with pytest.raises(MechscopeError, match="one shape"):
        nmf_factors([torch.randn(4, 3, 3), torch.randn(4, 5, 5)])


def test_banding_score_tells_horizontal_from_vertical_and_random():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(16, 8, 5, 1, generator=gen).expand(16, 8, 5, 5)  # constant along each row
    h = banding(rows)
    assert h.horizontal == pytest.approx(1.0) and h.vertical == pytest.approx(0.0) and h.score == pytest.approx(1.0)
    assert banding(rows.transpose(-1, -2)).score == pytest.approx(-1.0)
    rand = banding(torch.randn(64, 32, 5, 5, generator=gen))
    assert abs(rand.score) < 0.05 and rand.horizontal == pytest.approx(4 / 24, abs=0.03)
    assert banding(torch.zeros(2, 3, 3)).score == 0.0


def test_kernel_banding_scores_each_kernel_so_opposite_bands_do_not_cancel():
    gen = torch.Generator().manual_seed(0)
    rows = torch.randn(8, 4, 3, 1, generator=gen).expand(8, 4, 3, 3)          # horizontal bands
    both = torch.cat([rows, rows.transpose(-1, -2)])                          # half of them turned vertical
    assert banding(both).score == pytest.approx(0.0, abs=1e-6)                # pooled: cancels
    per = kernel_banding(both)
    assert per.score.shape == (64,) and per.score[:32].tolist() == pytest.approx([1.0] * 32)
    assert per.shares(0.5) == {"horizontal": 0.5, "vertical": 0.5, "banded": 1.0}
    rand = kernel_banding(torch.randn(2000, 5, 5, generator=gen))
    assert float(rand.horizontal.mean()) == pytest.approx(4 / 24, abs=0.02) and rand.shares(0.5)["banded"] < 0.02
    scaled = torch.randn(3, 3, 3, generator=gen) * torch.tensor([1e-6, 1.0, 1e6])[:, None, None]
    assert kernel_banding(scaled).horizontal.tolist() == pytest.approx(
        [float(kernel_banding(k).horizontal) for k in scaled], rel=1e-4)        # scale-free, kernel by kernel
    flat = kernel_banding(torch.ones(2, 3, 3))
    assert flat.score.tolist() == [0.0, 0.0] and flat.shares()["banded"] == 0.0
    with pytest.raises(MechscopeError, match="threshold"):
        per.shares(0.0)
    with pytest.raises(MechscopeError, match="kh, kw"):
        kernel_banding(torch.ones(3))


def test_kernel_heatmap_is_diverging_and_symmetric():
    import matplotlib.pyplot as plt

    ax = kernel_heatmap(torch.tensor([[1.0, -3.0], [0.5, 2.0]]))
    im = ax.get_images()[0]
    assert im.get_cmap().name.startswith("RdBu_r") and im.get_clim() == (-3.0, 3.0)
    _, ax2 = plt.subplots()
    assert kernel_heatmap(torch.randn(4, 3, 3), ax=ax2, title="k") is ax2
    assert ax2.get_images()[0].get_array().shape == (3, 15)
    ax3 = banding_plot(torch.randn(8, 4, 5, 1).expand(8, 4, 5, 5), n=6)
    assert "+1.00" in ax3.get_title() and ax3.get_images()[0].get_array().shape == (5, 35)
    plt.close("all")
    with pytest.raises(MechscopeError, match="kh, kw"):
        kernel_heatmap(torch.randn(2, 2, 3, 3))


def test_factor_offset_points_up_at_ninety_degrees_and_refuses_negative_maps():
    from mechscope.vision.circuits.nmf import factor_offset

    m = torch.zeros(2, 5, 5)
    m[0, 0, 2] = 1.0                       # top row: up
    m[1, 2, 0] = m[1, 2, 4] = 1.0          # left and right: balanced
    assert factor_offset(m, 90.0).tolist() == [2.0, 0.0]
    assert factor_offset(torch.zeros(3, 3), 45.0).item() == 0.0
    with pytest.raises(MechscopeError, match="non-negative"):
        factor_offset(-m, 0.0)


def test_layer_kernels_reads_the_convolution_behind_a_post_relu_name():
    from mechscope.vision.circuits.weights import layer_kernels

    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    assert torch.equal(layer_kernels(net, "0"), net[0].weight.detach())
    with pytest.raises(MechscopeError, match="not an nn.Conv2d"):
        layer_kernels(net, "1")
