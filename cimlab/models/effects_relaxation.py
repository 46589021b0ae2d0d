"""Relaxation after programming and its thermal acceleration (retention): two device effects.

:class:`Relaxation` is the growth of the conductance spread and the mean drift with the
(equivalent room-temperature) time since programming; :class:`Retention` is the Arrhenius
acceleration of that clock at bake temperatures. Part of :mod:`cimlab.models.effects`, which
re-exports every name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models._array import asarray, is_torch, xp
from cimlab.models.effects_forms import (
    _TABLE_NAMES,
    RATE_FORMS,
    TABLE_X,  # noqa: F401  (named in Relaxation's docstring)
    _check_form,
    _check_nonneg,
    _poly,
    _table_rate,
)
from cimlab.models.params import FitInfo
from cimlab.params import check, param
from cimlab.units import K_B_EV


@dataclass(frozen=True)
class Relaxation:
    """Conductance relaxation after programming, at room temperature (equivalent time t).

    Clock: ``L(t) = log10(1 + t / t0_s)`` decades. The extra variance grows linearly in L,
    level dependent: ``var(g, t) = k(g) L(t)`` with ``k`` [S^2 per decade] one of

    * ``constant`` / ``linear`` / ``polynomial``: ``k0 + k1 x + k2 x^2``, ``x = g / g_ref``;
    * ``peaked``: ``k_peak (g/g_peak)^shape_a exp(shape_a (1 - g/g_peak))`` (largest at
      ``g_peak``, vanishing at 0: the shape of the techC data, reference-data/);
    * ``table``: tabulated, ``kt0 .. kt8`` at ``g/g_ref`` = :data:`TABLE_X` (0 .. 1.5),
      linear in between (fitted with a smoothness penalty; no assumed shape).

    The mean relaxes towards ``g_center`` by ``mean_shift(g, t) = drift(g) L(t)`` with
    ``drift = m_max tanh((g_center - g) / g_width)`` (``mean_form`` "tanh") or
    ``m_max (g_center - g) / g_width`` ("linear"); ``m_max`` [S per decade].

    Defaults: variance from the published NeuRRAM / Stanford relaxation figures quoted in
    DESIGN.md (sigma 0.35 uS right after a +-1 uS verify, ~2.3 uS at 1 s, ~3.8 uS at 1e5 s):
    k0 = (3.8^2 - 2.3^2) / 5 = 1.83 uS^2 per decade (DESIGN: 1.2-1.9), t0 such that
    0.35^2 + k0 L(1 s) = 2.3^2 (t0 = 1.5 ms). Mean: towards 5.6 uS at up to 0.27 uS per decade
    (tanh width 7 uS): the techC drift (reference-data README: ~-2 uS at 40 uS after 1e5 s).
    """

    form: str = param("constant", choices=tuple(RATE_FORMS), doc="k(g) model form")
    g_ref: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="normalising conductance")
    t0_s: float = param(1.5e-3, unit="s", lo=1e-12, hi=1e12, doc="onset time of relaxation")
    k0: float = param(1.83e-12, unit="S^2", lo=-1e-6, hi=1e-6, doc="variance per decade: const")
    k1: float = param(0.0, unit="S^2", lo=-1e-6, hi=1e-6, doc="variance per decade: x term")
    k2: float = param(0.0, unit="S^2", lo=-1e-6, hi=1e-6, doc="variance per decade: x^2 term")
    k_peak: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="peaked form: largest rate")
    g_peak: float = param(
        14e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2, doc="peaked form: level of the peak"
    )
    shape_a: float = param(1.0, unit="1", lo=0.0, hi=20.0, doc="peaked form: shape exponent")
    kt0: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: rate at g = 0")
    kt1: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 0.1875 g_ref")
    kt2: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 0.375 g_ref")
    kt3: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 0.5625 g_ref")
    kt4: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 0.75 g_ref")
    kt5: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 0.9375 g_ref")
    kt6: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 1.125 g_ref")
    kt7: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 1.3125 g_ref")
    kt8: float = param(0.0, unit="S^2", lo=0.0, hi=1e-6, doc="table form: at 1.5 g_ref")
    mean_form: str = param("tanh", choices=("linear", "tanh"), doc="drift(g) model form")
    m_max: float = param(0.27e-6, unit="S", lo=-1e-3, hi=1e-3, doc="drift per decade scale")
    g_center: float = param(5.6e-6, unit="S", lo=-1e-3, hi=1e-2, doc="means relax towards it")
    g_width: float = param(7e-6, unit="S", lo=0.0, lo_open=True, hi=1e-2, doc="drift width")
    source: str = param(
        "DESIGN.md (NeuRRAM / Stanford relaxation figures); techC drift (reference-data)",
        doc="origin",
    )
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        if self.form != "table":
            for name in _TABLE_NAMES:
                if getattr(self, name) != 0.0:
                    raise ConfigError(None, name, f"0 for form '{self.form}'",
                                      getattr(self, name))
        if self.form in ("peaked", "table"):
            for name in ("k0", "k1", "k2") + (("k_peak",) if self.form == "table" else ()):
                if getattr(self, name) != 0.0:
                    raise ConfigError(None, name, f"0 for form '{self.form}'",
                                      getattr(self, name))
        else:
            _check_form(self, RATE_FORMS, ("k0", "k1", "k2"))
            if self.k_peak != 0.0:
                raise ConfigError(None, "k_peak", f"0 for form '{self.form}'", self.k_peak)
            _check_nonneg(self, ("k0", "k1", "k2"), "relaxation variance rate k(g)")

    def decades(self, t_s: Any):
        """``L(t) = log10(1 + t / t0)``: the relaxation clock in decades (dimensionless)."""
        t = asarray(t_s)
        return xp(t).log10(1.0 + t / self.t0_s)

    def rate(self, g: Any):
        """``k(g)``: variance growth [S^2 per decade] at conductance ``g`` [S]."""
        if self.form == "peaked":
            g = asarray(g)
            x = (g.clamp_min(0.0) if is_torch(g) else np.maximum(g, 0.0)) / self.g_peak
            return self.k_peak * x**self.shape_a * xp(x).exp(self.shape_a * (1.0 - x))
        if self.form == "table":
            return _table_rate(tuple(getattr(self, n) for n in _TABLE_NAMES), g, self.g_ref)
        return _poly(self.k0, self.k1, self.k2, g, self.g_ref)

    def variance(self, g: Any, t_s: Any):
        """Extra variance [S^2] after equivalent room-temperature time ``t_s`` [s]."""
        return self.rate(g) * self.decades(t_s)

    def sigma(self, g: Any, t_s: Any):
        """Extra standard deviation [S] after equivalent room-temperature time ``t_s`` [s]."""
        v = self.variance(g, t_s)
        return xp(v).sqrt(v)

    def drift(self, g: Any):
        """Mean drift per decade [S] of a cell programmed to ``g`` [S] (towards g_center)."""
        u = (self.g_center - asarray(g)) / self.g_width
        if self.mean_form == "tanh":
            return self.m_max * xp(u).tanh(u)
        return self.m_max * u

    def mean_shift(self, g: Any, t_s: Any):
        """Mean drift [S] of a cell programmed to ``g`` after equivalent time ``t_s`` [s]."""
        return self.drift(g) * self.decades(t_s)


#: Published activation energies of HfOx ReRAM retention [eV] (DESIGN.md: 1.1 to 2.25 eV).
#: With bakes at one temperature only, Ea is not identifiable: the retention fit keeps the
#: model's prior value (:attr:`Retention.ea_ev`, default the low end) and this range is
#: propagated into :func:`cimlab.models.extrapolate.extrapolate_retention`.
EA_PRIOR_RANGE_EV = (1.1, 2.25)


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Retention:
    """Thermal acceleration of relaxation (Arrhenius), from bakes at several temperatures.

    Time at temperature T counts as ``acceleration(T)`` times as much room-temperature
    (``t_ref_k``) time: ``AF(T) = exp(Ea/kB (1/T_ref - 1/T))``. The relaxation onset time at
    T is ``t0(T) = tau0_s exp(Ea / (kB T))`` (prefactor ``tau0_s``).
    ``t_fail_k`` > 0: bakes at or above this temperature left the Arrhenius line (a
    technology failing above some temperature); the fit excluded them from Ea and
    extrapolation refuses to use the law there.
    Default Ea = 1.1 eV, the low end of published HfOx values (1.1-2.25 eV, DESIGN.md): the
    conservative choice for a room-temperature projection from a bake. ``tau0_s`` is set so
    that t0(298.15 K) equals the default relaxation onset (1.5 ms).
    """

    ea_ev: float = param(1.1, unit="eV", lo=0.05, hi=5.0, doc="activation energy")
    t_ref_k: float = param(
        298.15, unit="K", lo=200.0, hi=400.0, doc="room (reference) temperature, 25 C"
    )
    tau0_s: float = param(
        1.5e-3 * math.exp(-1.1 / (K_B_EV * 298.15)),
        unit="s",
        lo=0.0,
        lo_open=True,
        hi=1e12,
        doc="Arrhenius prefactor of the relaxation onset time",
    )
    t_fail_k: float = param(
        0.0, unit="K", lo=0.0, hi=2000.0,
        doc="lowest bake temperature found off the Arrhenius line (another failure mode "
        "takes over there; the law is not valid at or above it); 0 = none found",
    )
    source: str = param("DESIGN.md (HfOx Ea 1.1-2.25 eV, low end)", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)

    def acceleration(self, temp_k: Any):
        """Arrhenius factor vs ``t_ref_k`` (dimensionless; 1 at room temperature)."""
        t = asarray(temp_k)
        return xp(t).exp(self.ea_ev / K_B_EV * (1.0 / self.t_ref_k - 1.0 / t))

    def equivalent_time(self, t_s: Any, temp_k: Any):
        """Room-temperature equivalent [s] of ``t_s`` seconds at ``temp_k`` kelvin."""
        return asarray(t_s) * self.acceleration(temp_k)

    def onset_time(self, temp_k: Any):
        """``t0(T) = tau0_s exp(Ea / kB T)`` [s]."""
        t = asarray(temp_k)
        return self.tau0_s * xp(t).exp(self.ea_ev / (K_B_EV * t))
