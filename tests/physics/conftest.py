"""Shared helpers for the physics tests: small chips, a ticking virtual clock, CI helpers."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from scipy import stats

from cimlab.physics import ChipProfile, ReRAMChip, load_profile
from cimlab.physics.profile import Geometry

#: two-sided false-alarm probability of every statistical check (seeds are fixed, so a check
#: either passes or fails deterministically; this sets how wide the tolerance is)
ALPHA = 1e-4


def small_profile(n_tiles: int = 4, rows: int = 256, cols: int = 64,
                  base: ChipProfile | None = None) -> ChipProfile:
    p = base or load_profile("default")
    return replace(p, geometry=Geometry(n_tiles=n_tiles, rows=rows, cols=cols))


class Ticker:
    """Virtual clock: every call returns a time 1 us later."""

    def __init__(self, start: float = 0.0, dt: float = 1e-6) -> None:
        self.now = start
        self.dt = dt

    def __call__(self) -> float:
        self.now += self.dt
        return self.now


def var_ratio_ci(n: int, alpha: float = ALPHA) -> tuple[float, float]:
    """CI of sample-variance / true-variance for n normal samples (chi-square)."""
    lo = stats.chi2.ppf(alpha / 2, n - 1) / (n - 1)
    hi = stats.chi2.ppf(1 - alpha / 2, n - 1) / (n - 1)
    return lo, hi


def binom_ci(n: int, p: float, alpha: float = ALPHA) -> tuple[int, int]:
    """Acceptance interval of a Binomial(n, p) count."""
    return int(stats.binom.ppf(alpha / 2, n, p)), int(stats.binom.ppf(1 - alpha / 2, n, p))


def z_crit(alpha: float = ALPHA) -> float:
    return float(stats.norm.ppf(1 - alpha / 2))


@pytest.fixture
def ticker() -> Ticker:
    return Ticker()


@pytest.fixture
def chip4() -> ReRAMChip:
    return ReRAMChip(small_profile(4), seed=1234)


__all__ = ["ALPHA", "Ticker", "binom_ci", "math", "small_profile", "var_ratio_ci", "z_crit"]
