"""One frozen dataclass per device effect: the statistical model of a ReRAM array.

Every constant is a field declared with :func:`cimlab.params.param` (SI unit, bounds, doc) and
validated in ``__post_init__``; nothing is clamped. Each effect carries ``source`` (where its
numbers come from: a paper, or "fit") and ``fit`` (:class:`~cimlab.models.params.FitInfo`, or
``None`` for literature defaults). Formulas accept floats, NumPy arrays or torch tensors and
return the same kind (torch is imported only when given a tensor).

Conductance ``g`` is in S; the normalised conductance used by the polynomial forms is
``x = g / g_ref`` with ``g_ref`` the window's ``g_max`` at fit time.

This module holds the window, programming error, read noise, stuck cells and wire
resistance; relaxation and retention live in :mod:`cimlab.models.effects_relaxation`, binary
operation in :mod:`cimlab.models.effects_binary` and the sigma / rate forms in
:mod:`cimlab.models.effects_forms`. Every public name is importable from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models._array import asarray, is_torch, rand, xp
from cimlab.models.effects_binary import BinaryCondition, BinaryStates, paper003_conditions
from cimlab.models.effects_forms import RATE_FORMS, SIGMA_FORMS, TABLE_X, _check_sigma, _sigma
from cimlab.models.effects_relaxation import EA_PRIOR_RANGE_EV, K_B_EV, Relaxation, Retention
from cimlab.models.params import FitInfo
from cimlab.params import check, param

# re-exported: ``from cimlab.models.effects import X`` keeps working for every name that lived
# here before the split into effects_forms / effects_relaxation / effects_binary
__all__ = [
    "EA_PRIOR_RANGE_EV", "K_B_EV", "RATE_FORMS", "SIGMA_FORMS", "TABLE_X", "BinaryCondition",
    "BinaryStates", "ConductanceWindow", "ProgrammingError", "ReadNoise", "Relaxation",
    "Retention", "StuckAt", "WireResistance", "paper003_conditions",
]


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConductanceWindow:
    """The programmable conductance window and the number of analog levels.

    Defaults: 2 uS .. 40 uS, onto which weights in [-0.2, 0.2] map linearly (paper 000, Lee et
    al.; NeuRRAM and techC also use Gmax = 40 uS); 16 levels = 4-bit cells (papers 001, 004).
    """

    g_min: float = param(2e-6, unit="S", lo=0.0, hi=1e-2, doc="lowest programmable conductance")
    g_max: float = param(
        40e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2, doc="highest programmable conductance"
    )
    levels: int = param(16, unit="1", lo=2, hi=65536, doc="number of programmable levels")
    source: str = param("paper 000 (2-40 uS window); papers 001/004 (4-bit cells)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        if self.g_max <= self.g_min:
            raise ConfigError(None, "g_max", f"a value above g_min = {self.g_min:g} S", self.g_max)

    @property
    def g_mid(self) -> float:
        """Middle of the window [S]."""
        return 0.5 * (self.g_min + self.g_max)

    @property
    def span(self) -> float:
        """Width of the window ``g_max - g_min`` [S]."""
        return self.g_max - self.g_min

    def level_conductances(self) -> np.ndarray:
        """The ``levels`` equally spaced target conductances [S] from g_min to g_max."""
        return np.linspace(self.g_min, self.g_max, self.levels)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProgrammingError:
    """Error of the conductance right after programming: ``g = g_target + offset + sigma(g) z``.

    ``sigma(g) = s0 + s1 x + s2 x^2``, ``x = g / g_ref`` (``quadrature``: ``sqrt(s0^2 +
    (s1 x)^2)``); ``form`` names which coefficients are free (chosen by BIC when fitted).
    Default: single-shot programming, sigma = 0.07 of the window span, constant (paper 000,
    "program errors are around 0.07 in standard deviation"; 0.07 * 38 uS = 2.66 uS).
    ``read_noise`` "included": sigma was fitted from reads without a read-noise measurement
    to remove, so it already holds one read's noise (:meth:`DeviceModel.predicted_moments`
    then does not add it a second time).
    """

    mode: str = param(
        "single_shot", choices=("single_shot", "verify"), doc="how cells were programmed"
    )
    form: str = param("constant", choices=tuple(SIGMA_FORMS), doc="sigma(g) model form")
    g_ref: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="normalising conductance")
    s0: float = param(2.66e-6, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: constant term")
    s1: float = param(0.0, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: term linear in g/g_ref")
    s2: float = param(0.0, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: term in (g/g_ref)^2")
    mean_offset: float = param(0.0, unit="S", lo=-1e-3, hi=1e-3, doc="mean of g - g_target")
    time_s: float = param(0.0, unit="s", lo=0.0, doc="time after programming of the reads fitted")
    read_noise: str = param(
        "excluded", choices=("excluded", "included"),
        doc="whether sigma already contains one read's noise (fitted without a read-noise "
        "measurement): then a predicted read spread must not add it again")
    source: str = param("paper 000 (program error 0.07 of range)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        _check_sigma(self, "programming sigma")

    def sigma(self, g: Any):
        """Standard deviation [S] of the programmed conductance at target ``g`` [S]."""
        return _sigma(self, g)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReadNoise:
    """Cycle-to-cycle fluctuation of one read: ``g_read = g + sigma(g, t) z``.

    ``sigma(g) = s0 + s1 x + s2 x^2`` (``x = g / g_ref``; ``quadrature`` form:
    ``sqrt(s0^2 + (s1 x)^2)``), multiplied by
    ``1 + time_slope * log10(1 + t / t_ref_s)`` where a time dependence was measured (0 = none).
    Default: relative sigma 4 % at 2 uS falling linearly to 1 % at 40 uS (paper 000, "read
    fluctuations are within 0.01~0.04 ... depending on its conductance levels"), i.e. the
    linear form through (2 uS, 0.08 uS) and (40 uS, 0.40 uS).
    """

    form: str = param("linear", choices=tuple(SIGMA_FORMS), doc="sigma(g) model form")
    g_ref: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="normalising conductance")
    s0: float = param(6.3158e-8, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: constant term")
    s1: float = param(3.3684e-7, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: term linear in g/g_ref")
    s2: float = param(0.0, unit="S", lo=-1e-3, hi=1e-3, doc="sigma: term in (g/g_ref)^2")
    time_slope: float = param(
        0.0, unit="1", lo=-1.0, hi=10.0, doc="relative sigma growth per decade of time"
    )
    t_ref_s: float = param(1.0, unit="s", lo=0.0, lo_open=True, doc="time scale of time_slope")
    source: str = param("paper 000 (read fluctuation 0.01-0.04, level dependent)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        _check_sigma(self, "read-noise sigma")

    def sigma(self, g: Any, t_s: Any = None):
        """Standard deviation [S] of one read at conductance ``g`` [S] (at time ``t_s`` [s])."""
        s = _sigma(self, g)
        if t_s is None or self.time_slope == 0.0:
            return s
        t = asarray(t_s)
        return s * (1.0 + self.time_slope * xp(t).log10(1.0 + t / self.t_ref_s))


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StuckAt:
    """Cells that no longer switch. Default: 1 % of cells stuck, 83.8 % of them stuck-on and
    16.2 % stuck-off (paper 004, ReMeCo); stuck-on cells sit at g_max, stuck-off at g_min."""

    p_stuck_on: float = param(0.00838, unit="1", lo=0.0, hi=1.0, doc="fraction stuck at high G")
    p_stuck_off: float = param(0.00162, unit="1", lo=0.0, hi=1.0, doc="fraction stuck at low G")
    g_on_siemens: float = param(
        40e-6, unit="S", lo=0.0, hi=1.0, doc="conductance of stuck-on cells"
    )
    g_off_siemens: float = param(
        2e-6, unit="S", lo=0.0, hi=1.0, doc="conductance of stuck-off cells"
    )
    source: str = param("paper 004 (1 % stuck, 16.2 % off / 83.8 % on)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        if self.p_stuck_on + self.p_stuck_off > 1.0:
            raise ConfigError(
                None, "p_stuck_off", "p_stuck_on + p_stuck_off <= 1", self.p_stuck_off
            )

    def sample(self, shape: tuple[int, ...], generator: Any):
        """int8 mask: 0 ok, +1 stuck-on, -1 stuck-off (NumPy or torch, by ``generator``)."""
        u = rand(tuple(shape), generator)
        on = u < self.p_stuck_on
        off = (u >= self.p_stuck_on) & (u < self.p_stuck_on + self.p_stuck_off)
        if is_torch(generator):
            import torch

            return on.to(torch.int8) - off.to(torch.int8)
        return on.astype(np.int8) - off.astype(np.int8)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WireResistance:
    """Resistance of one word/bit-line segment between adjacent cells (IR drop in MVM).
    Default N(2, 0.5) ohm, i.e. mean 2 ohm, variance 0.5 ohm^2 (paper 004, ReMeCo)."""

    r_segment_ohm: float = param(2.0, unit="ohm", lo=0.0, hi=1e4, doc="mean segment resistance")
    r_sigma_ohm: float = param(
        math.sqrt(0.5), unit="ohm", lo=0.0, hi=1e4, doc="segment-to-segment std"
    )
    source: str = param("paper 004 (line resistance ~ N(2, 0.5) ohm)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
