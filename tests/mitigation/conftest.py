"""Shared, module-cached trained networks for the mitigation tests (digits, fixed seeds)."""

from __future__ import annotations

import functools

import pytest
import torch


@functools.cache
def _digits(image_size: int | None):
    from cimlab.sim.data import load_dataset

    return load_dataset("digits", seed=0, image_size=image_size)


@functools.cache
def _trained(name: str, image_size: int | None, epochs: int, seed: int):
    from cimlab.sim.nets import build
    from cimlab.sim.training import TrainConfig, train

    ds = _digits(image_size)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build(name, ds.in_shape, ds.n_classes)
    train(net, ds, TrainConfig(epochs=epochs), generator=torch.Generator().manual_seed(seed),
          progress=False)  # fmt: skip
    return net.eval()


@pytest.fixture(scope="session")
def digits():
    return _digits(None)


@pytest.fixture(scope="session")
def digits16():
    return _digits(16)


@pytest.fixture(scope="session")
def trained():
    """``trained(name, image_size, epochs, seed)`` -> a trained net (cached; do not modify)."""
    return _trained


@pytest.fixture(autouse=True)
def _one_thread():
    """The mitigation tests use small networks: one intra-op thread is several times cheaper
    than two on the 2-core CI machine (and the results do not depend on it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
