"""Helpers shared by the paper reproductions (:mod:`cimlab.mitigation.reproduce`): training a
network with a fixed seed, test accuracy, writing the tables as CSV, mean and spread."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn


def _trained(name: str, ds, epochs: int, seed: int, progress: bool, **kw) -> nn.Module:
    from cimlab.sim.nets import build
    from cimlab.sim.training import TrainConfig, train

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build(name, ds.in_shape, ds.n_classes, **kw)
    train(net, ds, TrainConfig(epochs=epochs), generator=torch.Generator().manual_seed(seed),
          progress=progress, desc=f"train {name}")  # fmt: skip
    return net.eval()


@torch.no_grad()
def _acc(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> float:
    net.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
    return correct / len(x)


def _write_tables(out: Path, paper: str, tables: dict[str, pd.DataFrame]) -> list[Path]:
    """Write each table as ``out/paper<paper>_<name>.csv``; returns the files."""
    files = []
    for name, df in tables.items():
        p = out / f"paper{paper}_{name}.csv"
        df.to_csv(p, index=False)
        files.append(p)
    return files


def _ms(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(list(values), dtype=torch.float64)
    return float(t.mean()), (float(t.std()) if len(t) > 1 else 0.0)
