"""Tests of mechscope.microscope.build: featvis and circuit figures of a tiny conv net, incremental rebuild, export."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from mechscope.compute.engine import InProcess
from mechscope.errors import MechscopeError
from mechscope.microscope.build import build
from mechscope.microscope.options import DatasetEvidence, Evidence, Links
from mechscope.microscope.site import export, relative_url, unit_url
from mechscope.store import open_store, read_png, read_rows


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU()).eval()


def _build(net: nn.Module, out, *, channels=None, dataset=None, engine=None, **evidence):
    return build(net, "tiny", ["1", "3"], out, channels=channels,
                 evidence=Evidence(**{"steps": 4, "size": 16, **evidence}), links=Links({"3": "1"}, k=2),
                 dataset=dataset, engine=engine, progress=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("store")
    net = _net()
    counts = _build(net, out)
    return net, out, counts


def test_build_writes_layers_featvis_and_circuits(built):
    _, out, counts = built
    assert counts == {"built": 7, "skipped": 0}
    with open_store(out, create=False) as store:
        layers = {r["layer"]: r for r in read_rows(store, "layers", model="tiny")}
        assert {n: r["channels"] for n, r in layers.items()} == {"1": 4, "3": 3}
        assert all(r["settings"]["kind"] == "vision" for r in layers.values())
        featvis = read_rows(store, "figures", model="tiny", kind="featvis")
        assert sorted((r["layer"], r["channel"]) for r in featvis) == [("1", c) for c in range(4)] + [
            ("3", c) for c in range(3)]
        for r in featvis:
            s = r["settings"]
            assert s["steps"] == 4 and s["size"] == 16 and s["score_name"] == "activation"
            assert isinstance(s["score"], float)
            assert read_png(store, r["png"]).startswith(b"\x89PNG")
        ups = read_rows(store, "figures", model="tiny", layer="3", kind="upstream")
        assert [r["channel"] for r in ups] == [0, 1, 2]
        named = set()
        for r in ups:
            units = r["settings"]["units"]
            assert 1 <= len(units) <= 2 and r["settings"]["layer"] == "1"
            assert all(re.fullmatch(r"1:[0-3]", u["unit"]) and isinstance(u["weight"], float) for u in units)
            assert read_png(store, r["png"]).startswith(b"\x89PNG")
            named |= {(u["unit"], f"3:{r['channel']}", u["weight"]) for u in units}
        downs = read_rows(store, "figures", model="tiny", layer="1", kind="downstream")
        back = {(f"1:{r['channel']}", u["unit"], u["weight"]) for r in downs for u in r["settings"]["units"]}
        assert back == named  # both ways, same weights
        assert not read_rows(store, "figures", model="tiny", layer="1", kind="upstream")


def test_build_writes_negative_and_tuning(built):
    _, out, _ = built
    units = [("1", c) for c in range(4)] + [("3", c) for c in range(3)]
    with open_store(out, create=False) as store:
        neg = read_rows(store, "figures", model="tiny", kind="featvis_negative")
        assert sorted((r["layer"], r["channel"]) for r in neg) == units
        for r in neg:
            s = r["settings"]
            assert s["steps"] == 4 and s["size"] == 16 and s["score_name"] == "activation"
            assert isinstance(s["score"], float)
            assert read_png(store, r["png"]).startswith(b"\x89PNG")
        pos = {(r["layer"], r["channel"]): r["png"] for r in read_rows(store, "figures", kind="featvis")}
        assert all(pos[(r["layer"], r["channel"])] != r["png"] for r in neg)
        tuning = read_rows(store, "figures", model="tiny", kind="tuning")
        assert sorted((r["layer"], r["channel"]) for r in tuning) == units
        for r in tuning:
            s = r["settings"]
            assert s["orientations"] == 72 and s["size"] == 16
            assert isinstance(s["preferred_deg"], float) and 0 <= s["preferred_deg"] < 360
            assert isinstance(s["curve_preference"], float)
            assert read_png(store, r["png"]).startswith(b"\x89PNG")


def test_negative_and_tuning_off_and_non_spatial(tmp_path):
    net = _net()
    assert _build(net, tmp_path, channels={"1": [0], "3": [0]}, negative=False, tuning=False) == {
        "built": 2, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        kinds = {r["kind"] for r in read_rows(store, "figures")}
        before = {(r["layer"], r["kind"]): r["png"] for r in read_rows(store, "figures")}
    assert kinds == {"featvis", "upstream", "downstream"}
    # turning them on later builds only the missing figures
    assert _build(net, tmp_path, channels={"1": [0], "3": [0]}, steps=4) == {"built": 2, "skipped": 0}
    assert _build(net, tmp_path, channels={"1": [0], "3": [0]}) == {"built": 0, "skipped": 2}
    with open_store(tmp_path, create=False) as store:
        after = {(r["layer"], r["kind"]): r["png"] for r in read_rows(store, "figures")}
        assert {key: after[key] for key in before} == before  # featvis and circuits not rewritten
        kinds = {(r["layer"], r["kind"]) for r in read_rows(store, "figures", channel=0)}
    assert {("1", "featvis_negative"), ("1", "tuning"), ("3", "featvis_negative"), ("3", "tuning")} <= kinds
    # a layer with [B, C] outputs gets no tuning figure
    flat = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    assert build(flat, "flat", ["2"], tmp_path, evidence=Evidence(steps=2, size=16), progress=False) == {
        "built": 2, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        kinds = {r["kind"] for r in read_rows(store, "figures", model="flat")}
    assert kinds == {"featvis", "featvis_negative"}


def test_rebuild_skips_everything(built):
    net, out, _ = built
    with open_store(out, create=False) as store:
        before = {(r["layer"], r["channel"], r["kind"]): r["png"] for r in read_rows(store, "figures")}
    assert _build(net, out) == {"built": 0, "skipped": 7}
    with open_store(out, create=False) as store:
        after = {(r["layer"], r["channel"], r["kind"]): r["png"] for r in read_rows(store, "figures")}
    assert after == before


def test_changed_steps_rebuild_only_featvis_and_keep_downstream(tmp_path):
    net = _net()
    assert _build(net, tmp_path, channels={"1": [0, 1], "3": [0]}) == {"built": 3, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        downs0 = read_rows(store, "figures", model="tiny", layer="1", kind="downstream")
    # another unit of layer 3 joins: its links are merged into the downstream rows, the old ones kept
    assert _build(net, tmp_path, channels={"1": [0, 1], "3": [0, 1]}) == {"built": 1, "skipped": 3}
    with open_store(tmp_path, create=False) as store:
        downs = read_rows(store, "figures", model="tiny", layer="1", kind="downstream")
        listed = {u["unit"] for r in downs for u in r["settings"]["units"]}
        assert listed == {"3:0", "3:1"}
        assert {u["unit"] for r in downs0 for u in r["settings"]["units"]} == {"3:0"}
    assert _build(net, tmp_path, channels={"1": [0], "3": [0]}, steps=5) == {"built": 2, "skipped": 0}
    with open_store(tmp_path, create=False) as store:
        fv = {(r["layer"], r["channel"]): r["settings"]["steps"] for r in read_rows(store, "figures", kind="featvis")}
    assert fv == {("1", 0): 5, ("1", 1): 4, ("3", 0): 5, ("3", 1): 4}


def test_units_per_layer_and_errors(tmp_path):
    net = _net()
    assert build(net, "tiny", ["1"], tmp_path, units_per_layer=2, evidence=Evidence(steps=2, size=16),
                 progress=False) == {"built": 2, "skipped": 0}
    with pytest.raises(MechscopeError):
        build(net, "tiny", ["1"], tmp_path, channels={"1": [9]}, evidence=Evidence(steps=2, size=16), progress=False)
    with pytest.raises(MechscopeError):
        build(net, "tiny", ["1"], tmp_path, links=Links({"3": "1"}), evidence=Evidence(steps=2, size=16),
              progress=False)
    with pytest.raises(MechscopeError):
        build(net, "tiny", ["nope"], tmp_path, evidence=Evidence(steps=2, size=16), progress=False)


def test_export_links_upstream_units(built, tmp_path):
    _, out, _ = built
    site = tmp_path / "site"
    counts = export(out, site)
    assert counts["units"] == 7
    with open_store(out, create=False) as store:
        up, = read_rows(store, "figures", model="tiny", layer="3", channel=0, kind="upstream")
    first = int(up["settings"]["units"][0]["unit"].split(":")[1])
    here, there = unit_url("tiny", "3", 0), unit_url("tiny", "1", first)
    page = (site / here).read_text()
    assert f'href="{relative_url(here, there)}"' in page and (site / there).is_file()
    down = (site / there).read_text()
    assert f'href="{relative_url(there, here)}"' in down
    assert page.count("<img") >= 4  # featvis, negative, tuning, upstream
    for caption in ("Feature visualization", "Negative feature visualization", "Tuning curve", "Upstream"):
        assert caption in page


class _Images:
    """A dataset of ``n`` random 16 px images in the protocol ``vision.evidence.scan`` reads."""

    skipped: list = []

    def __init__(self, n: int = 12) -> None:
        self.images = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]

    def batches(self, n: int, start: int = 0):
        for lo in range(start, len(self.images), n):
            yield list(range(lo, min(lo + n, len(self.images)))), self.images[lo:lo + n]


def test_dataset_examples_stats_and_attribution(tmp_path):
    net, data = _net(), _Images()
    assert _build(net, tmp_path, dataset=DatasetEvidence(data, "random:12", 3)) == {"built": 7, "skipped": 0}
    with open_store(tmp_path) as store:
        layer = read_rows(store, "layers", model="tiny", layer="3")[0]
        assert layer["settings"]["kind"] == "vision"  # the scan's layer row did not lose the build's kind
        assert layer["settings"]["scan"] == {"dataset": "random:12", "examples_k": 3, "size": 16}
        top = read_rows(store, "examples", model="tiny", layer="3", which="top")
        assert sorted({r["channel"] for r in top}) == [0, 1, 2] and max(r["rank"] for r in top) == 2
        assert len(read_rows(store, "stats", model="tiny", layer="1")) == 4
        kinds = {(r["layer"], r["kind"]) for r in read_rows(store, "figures", model="tiny")}
        assert {("1", "log_prob"), ("1", "quilt"), ("3", "log_prob"), ("3", "quilt"), ("3", "attribution")} <= kinds
        assert ("1", "attribution") not in kinds  # layer 1 has no upstream layer to attribute to
        assert {("1", "featvis"), ("3", "featvis"), ("3", "upstream")} <= kinds  # the scan kept the build's figures
        for row in read_rows(store, "figures", model="tiny", layer="3", kind="attribution"):
            s = row["settings"]
            first = next(r for r in top if r["channel"] == row["channel"] and r["rank"] == 0)
            assert s["dataset_index"] == first["dataset_index"] and s["position"] == [first["x"], first["y"]]
            assert abs(s["total"] - first["value"]) < 1e-4  # attributed the unit at its top example's maximum
            assert 1 <= len(s["units"]) <= 2 and all(re.fullmatch(r"1:[0-3]", u["unit"]) for u in s["units"])
            assert read_png(store, row["png"]).startswith(b"\x89PNG")
    # the same dataset again: nothing to do; another dataset: the scan (and so the units) again
    assert _build(net, tmp_path, dataset=DatasetEvidence(data, "random:12", 3)) == {"built": 0, "skipped": 7}
    assert _build(net, tmp_path, dataset=DatasetEvidence(_Images(8), "random:8", 3)) == {
        "built": 7, "skipped": 0}


class _Backwards(InProcess):
    """An engine of 3 workers whose tasks finish last first (as a cluster's may)."""

    workers = 3

    def map(self, fn, tasks, shared=None):
        for i in reversed(range(len(tasks))):
            yield i, fn(shared, tasks[i])


def test_slices_finishing_in_any_order_give_the_same_rows_and_links(tmp_path):
    net = _net()
    one, two = tmp_path / "one", tmp_path / "two"
    assert _build(net, one, diversity=2) == _build(net, two, diversity=2, engine=_Backwards()) == {
        "built": 7, "skipped": 0}

    def summary(path):
        with open_store(path) as store:
            rows = read_rows(store, "figures", model="tiny")
            links = {(r["layer"], r["channel"], r["kind"]): [(u["unit"], round(u["weight"], 5))
                                                              for u in r["settings"]["units"]]
                     for r in rows if r["kind"] in ("upstream", "downstream")}
            return sorted((r["layer"], r["channel"], r["kind"]) for r in rows), links

    assert summary(one) == summary(two)
    kinds, _ = summary(two)
    assert [(layer, c) for layer, c, kind in kinds if kind == "featvis_diversity"] == [
        ("1", 0), ("1", 1), ("1", 2), ("1", 3), ("3", 0), ("3", 1), ("3", 2)]
    with open_store(one) as a, open_store(two) as b:   # per-unit seeds: the same pictures, however sliced
        assert [(r["layer"], r["channel"], r["kind"], r["png"]) for r in read_rows(a, "figures", model="tiny")] == [
            (r["layer"], r["channel"], r["kind"], r["png"]) for r in read_rows(b, "figures", model="tiny")]
    assert _build(net, two, diversity=2, engine=_Backwards()) == {"built": 0, "skipped": 7}


def test_build_option_errors(tmp_path):
    net = _net()
    for kw, words in (({"engine": 3}, "Engine"), ({"diversity": 1}, "diversity"), ({"steps": 0}, "steps"),
                      ({"dataset": "not options"}, "DatasetEvidence")):
        with pytest.raises(MechscopeError, match=words):
            _build(net, tmp_path, **kw)
    for make, words in ((lambda: DatasetEvidence(None, examples_k=0), "examples_k"), (lambda: Links(k=0), "k is"),
                        (lambda: Evidence(size=0), "size")):
        with pytest.raises(MechscopeError, match=words):
            make()
