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


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one intra-op thread for a test module (restored after): the models of these tests are tiny, and on
    a small shared machine one thread is faster and steadier than a pool that spins.  Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
