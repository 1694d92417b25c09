import math

import torch

from mechscope.reproduce import sticky, superposition
from mechscope.superposition.geometry import GeometryOptions, GeometrySweep, density_grid

GRID = density_grid(10, 18)
X = [1 / d for d in GRID]


def _fake(curve: list[float]) -> GeometrySweep:
    mean = torch.tensor(curve, dtype=torch.float32)
    dpf = torch.stack([mean - 0.01, mean + 0.01])
    o = GeometryOptions(n_features=8, n_hidden=2, densities=GRID, seeds=2, steps=1)
    return GeometrySweep(o, 1.0 / torch.tensor(GRID, dtype=torch.float64), dpf, dpf.mean(0), dpf.std(0),
                         torch.zeros(2, len(GRID)), torch.zeros(2, len(GRID), 8, 2), 0.0)


def _staircase(x: float) -> float:       # 1 up to 1/(1-S) = 1.9, 1/2 from 4 to 40, falling in between and after
    lx = math.log10(x)
    if x <= 1.9:
        return 1.0
    if x < 4:
        return 1.0 - 0.5 * (lx - math.log10(1.9)) / (math.log10(4) - math.log10(1.9))
    if x <= 40:
        return 0.5
    return 0.5 - 0.25 * (lx - math.log10(40)) / (3 - math.log10(40))


def _smooth(x: float) -> float:
    return 1.0 - 0.75 * math.log10(x) / 3


def test_staircase_passes_against_its_control(tmp_path, monkeypatch):
    monkeypatch.setattr(sticky, "_sweep", lambda options=sticky.OPTIONS: _fake([_staircase(x) for x in X]))
    r = sticky.check(tmp_path)
    levels = r.numbers["levels"]
    assert r.passed is True and all(v["passed"] for v in levels.values())
    one, half = levels["1.0"], levels["0.5"]
    assert one["plateau"]["x_from"] == 1.0 and one["plateau"]["x_to"] <= 2.0 and one["plateau"]["count"] >= 8
    assert 3.9 <= half["plateau"]["x_from"] and half["plateau"]["x_to"] <= 45
    # the control was computed on the same grid and its runs compared
    assert len(r.numbers["control_curve"]) == len(X) and r.numbers["control_curve"][0] == 1.0
    assert one["control_plateau"]["decades"] * sticky.MARGIN <= one["plateau"]["decades"]
    assert (tmp_path / r.figures[0]).read_bytes()[:4] == b"\x89PNG"
    assert "vs smooth control" in r.summary and "|" not in r.summary and "control_plateaus" in r.controls


def test_smooth_curve_fails_because_it_is_its_own_control(tmp_path, monkeypatch):
    monkeypatch.setattr(sticky, "_sweep", lambda options=sticky.OPTIONS: _fake([_smooth(x) for x in X]))
    r = sticky.check(tmp_path)
    one = r.numbers["levels"]["1.0"]
    assert r.passed is False and one["passed"] is False
    # on this grid the smooth curve has a run of >= MIN_POINTS at 1: only the control comparison rejects it
    assert one["plateau"]["count"] >= sticky.MIN_POINTS
    assert one["control_plateau"] == one["plateau"]


def test_claim_is_registered_once_with_this_check():
    from mechscope.reproduce.registry import CLAIMS

    [registered] = [c for c in CLAIMS if c.name == "tms-sticky-dimensions"]
    assert registered.check is sticky.check and registered.area == "superposition"
    assert sticky.CLAIM in superposition.CLAIMS


def test_a_short_real_sweep_is_judged_with_its_control(tmp_path):
    o = GeometryOptions(n_features=12, n_hidden=3, densities=density_grid(4, 5, top=100.0), seeds=2, steps=30,
                        batch_size=64)
    r = sticky.check(tmp_path, o)
    assert r.numbers["n_features"] == 12 and len(r.numbers["dimensions_per_feature_mean"]) == 9
    assert len(r.numbers["control_curve"]) == 9 and set(r.numbers["levels"]) == {"1.0", "0.5"}
    assert r.passed is False          # 30 steps from a random start: no plateau at 1/2
