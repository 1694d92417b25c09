"""Tests of mechscope.microscope.toy: toy-model-of-superposition pages in a results store."""

from __future__ import annotations

import re

import pytest
import torch

import mechscope.microscope.toy as toy
from mechscope.errors import MechscopeError
from mechscope.microscope.site import render_layer, render_unit
from mechscope.microscope.toy import build_toy
from mechscope.store import open_store, read_png, read_rows
from mechscope.superposition.experiments import EXPERIMENTS, ExperimentResult
from mechscope.superposition.metrics import feature_dimensionality, feature_norms, interference

STEPS = 300


def _cell(x: float) -> str:
    """How the site shows a table cell written as ``round(x, 4)``."""
    return f"{round(float(x), 4):.4g}"


def _no_training(*args, **kwargs):
    raise AssertionError("run_experiment was called")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The intro experiment at STEPS steps, built once; the result ``build_toy`` trained is kept for comparison."""
    out = tmp_path_factory.mktemp("store")
    seen = []

    def spy(*args, **kwargs):
        seen.append(toy_run(*args, **kwargs))
        return seen[-1]

    toy_run = toy.run_experiment
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "run_experiment", spy)
        counts = build_toy(out, "intro", steps=STEPS, k=1, progress=False)
    assert len(seen) == 1
    return out, counts, seen[0]


def test_layer_row_and_figures(built):
    out, counts, result = built
    assert counts == {"built": 10, "skipped": 0}
    with open_store(out, create=False) as store:
        (layer,) = read_rows(store, "layers", model="superposition")
        s = layer["settings"]
        assert layer["layer"] == "intro" and layer["channels"] == len(result.instances) == 10
        assert s["kind"] == "toy" and s["thumbnail"] == "geometry"
        assert s["steps"] == STEPS and s["best_of"] == 1 and s["n_hidden"] == 2
        assert s["description"] == EXPERIMENTS["intro"].description
        figures = read_rows(store, "figures", model="superposition", layer="intro")
        kinds: dict[int, set[str]] = {}
        for row in figures:
            kinds.setdefault(row["channel"], set()).add(row["kind"])
            assert row["settings"]["steps"] == STEPS and row["settings"]["best_of"] == 1
            if row["png"] is not None:
                assert read_png(store, row["png"]).startswith(b"\x89PNG")
        assert kinds.pop(-1) == {"norms", "geometry", "gram", "summary"}
        assert kinds == {i: {"geometry", "gram", "norms", "metrics"} for i in range(10)}
        (summary,) = [r for r in figures if r["channel"] == -1 and r["kind"] == "summary"]
        assert summary["png"] is None
        rows = summary["settings"]["table"]["rows"]
        assert [r[0] for r in rows] == list(range(10)) and rows[0][1] == "1-S = 1" and rows[-1][1] == "1-S = 0.05"
        norms = feature_norms(result.weights["W"])
        for i, row in enumerate(rows):
            assert row[2] == result.instances[i]["loss"]
            assert row[3] == result.instances[i]["represented"] == int((norms[i] > 0.5).sum())
            assert row[4] == result.instances[i]["superposed"]
        geometry = {r["channel"]: r for r in figures if r["kind"] == "geometry" and r["channel"] >= 0}
        for i, row in geometry.items():
            assert row["settings"]["score"] == rows[i][3]
            assert row["settings"]["score_name"] == "features represented"
            assert row["settings"]["caption"].endswith(f"({rows[i][1]})")
            assert rows[i][1] in row["settings"]["note"] and "loss" in row["settings"]["note"]


def test_layer_page_shows_summary_and_thumbnails(built):
    out, _, result = built
    with open_store(out, create=False) as store:
        page = render_layer(store, "superposition", "intro")
    assert "Instances (represented" in page and "1-S = 0.05" in page and "mean dimensionality" in page
    assert EXPERIMENTS["intro"].description in page
    for i in range(10):
        assert f'href="../../superposition/intro/{i}.html"' in page
    assert page.count("features represented") >= 10
    assert len(re.findall(r'<img src="\.\./\.\./png/', page)) == 10 + 3  # thumbnails + layer-wide figures
    # the grid is sorted by represented features, highest first
    order = [int(c) for c in re.findall(r'href="\.\./\.\./superposition/intro/(\d+)\.html"', page)]
    counts = [result.instances[c]["represented"] for c in order]
    assert counts == sorted(counts, reverse=True)


def test_unit_page_has_the_instance_numbers(built):
    out, _, result = built
    W = result.weights["W"]
    norms, inter, dims = feature_norms(W), interference(W), feature_dimensionality(W)
    i = 9
    with open_store(out, create=False) as store:
        page = render_unit(store, "superposition", "intro", i)
        (metrics,) = read_rows(store, "figures", model="superposition", layer="intro", channel=i, kind="metrics")
    for caption in ("Feature geometry in the hidden space (1-S = 0.05)", "WᵀW: how features overlap (1-S = 0.05)",
                    "Feature norms and superposition (1-S = 0.05)", "Per-feature metrics (1-S = 0.05)"):
        assert caption in page
    assert f"loss {result.instances[i]['loss']:.4g}" in page
    rows = metrics["settings"]["table"]["rows"]
    assert [r[0] for r in rows] == list(range(5))
    assert [r[1] for r in rows] == [round(0.9 ** j, 4) for j in range(5)]
    for j, row in enumerate(rows):
        assert row[2:] == [round(float(norms[i, j]), 4), round(float(inter[i, j]), 4), round(float(dims[i, j]), 4)]
        cells = "".join(f"<td>{_cell(v)}</td>" for v in (norms[i, j], inter[i, j], dims[i, j]))
        assert cells in page
    assert rows[-1][2] == pytest.approx(result.instances[i]["norms"][-1], abs=1e-4)


def test_rerun_skips_without_training_and_other_steps_rebuild(built, monkeypatch):
    out, _, _ = built
    monkeypatch.setattr(toy, "run_experiment", _no_training)
    assert build_toy(out, "intro", steps=STEPS, k=1, progress=False) == {"built": 0, "skipped": 10}
    with pytest.raises(AssertionError, match="run_experiment was called"):
        build_toy(out, "intro", steps=STEPS + 1, k=1, progress=False)
    with pytest.raises(AssertionError, match="run_experiment was called"):
        build_toy(out, "intro", steps=STEPS, k=2, progress=False)


def test_given_result_is_written_without_training(built, tmp_path, monkeypatch):
    _, _, full = built
    # the first two instances of the trained result, without its (slow to draw) layer-wide figures
    result = ExperimentResult(full.name, full.settings, full.instances[:2], {"W": full.weights["W"][:2]})
    monkeypatch.setattr(toy, "run_experiment", _no_training)
    assert build_toy(tmp_path, "ignored", result=result, model_name="mine", progress=False) == {
        "built": 2, "skipped": 0}
    assert build_toy(tmp_path, result=result, model_name="mine", progress=False) == {"built": 0, "skipped": 2}
    with open_store(tmp_path, create=False) as store:
        assert [(r["model"], r["layer"], r["channels"]) for r in read_rows(store, "layers")] == [("mine", "intro", 2)]
        assert {r["kind"] for r in read_rows(store, "figures", channel=-1)} == {"summary"}
        (metrics,) = read_rows(store, "figures", channel=1, kind="metrics")
    norms = feature_norms(full.weights["W"][1])
    assert [r[2] for r in metrics["settings"]["table"]["rows"]] == [round(float(x), 4) for x in norms]


def test_non_planar_result_uses_gram_thumbnails_and_linear_instances(tmp_path):
    torch.manual_seed(0)
    W, WL = torch.randn(2, 4, 3), torch.randn(1, 4, 3)
    instances = [{"model": "relu_output", "sparsity": 0.0, "loss": 0.5}, {"model": "relu_output", "sparsity": 0.9,
                                                                          "loss": 0.25},
                 {"model": "linear", "sparsity": 0.0, "loss": 0.75}]
    result = ExperimentResult("handmade", {"importance": 1.0, "steps": 7, "best_of": 1}, instances,
                              {"W": W, "W_linear": WL})
    assert build_toy(tmp_path, result=result, progress=False) == {"built": 3, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        (layer,) = read_rows(store, "layers")
        assert layer["settings"]["thumbnail"] == "gram" and layer["channels"] == 3
        assert not read_rows(store, "figures", kind="geometry")
        gram = read_rows(store, "figures", channel=2, kind="gram")[0]
        assert gram["settings"]["score"] == int((WL[0].norm(dim=-1) > 0.5).sum())
        assert "linear, S = 0.0" in gram["settings"]["caption"]
        rows = read_rows(store, "figures", channel=2, kind="metrics")[0]["settings"]["table"]["rows"]
        assert [r[2] for r in rows] == [round(float(x), 4) for x in WL[0].norm(dim=-1)]
        assert [r[1] for r in rows] == [1.0] * 4
        page = render_layer(store, "superposition", "handmade")
    assert page.count('<img src="../../png/') == 3


def test_result_without_instance_weights_writes_only_the_summary(tmp_path):
    result = ExperimentResult("tableonly", {"steps": 3, "best_of": 1}, [{"density": 0.1, "loss": 0.5}], {})
    assert build_toy(tmp_path, result=result, progress=False) == {"built": 0, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        (summary,) = read_rows(store, "figures")
        assert summary["kind"] == "summary" and summary["settings"]["table"]["rows"] == [
            [0, "1-S = 0.1", 0.5, None, None, None]]


def test_errors_name_the_valid_choices(tmp_path):
    with pytest.raises(MechscopeError, match="intro") as info:
        build_toy(tmp_path, "nonexistent", steps=10, progress=False)
    assert "experiment" in str(info.value)
    with pytest.raises(MechscopeError, match="steps must be at least 1"):
        build_toy(tmp_path, "intro", steps=0, progress=False)
    with pytest.raises(MechscopeError, match="k"):
        build_toy(tmp_path, "intro", steps=10, k=0, progress=False)
    assert not (tmp_path / "index.sqlite").exists()


def test_intro_dense_keeps_two_features_sparse_superposes(tmp_path):
    """The paper's intro: the dense instance keeps the 2 most important features; the sparsest packs >= 4."""
    result = toy.run_experiment("intro", steps=8000, k=1, progress=False)
    result.figures = {}  # the layer-wide figures are tested elsewhere; drawing them is slow
    assert build_toy(tmp_path, result=result, progress=False) == {"built": 10, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        scores = {r["channel"]: r["settings"]["score"] for r in read_rows(store, "figures", kind="geometry")
                  if r["channel"] >= 0}
        dense = read_rows(store, "figures", channel=0, kind="metrics")[0]["settings"]["table"]["rows"]
    assert scores[0] == 2 and scores[9] >= 4
    assert [r[0] for r in dense if r[2] > 0.5] == [0, 1]  # the two most important features, orthogonal
    assert all(r[3] < 0.1 for r in dense[:2])
