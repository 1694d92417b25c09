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


# ---- heads' short form, feature-visualization labels, the grammar for the search box -------------------------
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402

from mechscope.units import VisLabel, file_stem, parse_head, search_grammar  # noqa: E402


@pytest.mark.parametrize("text", ["1.4", "blocks.1.attn:4", " 1.4 ", Head("blocks.1.attn", 4)])
def test_short_head_is_an_alias_of_the_long_form(text):
    head = parse_head(text)
    assert head == Head("blocks.1.attn", 4) == parse("blocks.1.attn:4") == Head.at(1, 4)
    assert head.layer_index == 1 and head.short == "1.4" and str(head) == "blocks.1.attn:4"


def test_parse_head_refuses_other_names_and_short_needs_blocks():
    for bad in ["1", "1.x", "mixed3b:4", "1.2.3", "blocks.1.attn"]:
        with pytest.raises(MechscopeError, match=r"LAYER\.HEAD"):
            parse_head(bad)
    assert parse_head("attn:2") == Head("attn", 2)
    with pytest.raises(MechscopeError, match="blocks.L.attn"):
        Head("attn", 2).layer_index
    assert parse("1.3") == Layer("1.3")  # a nested nn.Sequential's module path stays a layer for parse


@pytest.mark.parametrize("text, expected", [
    ("mixed3b:379", VisLabel(Unit("mixed3b", 379))),
    ("mixed3b:379#neg", VisLabel(Unit("mixed3b", 379), negative=True)),
    ("mixed3b:379#2", VisLabel(Unit("mixed3b", 379), index=2)),
    ("mixed3b:379@7,7#neg_1", VisLabel(Unit("mixed3b", 379, (7, 7)), True, 1)),
])
def test_vis_label_round_trips_todays_spelling(text, expected):
    assert VisLabel.parse(text) == expected and str(expected) == text
    assert expected.stem == file_stem(text) == text.replace(":", "_").replace("@", "_at_").replace(",", "_") \
        .replace("#", "_")


def test_vis_label_refuses_bad_suffixes():
    for bad in ["mixed3b", "mixed3b:1#", "mixed3b:1#neg#1", "mixed3b:1#pos", "mixed3b:1#neg_"]:
        with pytest.raises(MechscopeError, match="cannot parse label"):
            VisLabel.parse(bad)


ACCEPTED = {
    "layer": ["mixed3b", "mixed3b_pre_relu", "layer1.0.conv1", "blocks.1.attn", "a-b"],
    "unit": ["mixed3b:379", "mixed3b:379@7,7", "layer1.0.conv1:5"],
    "head": ["1.3", "blocks.1.attn:4", "attn:0"],
    "label": ["mixed3b:379", "mixed3b:379#neg", "mixed3b:379#2", "mixed3b:379@7,7#neg_1"],
    "name": ["mixed3b", "mixed3b:379", "mixed3b:379@7,7", "blocks.1.attn:4"],
}
REFUSED = {
    "layer": ["", ".x", "mixed3b:1"], "unit": ["mixed3b", "mixed3b:", "mixed3b:1@7"],
    "head": ["1", "1.x", "mixed3b:4"], "label": ["mixed3b", "mixed3b:1#pos"], "name": ["", "mixed3b:x"],
}


def _python_accepts(kind, name):
    try:
        parsed = {"head": parse_head, "label": VisLabel.parse}.get(kind, parse)(name)
    except MechscopeError:
        return False
    return kind not in ("layer", "unit") or type(parsed) is {"layer": Layer, "unit": Unit}[kind]


def test_search_grammar_accepts_what_the_parsers_accept():
    grammar = search_grammar()
    assert set(grammar) == set(ACCEPTED) and json.loads(json.dumps(grammar)) == grammar
    for kind, pattern in grammar.items():
        assert "(?P<" not in pattern  # JavaScript spells named groups (?<name>...)
        python = re.compile(pattern.replace("(?<", "(?P<"))
        for name in ACCEPTED[kind]:
            assert _python_accepts(kind, name.strip()) and python.match(name), (kind, name)
        for name in REFUSED[kind]:
            assert not _python_accepts(kind, name) and not python.match(name), (kind, name)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the JavaScript regular expressions")
def test_search_grammar_is_valid_javascript_with_the_same_answers():
    cases = [[kind, name, True] for kind, names in ACCEPTED.items() for name in names]
    cases += [[kind, name, False] for kind, names in REFUSED.items() for name in names]
    script = ("const g = JSON.parse(process.argv[1]); const cases = JSON.parse(process.argv[2]);"
              "console.log(JSON.stringify(cases.map(([k, n]) => new RegExp(g[k], 'u').test(n))));")
    out = subprocess.run(["node", "-e", script, json.dumps(search_grammar()), json.dumps(cases)],
                         capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [expected for _, _, expected in cases]


def test_validate_checks_a_given_width():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    assert validate(model, "1:3") == Unit("1", 3)  # width unknown: not range-checked here
    with pytest.raises(MechscopeError, match=r"8 channels \(valid: 0..7\)"):
        validate(model, "1:8", width=8)
