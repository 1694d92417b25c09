"""Feature-visualization throughput, mechscope vs Lucent, side by side: InceptionV1, same random weights, 128 px.

Four cases, each timed for both libraries in one process, in interleaved rounds (A B A B ...):
a unit in mixed3b and one in mixed5b, (a) alone and (b) 16 units.  mechscope renders the 16 units as one batch
(``render_units``); Lucent renders them one after another (``render_vis`` per unit), its normal usage.
Both run their defaults: Adam lr 0.05, FFT + decorrelated-colour image, Lucid's standard transforms.
Also measured in the same run: the machine's dense-conv throughput (256->256 3x3, batch 8 x 56x56, forward +
backward) and the FLOP/s one mechscope optimization step achieves as a fraction of it.

Needs Lucent (``torch-lucent==0.1.8``) and torchvision, so it runs in its own venv::

    make bench-featvis                      # creates .venv-bench when missing, then runs the full benchmark
    .venv-bench/bin/python benchmarks/featvis_vs_lucent.py [--quick] [--rounds 5] [--steps 8]

Writes ``benchmarks/results/featvis.json`` (``featvis_quick.json`` with ``--quick``; the other variant flags add
their own suffix, so they never overwrite the default run's file).
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import torch
from torch import nn

from _common import interleaved, machine, paired_ratio, write

FULL_STEPS = 512  # a full render (Lucid's and both libraries' default)
BATCH = 16
TARGETS = {"mixed3b": 3.0, "mixed5b": 1.5}  # wanted: mechscope units/minute >= this x Lucent's


def _import_lucent():
    """Import Lucent.  Lucent 0.1.8 calls ``kornia.get_rotation_matrix2d`` / ``kornia.warp_affine``, top-level
    names that only kornia <= 0.4.x has; with a newer kornia, alias them to ``kornia.geometry.transform``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kornia 0.4.1 uses torch.jit.script, deprecated in torch 2.14
        import kornia

    shimmed = False
    if not hasattr(kornia, "warp_affine"):
        from kornia.geometry import transform as kt

        kornia.get_rotation_matrix2d = kt.get_rotation_matrix2d
        kornia.warp_affine = kt.warp_affine
        shimmed = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import lucent
        from lucent.modelzoo import inceptionv1
        from lucent.optvis import param, render
    from importlib.metadata import version

    info = {"torch-lucent": version("torch-lucent"), "kornia": kornia.__version__, "kornia_shim": shimmed,
            "torchvision": version("torchvision")}
    del lucent
    return inceptionv1, param, render, info


@contextlib.contextmanager
def _drop_new_hooks(model: nn.Module) -> Iterator[list[int]]:
    """Remove the forward hooks added inside the block.  Lucent's ``render_vis`` hooks every module and never
    removes its hooks, so repeated calls on one model pile them up (and keep every feature map alive)."""
    before = {id(m): set(m._forward_hooks) for m in model.modules()}
    added = [0]
    try:
        yield added
    finally:
        for m in model.modules():
            for key in set(m._forward_hooks) - before[id(m)]:
                del m._forward_hooks[key]
                added[0] += 1


@contextlib.contextmanager
def _count_flops(model: nn.Module) -> Iterator[dict]:
    """FLOPs of every Conv2d / Linear that runs with grad enabled (the optimization steps; a no-grad forward after
    the loop is not counted).  Forward: 2 x MACs.  A tensor hook on each output tells whether the backward pass
    reaches the module; if so it computes the input gradient (2 x MACs) and, when the weight requires grad, the
    weight gradient (2 x MACs) too."""
    tally = {"forward_macs": 0, "forward_flops": 0, "backward_flops": 0, "modules_run": set(),
             "modules_backward": set()}

    def hook(module: nn.Module, inputs, output) -> None:
        if not torch.is_grad_enabled():
            return
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        else:
            k = module.in_features
        macs = output.numel() * k
        tally["forward_macs"] += macs
        tally["forward_flops"] += 2 * macs
        tally["modules_run"].add(id(module))
        if output.requires_grad:
            grads = 1 + int(module.weight.requires_grad)

            def on_grad(_grad: torch.Tensor, macs: int = macs, grads: int = grads) -> None:
                tally["backward_flops"] += grads * 2 * macs
                tally["modules_backward"].add(id(module))

            output.register_hook(on_grad)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        yield tally
    finally:
        for h in handles:
            h.remove()


