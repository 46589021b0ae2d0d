"""Accuracy-resilience curves of the training mitigations (HA-SGD, error-aware BNN): the
average over seeds and the finish of their plots. Each study keeps its own columns (the
perturbation it trains and tests at) and its own figure contents."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cimlab.sim import figures


def summarize_seeds(curves: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Average curve rows (one per seed: ``acc_mean``, ``acc_std``, ``seed``) over seeds per
    ``keys``: ``acc`` (mean of seed means), ``seed_std`` (spread between seeds, 0 for one
    seed), ``trial_std`` (mean spread between programmed copies), ``seeds`` (count)."""
    g = curves.groupby(list(keys), as_index=False)
    out = g.agg(
        acc=("acc_mean", "mean"),
        seed_std=("acc_mean", "std"),
        trial_std=("acc_std", "mean"),
        seeds=("seed", "nunique"),
    )
    out["seed_std"] = out["seed_std"].fillna(0.0)
    return out


def save_accuracy_plot(fig: Any, ax: Any, path: Path, title: str, grid: str = "major") -> Path:
    """Finish an accuracy-curve plot (y axis "test accuracy", ``title``, ``grid`` lines
    "major" or "both", legend) and write it (:func:`cimlab.sim.figures.save`: PNG at its
    default dpi, or the command's --format/--dpi); returns the path written."""
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3, which=grid)
    ax.legend(fontsize=8)
    return figures.save(fig, path)


__all__ = ["save_accuracy_plot", "summarize_seeds"]
