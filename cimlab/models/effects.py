"""One frozen dataclass per device effect: the statistical model of a ReRAM array.

Every constant is a field declared with :func:`cimlab.params.param` (SI unit, bounds, doc) and
validated in ``__post_init__``; nothing is clamped. Each effect carries ``source`` (where its
numbers come from: a paper, or "fit") and ``fit`` (:class:`~cimlab.models.params.FitInfo`, or
``None`` for literature defaults). Formulas accept floats, NumPy arrays or torch tensors and
return the same kind (torch is imported only when given a tensor).

Conductance ``g`` is in S; the normalised conductance used by the polynomial forms is
``x = g / g_ref`` with ``g_ref`` the window's ``g_max`` at fit time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.models._array import asarray, is_torch, rand, xp
from cimlab.models.params import FitInfo
from cimlab.params import check, param

#: Boltzmann constant [eV/K] (CODATA 2018, exact).
K_B_EV = 8.617333262e-5

#: Model forms of a standard deviation ``s0 + s1 x + s2 x^2`` (``quadrature``:
#: ``sqrt(s0^2 + (s1 x)^2)``, a floor plus a relative part) and the coefficients each one
#: leaves free (the others must be zero).
SIGMA_FORMS: dict[str, tuple[str, ...]] = {
    "constant": ("s0",),
    "proportional": ("s1",),
    "linear": ("s0", "s1"),
    "quadrature": ("s0", "s1"),
    "polynomial": ("s0", "s1", "s2"),
}

#: Model forms of the relaxation variance rate ``k(x) = k0 + k1 x + k2 x^2``.
RATE_FORMS: dict[str, tuple[str, ...]] = {
    "constant": ("k0",),
    "linear": ("k0", "k1"),
    "polynomial": ("k0", "k1", "k2"),
    "peaked": ("k_peak", "g_peak", "shape_a"),
    "table": tuple(f"kt{i}" for i in range(9)),
}

#: Knots of the tabulated variance rate (form "table"), in g/g_ref: k(g) is linear between
#: ``kt0 .. kt8`` at these points and constant beyond the last one.
TABLE_X = np.linspace(0.0, 1.5, 9)
_TABLE_NAMES = RATE_FORMS["table"]

#: Normalised conductances on which polynomial sigmas must be non-negative (a model is
#: defined for ``0 <= g <= 1.5 g_ref``; beyond that callers extrapolate at their own risk).
_X_CHECK = np.linspace(0.0, 1.5, 151)


def _poly(c0: float, c1: float, c2: float, g: Any, g_ref: float):
    x = asarray(g) / g_ref
    return c0 + x * (c1 + c2 * x)


def _sigma(obj: Any, g: Any):
    if obj.form == "quadrature":
        x = asarray(g) / obj.g_ref
        v = obj.s0**2 + (obj.s1 * x) ** 2
        return xp(v).sqrt(v)
    return _poly(obj.s0, obj.s1, obj.s2, g, obj.g_ref)


def _check_sigma(obj: Any, what: str) -> None:
    _check_form(obj, SIGMA_FORMS, ("s0", "s1", "s2"))
    if obj.form == "quadrature":
        for name in ("s0", "s1"):
            if getattr(obj, name) < 0.0:
                raise ConfigError(None, name, ">= 0 for form 'quadrature'", getattr(obj, name))
    else:
        _check_nonneg(obj, ("s0", "s1", "s2"), what)


def _check_form(obj: Any, forms: dict[str, tuple[str, ...]], coeffs: tuple[str, ...]) -> None:
    free = forms[obj.form]
    for name in coeffs:
        if name not in free and getattr(obj, name) != 0.0:
            raise ConfigError(
                None,
                name,
                f"0 for form '{obj.form}' (free coefficients: {', '.join(free)})",
                getattr(obj, name),
            )


def _check_nonneg(obj: Any, coeffs: tuple[str, str, str], what: str) -> None:
    c = [getattr(obj, n) for n in coeffs]
    values = c[0] + _X_CHECK * (c[1] + c[2] * _X_CHECK)
    if np.any(values < -1e-30):
        bad = float(_X_CHECK[np.argmin(values)])
        raise ConfigError(
            None,
            coeffs[0],
            f"{what} >= 0 for 0 <= g/g_ref <= 1.5 (it is negative at g/g_ref = {bad:.2f})",
            tuple(c),
        )


def _table_rate(knots: tuple[float, ...], g: Any, g_ref: float):
    """Piecewise-linear k(g) through ``knots`` at ``g/g_ref`` = TABLE_X (flat outside)."""
    g = asarray(g)
    if is_torch(g):
        import torch

        h = float(TABLE_X[1] - TABLE_X[0])
        u = (g / g_ref).clamp(0.0, float(TABLE_X[-1])) / h
        i = u.floor().clamp(max=len(knots) - 2).long()
        f = u - i
        kt = torch.tensor(knots, dtype=g.dtype, device=g.device)
        return kt[i] * (1.0 - f) + kt[i + 1] * f
    return np.interp(np.asarray(g, dtype=float) / g_ref, TABLE_X, np.asarray(knots))


def _phi(z: float) -> float:
    """Standard normal CDF (accurate in the far tail, via erfc)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


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
    t0_s: float = param(1.5e-3, unit="s", lo=1e-12, hi=1e6, doc="onset time of relaxation")
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


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BinaryCondition:
    """One binary programming condition: LRS/HRS lognormal distributions, BER, energy, endurance.

    ``ln G`` of a cell in the low-resistance state (bit "0" in paper 003) is normal with median
    ``lrs_median_siemens`` and standard deviation ``lrs_sigma_ln``; likewise for HRS. 1T1R reads
    compare one cell with ``threshold_siemens``; 2T2R reads compare a cell with its complement.
    ``ber_1t1r`` / ``ber_2t2r`` are the measured (or tabulated) error rates;
    :meth:`model_ber_1t1r` / :meth:`model_ber_2t2r` are what the distributions predict.
    """

    name: str = param("strong", doc="condition label")
    icc_a: float = param(55e-6, unit="A", lo=0.0, lo_open=True, hi=0.1, doc="SET compliance")
    v_reset: float = param(2.5, unit="V", lo=0.0, lo_open=True, hi=10.0, doc="RESET amplitude")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0, doc="pulse width")
    lrs_median_siemens: float = param(
        1.375e-4, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="LRS median"
    )
    lrs_sigma_ln: float = param(0.25, unit="1", lo=0.0, lo_open=True, hi=5.0, doc="LRS std of ln G")
    hrs_median_siemens: float = param(
        1e-5, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="HRS median G"
    )
    hrs_sigma_ln: float = param(0.7, unit="1", lo=0.0, lo_open=True, hi=5.0, doc="HRS std of ln G")
    threshold_siemens: float = param(
        3.7e-5, unit="S", lo=0.0, lo_open=True, hi=1.0, doc="1T1R reference"
    )
    ber_1t1r: float = param(9.7e-5, unit="1", lo=0.0, hi=1.0, doc="bit error rate, 1T1R read")
    ber_2t2r: float = param(1e-6, unit="1", lo=0.0, hi=1.0, doc="bit error rate, 2T2R read")
    energy_per_bit_j: float = param(12.5e-12, unit="J", lo=0.0, hi=1e-6, doc="programming energy")
    endurance_cycles: float = param(1e4, unit="1", lo=1.0, hi=1e15, doc="cycles before failure")
    source: str = param("paper 003 Table I", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        check(self)
        if self.lrs_median_siemens <= self.hrs_median_siemens:
            raise ConfigError(
                None,
                "lrs_median_siemens",
                f"a value above hrs_median_siemens = {self.hrs_median_siemens:g} S",
                self.lrs_median_siemens,
            )

    def model_ber_1t1r(self, threshold_siemens: float | None = None) -> float:
        """BER of a 1T1R read at ``threshold_siemens`` (default: the stored one), equal 0/1 bits."""
        thr = math.log(self.threshold_siemens if threshold_siemens is None else threshold_siemens)
        p_lrs_low = _phi((thr - math.log(self.lrs_median_siemens)) / self.lrs_sigma_ln)
        p_hrs_high = _phi(-(thr - math.log(self.hrs_median_siemens)) / self.hrs_sigma_ln)
        return 0.5 * (p_lrs_low + p_hrs_high)

    def model_ber_2t2r(self) -> float:
        """BER of a 2T2R (differential) read: P(G_LRS < G_HRS) for independent lognormals."""
        d = math.log(self.lrs_median_siemens) - math.log(self.hrs_median_siemens)
        return _phi(-d / math.hypot(self.lrs_sigma_ln, self.hrs_sigma_ln))

    def best_threshold_siemens(self) -> float:
        """Threshold [S] minimising the 1T1R BER for these distributions."""
        from scipy.optimize import minimize_scalar

        lo, hi = math.log(self.hrs_median_siemens), math.log(self.lrs_median_siemens)
        res = minimize_scalar(
            lambda u: self.model_ber_1t1r(math.exp(u)), bounds=(lo, hi), method="bounded",
            options={"xatol": 1e-6},
        )
        return float(math.exp(res.x))

    def ber(self, structure: str = "1T1R") -> float:
        """Stored bit error rate for ``structure`` ("1T1R" or "2T2R")."""
        if structure == "1T1R":
            return self.ber_1t1r
        if structure == "2T2R":
            return self.ber_2t2r
        raise ValueError(f"structure must be '1T1R' or '2T2R', got {structure!r}")


def _condition_for_ber(
    name: str, icc_a: float, v_reset: float, ber: float, lrs_sigma_ln: float,
    hrs_sigma_ln: float, energy_per_bit_j: float, endurance: float, v_c: float = 0.5,
) -> BinaryCondition:
    """Literature condition: LRS median from ``R_LRS = v_c / I_cc`` (filament scaling of
    RRAM, Ielmini IEEE TED 58, 4309 (2011); v_c = 0.5 V assumed); HRS median solved so that
    the 1T1R BER at the best threshold equals the tabulated ``ber`` of paper 003 Table I;
    2T2R BER from the model."""
    from scipy.optimize import brentq

    g_lrs = icc_a / v_c

    def make(ln_ratio: float) -> BinaryCondition:
        g_hrs = g_lrs * math.exp(-ln_ratio)
        base = BinaryCondition(
            name=name, icc_a=icc_a, v_reset=v_reset, width_s=100e-9, lrs_median_siemens=g_lrs,
            lrs_sigma_ln=lrs_sigma_ln, hrs_median_siemens=g_hrs, hrs_sigma_ln=hrs_sigma_ln,
            threshold_siemens=math.sqrt(g_lrs * g_hrs), ber_1t1r=ber, ber_2t2r=ber,
            energy_per_bit_j=energy_per_bit_j, endurance_cycles=endurance,
        )
        return base

    def excess(ln_ratio: float) -> float:
        c = make(ln_ratio)
        return math.log(c.model_ber_1t1r(c.best_threshold_siemens())) - math.log(ber)

    ln_ratio = brentq(excess, 0.05, 12.0, xtol=1e-6)
    c = make(ln_ratio)
    thr = c.best_threshold_siemens()
    return BinaryCondition(
        name=name,
        icc_a=icc_a,
        v_reset=v_reset,
        width_s=100e-9,
        lrs_median_siemens=c.lrs_median_siemens,
        lrs_sigma_ln=lrs_sigma_ln,
        hrs_median_siemens=c.hrs_median_siemens,
        hrs_sigma_ln=hrs_sigma_ln,
        threshold_siemens=thr,
        ber_1t1r=ber,
        ber_2t2r=c.model_ber_2t2r(),
        energy_per_bit_j=energy_per_bit_j,
        endurance_cycles=endurance,
        source="paper 003 Table I (icc, v_reset, 100 ns, BER, energy = mean of SET/RESET, "
        "cyclability); LRS median = icc / 0.5 V (Ielmini 2011); HRS median solved for the 1T1R BER",
    )


def paper003_conditions() -> tuple[BinaryCondition, ...]:
    """The three programming conditions of paper 003 (Hirtzlin et al.), Table I.

    very strong: 600 uA / 2.5 V, BER < 1e-6 (1e-6 used), 120/150 pJ, 100 cycles;
    strong: 55 uA / 2.5 V, BER 9.7e-5, 11/14 pJ, > 1e4 cycles;
    weak: 20 uA / 1.5 V, BER 3.3e-2, 4/5 pJ, > 1e6 cycles.
    Log-normal widths (LRS narrower than HRS, both widening as the compliance drops) are
    assumptions in the range of kilobit HfO2 arrays (Grossi et al., IEDM 2016, ref. [16]).
    """
    return (
        _condition_for_ber("very_strong", 600e-6, 2.5, 1e-6, 0.10, 0.50, 135e-12, 100.0),
        _condition_for_ber("strong", 55e-6, 2.5, 9.7e-5, 0.20, 0.60, 12.5e-12, 1e4),
        _condition_for_ber("weak", 20e-6, 1.5, 3.3e-2, 0.30, 0.80, 4.5e-12, 1e6),
    )


@dataclass(frozen=True)
class BinaryStates:
    """Binary (1 bit per cell or per pair) operation under each measured programming condition."""

    conditions: tuple[BinaryCondition, ...] = field(default_factory=tuple)
    source: str = param("paper 003 Table I", doc="origin")
    fit: FitInfo | None = None

    def __post_init__(self):
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ConfigError(None, "conditions", "unique condition names", names)

    def condition(self, name: str) -> BinaryCondition:
        """The condition called ``name`` (KeyError listing the known names otherwise)."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"no binary condition {name!r}; known: {[c.name for c in self.conditions]}")

    def sample_bit_errors(
        self, name: str, shape: tuple[int, ...], generator: Any, structure: str = "1T1R"
    ):
        """Boolean mask of flipped bits (True = error) with the condition's BER."""
        p = self.condition(name).ber(structure)
        u = rand(tuple(shape), generator)
        return u < p


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
