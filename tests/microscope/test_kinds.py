"""The figure and layer kinds of a Microscope store are declared once (``mechscope.microscope.kinds``): these tests
fail when a builder, a page or a docstring drifts from that table."""

import ast
import re
from pathlib import Path

import pytest
import torch
from torch import nn

import mechscope.microscope.site as site
from mechscope.microscope import kinds
from mechscope.microscope.build import build
from mechscope.microscope.heads import build_heads
from mechscope.microscope.options import DatasetEvidence, Evidence, Links
from mechscope.microscope.toy import build_toy
from mechscope.store import open_store, read_rows

PACKAGE = Path(kinds.__file__).parent
DECLARED = {k.name for k in kinds.FIGURE_KINDS}
NOT_KINDS = {("site.py", "histogram")}  # the stats table's histogram column, not the figure kind


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A store that every builder wrote into: vision units with dataset evidence and links, heads, a toy model."""
    from mechscope.data.shapes import ShapesDataset
    from mechscope.zoo.attn_only import AttnOnlyConfig, AttnOnlyTransformer

    out = tmp_path_factory.mktemp("kinds")
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1)).eval()
    build(net, "vision", ["0", "2"], out, evidence=Evidence(steps=2, size=16, diversity=2),
          links=Links({"2": "0"}, k=1), dataset=DatasetEvidence(ShapesDataset(n=8, size=16, seed=1), "shapes:8", examples_k=2), progress=False)
    model = AttnOnlyTransformer(AttnOnlyConfig(n_layers=2, d_model=16, n_heads=2, d_head=4, n_ctx=16, d_vocab=30),
                                seed=0)
    build_heads(model, "heads", out, k=2, progress=False)
    build_toy(out, "intro", steps=10, k=1, progress=False)
    return out


def test_no_figure_kind_is_spelled_outside_kinds_py():
    """Builders and pages name a figure kind through ``kinds`` (string constants other than docstrings)."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        if path.name == "kinds.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                      if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body
                      and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
        found += [f"{path.name}:{node.lineno}: {node.value!r}" for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and node.value in DECLARED and id(node) not in docstrings
                  and (path.name, node.value) not in NOT_KINDS]
    for path in sorted((PACKAGE / "templates").iterdir()):
        found += [f"{path.name}: {name!r}" for name in DECLARED if re.search(rf"[\"']{name}[\"']", path.read_text())]
    assert not found, found


def test_every_kind_a_builder_writes_is_declared(store_dir):
    with open_store(store_dir) as store:
        rows = read_rows(store, "figures")
        layers = read_rows(store, "layers")
    from mechscope.superposition.experiments import EXPERIMENTS

    written = {r["kind"] for r in rows if not (r["model"] == "superposition" and r["channel"] == -1)}
    assert written <= DECLARED, written - DECLARED
    assert {r["kind"] for r in rows if r["model"] == "superposition" and r["channel"] == -1} - DECLARED <= set(
        EXPERIMENTS["intro"].run(steps=1, k=1, progress=False).figures)  # the experiment's own figures, by name
    assert {(r["settings"] or {}).get("kind") for r in layers} <= set(kinds.LAYER_KINDS)
    for r in layers:  # a layer's thumbnail is a thumbnail kind
        thumbnail = (r["settings"] or {}).get("thumbnail", kinds.FEATVIS.name)
        assert kinds.figure_kind(thumbnail).thumbnail
    for r in rows:  # every fresh key of a declared kind is in the settings its builder writes
        if r["kind"] in DECLARED:
            assert set(kinds.figure_kind(r["kind"]).fresh) <= set(r["settings"] or {}), r["kind"]


def test_every_declared_caption_is_what_the_page_shows(store_dir):
    shown = set()
    with open_store(store_dir) as store:
        for r in read_rows(store, "figures"):
            if r["channel"] < 0 or "caption" in (r["settings"] or {}):
                continue
            page = site.render_unit(store, r["model"], r["layer"], r["channel"])
            assert f"<figcaption>{kinds.CAPTIONS[r['kind']]}" in page, r["kind"]
            shown.add(r["kind"])
    assert shown >= {"featvis", "featvis_negative", "featvis_diversity", "tuning", "upstream", "head_scores",
                     "qk_pairs", "log_prob", "quilt", "attribution", "downstream"}


def test_the_store_contract_names_exactly_the_declared_kinds():
    contract = site.__doc__.split("* ``figures`` rows", 1)[1].split("``settings`` (a JSON object)", 1)[0]
    assert set(re.findall(r'``"(\w+)"``', contract)) == DECLARED
    assert site.CAPTIONS is kinds.CAPTIONS
