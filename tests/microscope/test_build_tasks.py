"""Tests of how mechscope.microscope.build cuts a layer into tasks: the tuning curves of a layer in one task (one
forward pass of the stimuli), the rest in slices (one feature-visualization batch of up to ``SLICE`` units in this
process); the figures do not depend on the cut."""

from __future__ import annotations

import torch
from torch import nn

import mechscope.microscope.evidence as evidence_mod
from mechscope.compute.engine import InProcess
from mechscope.microscope import build as build_mod
from mechscope.microscope.build import SLICE, _slice_size, _tasks, build
from mechscope.microscope.evidence import Job
from mechscope.microscope.options import Evidence, Links
from mechscope.store import open_store, read_rows


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 5, 3, padding=1), nn.ReLU()).eval()


def test_tuning_is_one_task_per_layer_and_the_rest_whole_slices():
    job = Job("3", featvis=tuple(range(70)), negative=tuple(range(70)), tuning=tuple(range(75)),
              upstream=tuple(range(70)), source="1")
    tasks = _tasks(job, workers=1)
    assert SLICE == 32 and [len(t.units) for t in tasks] == [24, 24, 22, 75]   # ceil(70 / 32) even slices
    assert [t.tuning for t in tasks[:-1]] == [(), (), ()] and tasks[-1].tuning == tuple(range(75))
    assert tasks[-1].featvis == tasks[-1].upstream == ()
    assert sorted(c for t in tasks[:-1] for c in t.featvis) == list(range(70))
    assert _tasks(Job("3", tuning=(1, 2)), workers=4) == [Job("3", tuning=(1, 2))]
    assert _slice_size(70, 1) == SLICE and _slice_size(5, 1) == 5
    assert _slice_size(70, 2) == 18 and _slice_size(500, 2) == SLICE   # ~two tasks per worker, at most SLICE


def _rows(path) -> list[tuple]:
    with open_store(path) as store:
        return sorted((r["layer"], r["channel"], r["kind"], r["png"], repr(r["settings"]))
                      for r in read_rows(store, "figures", model="tiny"))


def test_a_layer_tunes_once_and_writes_what_per_slice_tuning_wrote(tmp_path, monkeypatch):
    calls = []
    real = evidence_mod.radial_tuning_curve

    def counted(model, layer, channels, **kw):
        calls.append((layer, tuple(channels)))
        return real(model, layer, channels, **kw)

    monkeypatch.setattr(evidence_mod, "radial_tuning_curve", counted)
    options = {"evidence": Evidence(steps=2, size=16, negative=False), "channels": {"3": [0, 2, 4]},
               "links": Links({"3": "1"}, k=2), "progress": False}
    assert build(_net(), "tiny", ["3"], tmp_path / "a", engine=InProcess(workers=2), **options) == {
        "built": 3, "skipped": 0}
    assert calls == [("3", (0, 2, 4))]
    # the old cut: tuning inside each slice of the other figures
    monkeypatch.setattr(build_mod, "_tasks", lambda job, workers: job.split(len(job.units)))
    calls.clear()
    build(_net(), "tiny", ["3"], tmp_path / "b", **options)
    assert calls == [("3", (0,)), ("3", (2,)), ("3", (4,))]
    assert _rows(tmp_path / "a") == _rows(tmp_path / "b")