def _git_state() -> dict:
    """The commit the benchmark ran on and whether src/ had uncommitted changes."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True,
                                    text=True, check=True).stdout.strip())
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "src_dirty": None}
    return {"commit": commit, "src_dirty": dirty}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds of 2 steps")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved timed rounds (default 6)")
    parser.add_argument("--steps", type=int, default=8, help="optimization steps per timed call (default 8)")
    parser.add_argument("--lucent-batch-steps", type=int, default=4,
                        help="steps per unit in Lucent's one-after-another 16-unit call (default 4)")
    parser.add_argument("--units", default="mixed3b:379,mixed5b:10",
                        help="the single units; the batch is each unit's channel and the next 15")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--mech-redirect", action="store_true",
                        help="time mechscope with its redirected ReLU on (Lucid applies it to the first 16 of 512 "
                             "steps only; by default the timed steps are the other 496)")
    parser.add_argument("--lucent-frozen", action="store_true",
                        help="freeze Lucent's model weights (its README does not; then it skips weight gradients)")
    parser.add_argument("--lucent-no-upsample", action="store_true",
                        help="render_vis(fixed_image_size=size) instead of Lucent's default upsampling to 224")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps, args.lucent_batch_steps = 2, 2, 1

    git_state = _git_state()  # before importing mechscope: the source the run imports
    import mechscope
    from mechscope.vision.featvis.render import render, render_units
    from mechscope.zoo.inceptionv1 import to_lucent_state_dict

    lucent_inceptionv1, lucent_param, lucent_render, lucent_info = _import_lucent()

    torch.manual_seed(0)
    np.random.seed(0)  # Lucent's transforms draw from NumPy
    model = mechscope.load("inceptionv1", weights="random", seed=0, device="cpu")
    lucent_sd = to_lucent_state_dict(model.state_dict(), model)
    lm = lucent_inceptionv1(pretrained=False)
    missing = set(lm.state_dict()) ^ set(lucent_sd)
    if missing:
        raise SystemExit(f"state-dict keys differ between mechscope's converter and Lucent: {sorted(missing)}")
    lm.load_state_dict(lucent_sd)
    lm.eval()
    if args.lucent_frozen:
        lm.requires_grad_(False)
    hooks_per_call = [0]

    def mech_case(units: list[str]) -> Callable[[], object]:
        if len(units) == 1:
            return lambda: render(model, units[0], steps=args.steps, size=args.size, progress=False,
                                  redirect_relu=args.mech_redirect)
        return lambda: render_units(model, units, steps=args.steps, size=args.size, progress=False,
                                    redirect_relu=args.mech_redirect)

    def lucent_case(units: list[str], steps: int) -> Callable[[], object]:
        kwargs = {"fixed_image_size": args.size} if args.lucent_no_upsample else {}

        def run() -> None:
            for unit in units:  # one after another, as Lucent renders several units
                with _drop_new_hooks(lm) as added:
                    lucent_render.render_vis(lm, unit, param_f=lambda: lucent_param.image(args.size),
                                             thresholds=(steps,), show_image=False, progress=False, **kwargs)
                hooks_per_call[0] = added[0]

        return run

    # The dense conv the machine's throughput is measured with: 256->256 3x3, batch 8 x 56x56, fwd + bwd.
    conv = nn.Conv2d(256, 256, 3, padding=1)
    conv_x = torch.randn(8, 256, 56, 56, requires_grad=True)
    conv_macs = 8 * 56 * 56 * 256 * 256 * 9
    conv_flops = 3 * 2 * conv_macs  # forward, grad wrt input, grad wrt weight

    def conv_case() -> None:
        conv.zero_grad(set_to_none=True)
        conv_x.grad = None
        conv(conv_x).sum().backward()

    layers = {}
    for single in args.units.split(","):
        layer, channel = single.split(":")
        batch = [f"{layer}:{int(channel) + i}" for i in range(BATCH)]
        layers[layer] = {"single": [single], "batch": batch}

    # (name, library, layer, units rendered per call, steps per unit per call, callable)
    plan: list[tuple[str, str, str, int, int, Callable[[], object]]] = [("conv_peak", "", "", 0, 1, conv_case)]
    for layer, u in layers.items():
        plan += [
            (f"mechscope_{layer}_1", "mechscope", layer, 1, args.steps, mech_case(u["single"])),
            (f"lucent_{layer}_1", "lucent", layer, 1, args.steps, lucent_case(u["single"], args.steps)),
            (f"mechscope_{layer}_{BATCH}", "mechscope", layer, BATCH, args.steps, mech_case(u["batch"])),
            (f"lucent_{layer}_{BATCH}", "lucent", layer, BATCH, args.lucent_batch_steps,
             lucent_case(u["batch"], args.lucent_batch_steps)),
        ]

    # FLOPs of one step: hook every Conv2d / Linear that the step actually runs (one counting call per case).
    step_flops = {}
    for name, lib, layer, n_units, steps, fn in plan[1:]:
        if lib == "lucent" and n_units > 1:
            continue  # the same network and image size as the 1-unit call, per unit
        with _count_flops(model if lib == "mechscope" else lm) as tally:
            fn()
        step_flops[name] = {
            "forward_macs": tally["forward_macs"] / steps, "forward_flops": tally["forward_flops"] / steps,
            "backward_flops": tally["backward_flops"] / steps,
            "modules_run": len(tally["modules_run"]), "modules_in_backward": len(tally["modules_backward"])}
    for layer in layers:
        step_flops[f"lucent_{layer}_{BATCH}"] = {
            k: v * BATCH if "modules" not in k else v for k, v in step_flops[f"lucent_{layer}_1"].items()}

    # The counting calls above warmed every code path (Lucent's 16-unit call is its 1-unit call, repeated), so
    # only the conv needs a warm-up call before the timed rounds.
    conv_case()
    start = time.perf_counter()
    times = interleaved({name: fn for name, *_, fn in plan}, args.rounds, warmup=0)
    wall = time.perf_counter() - start

    # Per case: median seconds per optimization step (all units of the call advancing one step: for Lucent's
    # one-after-another call, one step of each of the 16 renders) and units/minute.
    cases = {}
    per_unit_step: dict[str, list[float]] = {}
    for name, lib, layer, n_units, steps, _ in plan[1:]:
        step_s = [t / steps for t in times[name]]
        per_unit_step[name] = [t / n_units for t in step_s]
        median_step = statistics.median(step_s)
        cases[name] = {
            "library": lib, "layer": layer, "units_per_call": n_units, "steps_per_unit_per_call": steps,
            "median_seconds_per_call": statistics.median(times[name]),
            "median_seconds_per_step": median_step,
            "step_seconds_min_max": [min(step_s), max(step_s)],
            "units_per_minute": n_units / (median_step * FULL_STEPS) * 60,
        }
    conv_s = statistics.median(times["conv_peak"])
    peak = conv_flops / conv_s

    ratios = {}
    for layer in layers:
        for n in (1, BATCH):
            m, luc = f"mechscope_{layer}_{n}", f"lucent_{layer}_{n}"
            r = paired_ratio(per_unit_step[luc], per_unit_step[m])  # Lucent time / mechscope time per unit-step
            r["units_per_minute_ratio_of_medians"] = cases[m]["units_per_minute"] / cases[luc]["units_per_minute"]
            r["target"] = TARGETS.get(layer)
            r["meets_target"] = r["target"] is None or r["median"] >= r["target"]
            ratios[f"{layer}_{n}"] = r
        # the batch's gain within mechscope: 16 units at once vs the 1-unit call, per unit
        ratios[f"{layer}_mechscope_batch_gain"] = paired_ratio(per_unit_step[f"mechscope_{layer}_1"],
                                                               per_unit_step[f"mechscope_{layer}_{BATCH}"])

    efficiency = {}
    for name, c in cases.items():
        f = step_flops[name]
        s = c["median_seconds_per_step"]
        # Executed: the forward plus the gradients the backward pass actually computes (mechscope freezes the
        # weights: input gradients only; Lucent by default also computes weight gradients, and its backward stops
        # at the objective's layer while its forward runs the whole network).  Nominal: 3 x the forward.
        executed = f["forward_flops"] + f["backward_flops"]
        nominal = f["forward_flops"] * 3
        efficiency[name] = {
            **f,
            "step_flops_executed": executed, "step_flops_nominal_3x": nominal,
            "achieved_flops_per_s_executed": executed / s, "achieved_flops_per_s_nominal_3x": nominal / s,
            "fraction_of_conv_peak_executed": executed / s / peak,
            "fraction_of_conv_peak_nominal_3x": nominal / s / peak,
        }

    result = {
        "benchmark": "featvis_vs_lucent",
        "machine": machine(),
        "git": git_state,
        "packages": {"mechscope": getattr(mechscope, "__version__", "dev"),
                     **lucent_info, "numpy": np.__version__},
        "settings": {
            "model": "inceptionv1", "weights": "random, seed 0; mechscope's state dict converted with "
                                               "to_lucent_state_dict and loaded into Lucent's InceptionV1",
            "size": args.size, "optimizer": "Adam lr 0.05 (both defaults)",
            "param": "FFT + decorrelated colour (both defaults)", "transforms": "Lucid's standard_transforms (both)",
            "units": {layer: u for layer, u in layers.items()},
            "rounds": args.rounds, "steps_per_call": args.steps,
            "warmup": "one untimed call of every case (the FLOP-counting calls) before the rounds",
            "lucent_steps_per_unit_in_batch_call": args.lucent_batch_steps, "quick": args.quick,
            "units_per_minute": f"units per call / (median seconds per step * {FULL_STEPS}) * 60: full "
                                f"{FULL_STEPS}-step renders; per-call setup is amortised over the timed steps",
            "mechscope": {"api": "render(model, unit, steps, size) for 1 unit; render_units(model, units, steps, "
                                 "size) for 16, one batch where element i serves unit i",
                          "redirect_relu_in_timed_steps": args.mech_redirect,
                          "note": "mechscope uses the redirected ReLU for the first 16 of 512 steps only; the timed "
                                  "steps are " + ("redirected ones" if args.mech_redirect else
                                                  "the other 496 (plain ReLU)") +
                                  "; the forward stops at the objective's layer (early exit); weights frozen; "
                                  "the model sees the transformed ~140 px image (no resize to 224)"},
            "lucent": {"api": "render_vis(lm, unit, param_f=lambda: param.image(size), thresholds=(steps,), "
                              "show_image=False, progress=False); 16 units rendered one after another",
                       "upsample_to_224": not args.lucent_no_upsample,
                       "weights_frozen": args.lucent_frozen,
                       "note": "Lucent's defaults as its README uses them: images under 224 px are upsampled to "
                               "224 after the transforms, the whole network (to softmax2) runs every step, its "
                               "redirected ReLU is on at every step, and model weights keep requires_grad (so "
                               "weight gradients are computed too). render_vis never removes the forward hooks it "
                               f"adds ({hooks_per_call[0]} per call); the benchmark removes them after each call, "
                               "otherwise they pile up over repeated calls on one model and slow Lucent down."},
            "conv_peak": {"op": "Conv2d(256, 256, 3, padding=1) on [8, 256, 56, 56], forward + backward "
                                "(input and weight gradients)", "flops": conv_flops},
            "flop_counting": "forward hooks on every Conv2d / Linear the step runs (grad-enabled forwards only), "
                             "averaged over one counting call; forward FLOPs = 2 x MACs. 'nominal_3x' = 3 x forward "
                             "FLOPs. 'executed' = forward + the gradients actually computed: a tensor hook on each "
                             "output tells whether the backward reaches the module; then 2 x MACs for the input "
                             "gradient, plus 2 x MACs for the weight gradient when the weight requires grad "
                             "(mechscope freezes weights; Lucent's README usage does not). Convolutions only: "
                             "transforms, FFT parameterization, LRN, pooling and Adam are not counted",
        },
        "timed_wall_seconds": wall,
        "conv_peak": {"median_seconds": conv_s, "flops_per_s": peak},
        "cases": cases,
        "speedup_mechscope_over_lucent": ratios,
        "step_efficiency": efficiency,
    }
    variant = "".join(suffix for flag, suffix in [(args.quick, "_quick"), (args.mech_redirect, "_mech_redirect"),
                                                  (args.lucent_frozen, "_lucent_frozen"),
                                                  (args.lucent_no_upsample, "_lucent_no_upsample")] if flag)
    path = write("featvis" + variant, result)

    mach = result["machine"]
    print(f"Feature visualization at {args.size} px, InceptionV1 (same random weights), {args.rounds} interleaved "
          f"rounds of {args.steps} steps per call, on {mach['device']} ({mach['cpu']}, {mach['torch_threads']} "
          f"threads), timed part {wall:.0f} s")
    print(f"  dense conv 256->256 3x3, batch 8 x 56x56, fwd+bwd: {conv_s * 1e3:.0f} ms = {peak / 1e9:.1f} GFLOP/s")
    print("  GFLOP/step: forward + the gradients actually computed (convolutions and the classifier only)")
    print(f"  {'case':<22} {'s/step':>8} {'units/min':>10}   {'GFLOP/step':>10} {'GFLOP/s':>8} {'of peak':>8}")
    for name, c in cases.items():
        e = efficiency[name]
        print(f"  {name:<22} {c['median_seconds_per_step']:8.3f} {c['units_per_minute']:10.2f}   "
              f"{e['step_flops_executed'] / 1e9:10.2f} {e['achieved_flops_per_s_executed'] / 1e9:8.1f} "
              f"{e['fraction_of_conv_peak_executed']:8.1%}")
    print("  speedup, mechscope units/min over Lucent's (paired per round: median [min, max]):")
    for key, r in ratios.items():
        if "batch_gain" in key:
            continue
        layer = key.split("_")[0]
        target = f"target >= {r['target']:.1f}x: {'met' if r['meets_target'] else 'NOT met'}" if r["target"] else ""
        print(f"    {key:<12} {r['median']:6.2f}x [{r['min']:.2f}, {r['max']:.2f}]   {target}")
    for layer in layers:
        e1, e16 = efficiency[f"mechscope_{layer}_1"], efficiency[f"mechscope_{layer}_{BATCH}"]
        print(f"  mechscope step at {layer}: {e1['fraction_of_conv_peak_executed']:.1%} (1 unit), "
              f"{e16['fraction_of_conv_peak_executed']:.1%} ({BATCH} units) of the conv peak counting executed "
              f"FLOPs (fwd + input grad); {e1['fraction_of_conv_peak_nominal_3x']:.1%} / "
              f"{e16['fraction_of_conv_peak_nominal_3x']:.1%} counting fwd+bwd as 3x fwd")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
