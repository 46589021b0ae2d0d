"""Shared helpers of the simulator tests: device models with known truth, a trained small CNN.

Kept out of conftest.py so that the dataset and network test files are unaffected.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import nn

from cimlab.models import ConductanceWindow, DeviceModel, ProgrammingError


def dm_default() -> DeviceModel:
    return DeviceModel.default()


def dm_untruncated() -> DeviceModel:
    """Default model with a 10-40 uS window and a 1 uS programming sigma, so a Gaussian draw
    never reaches 0 S (the floor at 0 S would otherwise bias variance checks)."""
    dm = DeviceModel.default()
    return dm.replace(
        window=ConductanceWindow(g_min=10e-6, g_max=40e-6, levels=16),
        programming=ProgrammingError(s0=1e-6),
    )


def binomial_tol(p: float, n: int, k: float = 4.5) -> float:
    """``k`` standard deviations of a binomial fraction (plus one count)."""
    return k * math.sqrt(max(p * (1 - p), 1e-12) / n) + 1.0 / n


class SmallCNN(nn.Sequential):
    """Conv-BN-ReLU x3 + FC on 8x8 digits (a scaled-down paper-000 layout)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(24, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
            nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4, 10),
        )  # fmt: skip


@functools.lru_cache(maxsize=1)
def digits():
    """Embedded digits with raw pixel intensities in [0, 1] (not standardised): like paper
    000's images, the first layer's inputs are mostly non-zero and all positive."""
    from cimlab.sim.data import load_dataset

    return load_dataset("digits", standardize=False)


@functools.lru_cache(maxsize=1)
def trained_cnn() -> nn.Module:
    """SmallCNN trained 4 epochs on the embedded digits (seeded; ~ 0.99 test accuracy)."""
    ds = digits()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = SmallCNN()
    gen = torch.Generator().manual_seed(0)
    x, y = ds.x_train, ds.y_train
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    for _ in range(4):
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


def test_loader(batch: int = 450):
    ds = digits()
    return [(ds.x_test[i : i + batch], ds.y_test[i : i + batch])
            for i in range(0, len(ds.x_test), batch)]  # fmt: skip


test_loader.__test__ = False  # not a pytest test
