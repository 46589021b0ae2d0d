"""Target conductance levels of a plan experiment: absolute, or relative to a measured window.

:class:`LevelSet` is the ``levels`` table of an ``[[experiment]]``: ``levels`` targets spaced
linearly over [g_min_siemens, g_max_siemens] [S], or (``relative = true``) over fractions of
the chip's measured window (:mod:`cimlab.procedures.window`), resolved to absolute targets at
run start. Part of :mod:`cimlab.procedures.plan`, which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, param

#: Conductance window of the default chip profile, paper 000 (2e-6 .. 4e-5 S; NeuRRAM also
#: used Gmax = 40 uS).
G_MIN_DEFAULT = 2e-6
G_MAX_DEFAULT = 40e-6


@dataclass(frozen=True)
class LevelSet:
    """Target conductance levels: ``levels`` values spaced linearly over [g_min_siemens,
    g_max_siemens].

    ``relative = true``: the levels are stated relative to the chip's *measured* window
    instead, spaced linearly from ``lo`` to ``hi`` (fractions, 0 = the RESET-saturated
    conductance, 1 = the SET-saturated one). The window is measured at run start on
    ``window_cells`` of the experiment's cells (:mod:`cimlab.procedures.window`: a short
    SET/RESET saturation) and :meth:`resolve` turns the set into absolute targets, which is
    what the run records; ``g_min_siemens``/``g_max_siemens`` are then not used."""

    levels: int = param(16, unit="1", lo=1, hi=256, doc="number of target levels")
    g_min_siemens: float = param(G_MIN_DEFAULT, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                           doc="lowest target conductance")
    g_max_siemens: float = param(G_MAX_DEFAULT, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                           doc="highest target conductance")
    relative: bool = param(False, doc="levels relative to the measured window (lo .. hi)")
    lo: float = param(0.05, unit="1", lo=0.0, hi=1.0,
                      doc="relative levels: lowest target as a fraction of the window")
    hi: float = param(0.95, unit="1", lo=0.0, hi=1.0,
                      doc="relative levels: highest target as a fraction of the window")
    window_cells: int = param(64, unit="1", lo=8, hi=65536,
                              doc="relative levels: cells used to measure the window")
    window_icc_a: float = param(0.0, unit="A", lo=0.0, hi=5e-3,
                                doc="relative levels: SET compliance of the saturation that "
                                "defines the window top (0: the verify's strongest gate)")

    def __post_init__(self) -> None:
        check(self)
        if self.relative:
            if self.hi <= self.lo:
                raise ConfigError(None, "hi", f"a fraction above lo = {self.lo:g}", self.hi)
        elif self.g_max_siemens <= self.g_min_siemens:
            raise ConfigError(
                None,
                "g_max_siemens",
                f"a value above g_min_siemens = {self.g_min_siemens:g} S",
                self.g_max_siemens,
            )

    def resolve(self, g_lo_s: float, g_hi_s: float) -> LevelSet:
        """The absolute level set for a measured window [g_lo_s, g_hi_s] [S] (self when the
        set is already absolute). ConfigError when the window is empty."""
        if not self.relative:
            return self
        if not (0.0 <= g_lo_s < g_hi_s):
            raise ConfigError(None, "levels.relative",
                              "a measured window with g_hi > g_lo >= 0 S (SET/RESET "
                              "saturation found no window: check the station's pulse limits)",
                              (g_lo_s, g_hi_s))
        span = g_hi_s - g_lo_s
        return LevelSet(levels=self.levels, g_min_siemens=g_lo_s + self.lo * span,
                        g_max_siemens=g_lo_s + self.hi * span)

    def targets(self) -> np.ndarray:
        """Target conductances [S], one per level (ascending)."""
        if self.relative:
            raise ConfigError(None, "levels.relative",
                              "levels resolved from a measured window before use "
                              "(LevelSet.resolve / cimlab.procedures.window)", True)
        if self.levels == 1:
            return np.array([self.g_max_siemens])
        return np.linspace(self.g_min_siemens, self.g_max_siemens, self.levels)

    def assign(self, n_cells: int, seed: int) -> np.ndarray:
        """Level index per cell: balanced (each level within one cell of n/levels), shuffled."""
        idx = np.arange(n_cells) % self.levels
        return np.random.default_rng(seed).permutation(idx).astype(np.int64)
