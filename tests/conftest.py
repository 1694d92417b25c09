import pytest
import torch

import mechscope


@pytest.fixture(scope="session")
def inception():
    """InceptionV1 with seeded random weights, shared by the tests that only read it."""
    return mechscope.load("inceptionv1", weights="random", seed=0, device="cpu")


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """Never touch the user's cache: every test gets its own."""
    monkeypatch.setenv("MECHSCOPE_CACHE", str(tmp_path / "cache"))
    torch.manual_seed(0)
