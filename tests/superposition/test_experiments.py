import json

import pytest
import torch

from mechscope.errors import MechscopeError, UnknownNameError
from mechscope.superposition.experiments import EXPERIMENTS, _phase_of, run_experiment


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_every_experiment_runs_and_writes_its_results(name, tmp_path):
    if name == "sae_recovery":   # it also trains autoencoders: tiny budgets for both
        from mechscope.superposition.experiments import sae_recovery, save_result

        result = sae_recovery(steps=10, k=1, progress=False, sae_steps=5)
        save_result(result, tmp_path)
    else:
        result = run_experiment(name, tmp_path, steps=10, k=1, progress=False)
    payload = json.loads((tmp_path / "results.json").read_text())
    assert payload["experiment"] == name and len(payload["instances"]) == len(result.instances) > 0
    assert all((tmp_path / f).exists() for f in payload["figures"]) and payload["figures"]
    from safetensors.torch import load_file

    weights = load_file(str(tmp_path / "weights.safetensors"))
    assert set(weights) == set(result.weights)
    W = next(iter(weights.values()))
    assert W.dim() == 3


def test_phase_classification_by_construction():
    W = torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]], [[1.0], [-1.0]], [[1.0], [1.0]], [[0.1], [0.1]]])
    assert _phase_of(W) == ["feature 1 only", "feature 2 only", "superposition", "both, same side", "neither"]


def test_unknown_experiment_and_bad_steps_are_refused():
    with pytest.raises(UnknownNameError, match="intro"):
        run_experiment("intros")
    with pytest.raises(MechscopeError, match="steps must be positive"):
        run_experiment("intro", steps=0)


def test_sae_recovery_and_the_sae_toy_verb_share_one_sae_recipe(monkeypatch, tmp_path):
    """The toy SAE's optimiser settings have one owner (``toy_sae_config``): the experiment and ``sae toy`` (its
    library body ``sae_toy``) hand ``sae_on_toy`` the same lr and dead-latent schedule."""
    from mechscope.superposition import experiments

    seen = []

    class Stop(Exception):
        pass

    def capture(trained, instance, config, **kw):
        seen.append(config)
        raise Stop

    monkeypatch.setattr(experiments, "sae_on_toy", capture)
    for run in (lambda: experiments.sae_recovery(steps=5, k=1, progress=False, sae_steps=5),
                lambda: experiments.sae_toy(tmp_path, toy_steps=5, steps=5, progress=False)):
        try:
            run()
        except Stop:
            pass
    assert len(seen) == 2
    recipe = [(c.lr, c.resample_every, c.dead_after, c.kind, c.l1) for c in seen]
    assert recipe[0] == recipe[1] == (experiments.TOY_SAE_LR, experiments.TOY_SAE_RESAMPLE_EVERY,
                                      experiments.TOY_SAE_DEAD_AFTER, "relu", 0.3)
