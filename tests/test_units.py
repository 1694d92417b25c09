import pytest
from torch import nn

from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.units import Head, Layer, Unit, layer_names, layer_width, module_path, parse, parse_unit, validate


@pytest.mark.parametrize(
    "text, expected",
    [
        ("mixed3b", Layer("mixed3b")),
        ("mixed3b_pre_relu", Layer("mixed3b_pre_relu")),
        ("mixed3a_5x5_bottleneck", Layer("mixed3a_5x5_bottleneck")),
        ("mixed3b:379", Unit("mixed3b", 379)),
        ("mixed3b_pre_relu:379", Unit("mixed3b_pre_relu", 379)),
        ("mixed3b:379@7,7", Unit("mixed3b", 379, (7, 7))),
        ("mixed3b:379@2,11", Unit("mixed3b", 379, (2, 11))),
        ("layer1.0.conv1:5", Unit("layer1.0.conv1", 5)),
        ("blocks.1.attn:4", Head("blocks.1.attn", 4)),
        ("attn:0", Head("attn", 0)),
        (" mixed4a:1 ", Unit("mixed4a", 1)),
    ],
)
def test_parse(text, expected):
    assert parse(text) == expected


@pytest.mark.parametrize("name", ["mixed3b:379", "mixed3b:379@7,7", "blocks.1.attn:4", "mixed3b"])
def test_str_round_trips(name):
    assert str(parse(name)) == name


@pytest.mark.parametrize("bad", ["", "mixed3b:", "mixed3b:-1", "mixed3b:x", "mixed3b:1@7", ".x:1", "mixed3b:1@7,7,7"])
def test_parse_refuses_bad_syntax_with_the_expected_forms(bad):
    with pytest.raises(MechscopeError, match="expected 'layer'"):
        parse(bad)


def test_head_takes_no_position():
    with pytest.raises(MechscopeError, match="no position"):
        parse("blocks.0.attn:1@1,1")


def test_parse_unit_refuses_layer_and_non_string():
    with pytest.raises(MechscopeError, match="expected a unit"):
        parse_unit("mixed3b")
    with pytest.raises(MechscopeError, match="must be a string"):
        parse(379)
    assert parse(Unit("a", 1)) == Unit("a", 1)


def test_declared_names_map_to_module_paths(inception):
    assert module_path(inception, "mixed3b") == "mixed3b"
    assert module_path(inception, "mixed3b_pre_relu") == "mixed3b.pre_relu"
    assert module_path(inception, "conv2d0_pre_relu") == "conv2d0.conv"
    assert module_path(inception, "mixed3a_5x5_bottleneck") == "mixed3a.b5x5_bottleneck.relu"
    # any module path works too
    assert module_path(inception, "mixed3a.b1x1.conv") == "mixed3a.b1x1.conv"
    names = layer_names(inception)
    assert names[0] == "conv2d0_pre_relu" and "mixed5b.b3x3.conv" in names


def test_unknown_layer_lists_closest_valid_names(inception):
    with pytest.raises(UnknownNameError) as err:
        validate(inception, "mixed3c:1")
    msg = str(err.value)
    assert "mixed3c" in msg and "mixed3a" in msg and "mixed3b" in msg
    with pytest.raises(KeyError):  # also a KeyError for dict-style callers
        module_path(inception, "mixd4a_pre_relu")


def test_channel_out_of_range_says_the_width(inception):
    with pytest.raises(MechscopeError, match=r"508 channels \(valid: 0..507\)"):
        validate(inception, "mixed4a:508")
    assert validate(inception, "mixed4a:507") == Unit("mixed4a", 507)


def test_generic_module_widths_from_attributes():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    assert layer_width(model, "0") == 8
    assert layer_width(model, "3") == 2
    assert layer_width(model, "1") is None  # unknown without running: no check, no error
    with pytest.raises(MechscopeError, match="8 channels"):
        validate(model, "0:8")
    validate(model, "1:100")
    with pytest.raises(UnknownNameError, match="Closest valid names: 0"):
        validate(model, "00:1")


def test_parse_layers_dedups_and_refuses_units_and_empty_lists():
    from mechscope.units import parse_layers

    assert parse_layers("mixed3b", "scan", "why") == ["mixed3b"]
    assert parse_layers(["a", "b", "a"], "scan", "why") == ["a", "b"]
    with pytest.raises(MechscopeError, match="scan needs at least one layer name"):
        parse_layers([], "scan", "why")
    with pytest.raises(MechscopeError, match=r"scan takes layer names .* not 'mixed3b:4': it covers"):
        parse_layers(["mixed3b:4"], "scan", "it covers every channel")
