"""Chip profiles: every constant of the emulated ReRAM chip, with unit, bounds and source.

A profile is a tree of frozen dataclasses (fields declared with :func:`cimlab.params.param`),
loaded strictly from a TOML file by :func:`load_profile`. The field defaults ARE the default
profile (``profiles/default.toml`` repeats them with comments); a profile file only needs the
fields it changes. Sources:

* paper 000: Lee et al. (Macronix), window 2-40 uS, programming error ~0.07 of range, read
  fluctuation 0.01-0.04 level dependent, 150 C bake.
* paper 001: Wang, Park, Lu, 256 x 64 tiles.
* paper 003: Hirtzlin et al., Table I, binary programming conditions (I_cc, V_reset, 100 ns,
  BER, energy, endurance).
* paper 004: BanaGozar et al. (ReMeCo), 1% stuck (16.2% off / 83.8% on), wire N(2, 0.5) ohm.
* techC relaxation data (Levy et al., ``shared/reference-data/rram-relaxation-techC``):
  relaxation variance/mean per decade of log time (fit in ``docs/physics.md``).
* Ielmini, IEEE TED 58, 4309 (2011): LRS resistance R = V_C / I_C set by the compliance.
* Menzel et al., Adv. Funct. Mater. 25, 6306 (2015): switching kinetics exponential in
  voltage ("voltage-time dilemma").
* Fantini et al., IMW 2013: LRS variability set by the number of defects (Poisson-like).
* Sharath et al., Appl. Phys. Lett. 105, 073505 (2014): the forming voltage of stoichiometric
  HfO2 grows linearly with thickness, ~3 V for a few nm; Ielmini, Semicond. Sci. Technol. 31,
  063002 (2016), Sec. 2: forming (soft breakdown under a current compliance) of HfOx 1T1R
  cells at ~2-3.5 V, above the SET voltages (the pristine state, :class:`Forming`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, from_dict, load_toml, param
from cimlab.transistor import square_law_current, square_law_gate_voltage
from cimlab.units import K_B_EV


@dataclass(frozen=True)
class Geometry:
    """Tiles of ``rows x cols`` cells (paper 001: 256 x 64 arrays)."""

    n_tiles: int = param(32, unit="1", lo=1, hi=4096, doc="tiles on the chip")
    rows: int = param(256, unit="1", lo=1, hi=4096, doc="rows (word lines / inputs) per tile")
    cols: int = param(64, unit="1", lo=1, hi=4096, doc="columns (bit lines / outputs) per tile")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Window:
    """Analog conductance window used for weights (paper 000: 2e-6 .. 4e-5 S; NeuRRAM 40 uS)."""

    g_min: float = param(2e-6, unit="S", lo=0.0, lo_open=True, doc="lowest analog level")
    g_max: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="highest analog level")
    g_phys_min: float = param(
        0.05e-6, unit="S", lo=0.0, lo_open=True,
        doc="lowest physical conductance (leakage of a fully ruptured filament); relaxation "
        "cannot take a cell below it",
    )
    t_room_k: float = param(
        298.15, unit="K", lo=200.0, hi=400.0,
        doc="room temperature: reference of the equivalent time and of the relaxation data",
    )

    def __post_init__(self) -> None:
        check(self)
        if self.g_max <= self.g_min:
            raise ConfigError(None, "g_max", f"a value above g_min = {self.g_min:g} S", self.g_max)


@dataclass(frozen=True)
class Transistor:
    """1T1R access transistor in saturation (long-channel square law, Shichman-Hodges):
    ``I_cc = k/2 (V_gate - V_th)^2`` for ``V_gate > V_th``, else 0. The SET compliance current
    is the saturation current at the word-line voltage."""

    k_a_per_v2: float = param(
        2e-4, unit="A/V^2", lo=0.0, lo_open=True,
        doc="transconductance parameter mu*Cox*W/L; 20/55/600 uA at ~0.95/1.24/2.95 V",
    )
    v_th: float = param(0.5, unit="V", lo=0.0, hi=2.0, doc="threshold voltage")
    v_th_sigma: float = param(
        0.015, unit="V", lo=0.0, hi=0.2,
        doc="device-to-device threshold mismatch (Pelgrom-type, ~15 mV for a small device)",
    )

    def __post_init__(self) -> None:
        check(self)

    def icc(self, v_gate: Any, dv_th: Any = 0.0) -> Any:
        """Compliance (saturation) current [A] at word-line voltage ``v_gate`` [V]."""
        return square_law_current(v_gate, self.k_a_per_v2, self.v_th, dv_th)

    def v_gate_for_icc(self, icc_a: Any) -> Any:
        """Word-line voltage [V] giving compliance current ``icc_a`` [A] (inverse of icc;
        :func:`square_law_gate_voltage`: ValueError for a negative or non-finite target)."""
        return square_law_gate_voltage(icc_a, self.k_a_per_v2, self.v_th)


@dataclass(frozen=True)
class SetSwitching:
    """SET kinetics and LRS ceiling.

    One SET pulse moves ``g`` towards the ceiling ``g_ceil = I_cc / v_c`` (Ielmini 2011,
    R_LRS = V_C / I_C) by the fraction ``f = 1 - exp(-D)``, with drive
    ``D = rate0 * k_cell * width * (exp((v - v_th_cell)/v0) - 1)`` for ``v > v_th_cell``
    (switching rate exponential in voltage, Menzel 2015). It never lowers ``g``."""

    v_c: float = param(0.5, unit="V", lo=0.05, hi=2.0, doc="LRS hold voltage: g_ceil = I_cc/v_c")
    v_c_sigma: float = param(
        0.06, unit="1", lo=0.0, hi=1.0,
        doc="d2d lognormal sigma of v_c (ceiling spread); calibrated: single-shot error ~0.07",
    )
    ceil_c2c_sigma: float = param(
        0.04, unit="1", lo=0.0, hi=1.0, doc="c2c lognormal sigma of the ceiling per pulse",
    )
    v_th: float = param(0.8, unit="V", lo=0.0, hi=5.0, doc="median SET threshold voltage")
    v_th_sigma: float = param(
        0.1, unit="1", lo=0.0, hi=0.5, doc="d2d relative sigma of the SET threshold (10%)",
    )
    v0: float = param(0.1, unit="V", lo=0.005, hi=2.0, doc="voltage scale of the SET rate")
    rate0: float = param(
        1.75e4, unit="1/s", lo=0.0, lo_open=True,
        doc="SET rate prefactor: a 1 us pulse 0.1 V above threshold moves ~3% of the way",
    )
    rate_sigma: float = param(
        0.25, unit="1", lo=0.0, hi=2.0, doc="d2d lognormal sigma of the SET rate (25%)",
    )
    drive_power: float = param(
        0.0, unit="1", lo=0.0, hi=20.0,
        doc="shape of the drive's voltage dependence: 0 exponential (Menzel 2015, the "
        "default); > 0 a power law ((v - v_th)/v0)^drive_power (a technology whose pulse "
        "response has another shape; the 'shaped' profile, issue 13)",
    )

    state_power: float = param(
        0.0, unit="1", lo=-5.0, hi=5.0,
        doc="state dependence of the drive: D is multiplied by (g / state_g_ref)^state_power "
        "(0: none, the default; > 0 a SET that speeds up as the filament conducts more, "
        "Joule-heating-assisted; the 'stateful' test profile, issue 13)",
    )
    state_g_ref: float = param(10e-6, unit="S", lo=0.0, lo_open=True,
                               doc="conductance at which the state factor is 1")

    def drive_shape(self, overdrive_v: Any) -> Any:
        """Voltage factor of the drive for ``overdrive_v = v - v_th`` [V] (>= 0)."""
        x = np.asarray(overdrive_v, dtype=float) / self.v0
        return np.expm1(x) if self.drive_power == 0.0 else x ** self.drive_power

    def __post_init__(self) -> None:
        check(self)
    def state_factor(self, g: Any) -> Any:
        """State factor of the drive at present conductance ``g`` [S] (1 when
        ``state_power`` is 0)."""
        if self.state_power == 0.0:
            return 1.0
        return (np.asarray(g, dtype=float) / self.state_g_ref) ** self.state_power


@dataclass(frozen=True)
class ResetSwitching:
    """RESET kinetics and the HRS floor.

    The deepest state a RESET at amplitude ``V`` can reach is the cell's floor
    ``F(V) = g_floor_ref exp(-(V - v_ref)/v_slope) H_cell`` (deeper RESET voltage, higher HRS
    resistance; ``H`` d2d lognormal). One pulse moves ``g`` towards the target
    ``ln t = ln g - d - depth_sigma min(d, depth_sat) z`` with depth ``d = max(ln g - ln F(V),
    0)`` (a cell
    already below its floor at this amplitude does not move; c2c noise proportional to the
    depth, so a shallow RESET is precise and a deep one scatters: the HRS of a full RESET is
    broad, as in paper 003 Fig. 1), by ``f = 1 - exp(-D)`` with ``D`` as for SET. Small
    corrections therefore come either from a partial pulse (small ``f``: amplitude just above
    threshold, short width) or from a staircase of amplitudes (each lowering the floor a
    little), as in NeuRRAM-style incremental RESET. ``H``, ``depth_sigma`` and ``v_slope`` are
    calibrated so paper 003's strong (2.5 V) and weak (1.5 V) conditions give 1T1R BER 9.7e-5 /
    3.3e-2 (binary.py). A RESET never raises ``g``."""

    g_floor_ref: float = param(
        2.0e-6, unit="S", lo=0.0, lo_open=True,
        doc="median floor at v_ref (deep HRS, bottom of the analog window)",
    )
    v_ref: float = param(2.5, unit="V", lo=0.1, hi=10.0, doc="reference RESET voltage")
    v_slope: float = param(
        0.554, unit="V", lo=0.01, hi=10.0,
        doc="the floor falls e-fold per v_slope of RESET amplitude (calibrated to the BERs)",
    )
    floor_sigma: float = param(
        0.3, unit="1", lo=0.0, hi=3.0, doc="d2d lognormal sigma of the floor (H_cell)",
    )
    depth_sigma: float = param(
        0.49, unit="1", lo=0.0, hi=1.0,
        doc="c2c relative sigma of the RESET depth (calibrated to the BERs)",
    )
    depth_sat: float = param(
        2.0, unit="1", lo=0.01, hi=20.0,
        doc="depth (in ln g) beyond which the c2c scatter stops growing: a deep RESET lands "
        "at a floor whose scatter does not depend on where it started",
    )
    v_th: float = param(0.7, unit="V", lo=0.0, hi=5.0, doc="median RESET threshold voltage")
    v_th_sigma: float = param(0.08, unit="1", lo=0.0, hi=0.5, doc="d2d relative sigma (8%)")
    v0: float = param(0.1, unit="V", lo=0.005, hi=2.0, doc="voltage scale of the RESET rate")
    rate0: float = param(
        4e5, unit="1/s", lo=0.0, lo_open=True,
        doc="RESET rate prefactor: a 100 ns, 1.5 V pulse resets fully (D ~ 100)",
    )
    rate_sigma: float = param(0.25, unit="1", lo=0.0, hi=2.0, doc="d2d lognormal sigma of rate")

    drive_power: float = param(
        0.0, unit="1", lo=0.0, hi=20.0,
        doc="shape of the drive's voltage dependence: 0 exponential (Menzel 2015, the "
        "default); > 0 a power law ((v - v_th)/v0)^drive_power (a technology whose pulse "
        "response has another shape; the 'shaped' profile, issue 13)",
    )

    state_power: float = param(
        0.0, unit="1", lo=-5.0, hi=5.0,
        doc="state dependence of the drive: D is multiplied by (g / state_g_ref)^state_power "
        "(0: none, the default; < 0 a RESET whose fraction falls as the filament "
        "thickens; the 'stateful' test profile, issue 13)",
    )
    state_g_ref: float = param(10e-6, unit="S", lo=0.0, lo_open=True,
                               doc="conductance at which the state factor is 1")

    def drive_shape(self, overdrive_v: Any) -> Any:
        """Voltage factor of the drive for ``overdrive_v = v - v_th`` [V] (>= 0)."""
        x = np.asarray(overdrive_v, dtype=float) / self.v0
        return np.expm1(x) if self.drive_power == 0.0 else x ** self.drive_power

    def __post_init__(self) -> None:
        check(self)
    def state_factor(self, g: Any) -> Any:
        """State factor of the drive at present conductance ``g`` [S] (1 when
        ``state_power`` is 0)."""
        if self.state_power == 0.0:
            return 1.0
        return (np.asarray(g, dtype=float) / self.state_g_ref) ** self.state_power


    def g_floor(self, v_reset: Any) -> Any:
        """Median floor conductance [S] at RESET amplitude ``v_reset`` [V]."""
        return self.g_floor_ref * np.exp(-(np.asarray(v_reset, float) - self.v_ref) / self.v_slope)


@dataclass(frozen=True)
class StepNoise:
    """Cycle-to-cycle noise of every programming step: the defects between ``g`` and the
    pulse's target (in units of ``q``) each move with probability ``f`` (binomial, normal
    approximation), so ``var = q f (1 - f) |g_target - g|``: Poisson-like for small steps,
    zero for a full switch (which lands on the target's own c2c draw). Fantini IMW 2013."""

    q: float = param(
        0.1e-6, unit="S", lo=0.0, hi=1e-4,
        doc="conductance quantum of the step noise (a 0.5 uS step: sigma ~0.22 uS)",
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class ReadNoise:
    """One read: ``g + w + F(t)``.

    ``w ~ N(0, sigma(g))`` is the white part, independent per read, ``sigma = sqrt(floor^2 +
    (rel g)^2)``: relative sigma ~4% at 2 uS falling to ~1% at 40 uS (paper 000 Fig. 3:
    0.01-0.04, level dependent). As a spectrum it is flat, ``sigma^2 / white_bandwidth_hz``
    [S^2/Hz] (one-sided) up to the read bandwidth.

    ``F`` is the cell's 1/f (flicker) fluctuation, a stationary Gaussian process with the
    one-sided spectrum ``S_F(f) = A(g) (f / 1 Hz)^-alpha`` between ``flicker_f_lo_hz`` and
    ``flicker_f_hi_hz`` (flat below, falling as f^-2 above), ``A(g) = flicker_psd_peak
    exp(-(g - flicker_g_peak)^2 / (2 flicker_g_width^2))`` (largest at mid levels, as in the
    techA time series, docs/physics.md). It is realised as a sum of Ornstein-Uhlenbeck
    (Lorentzian) processes with corners ``flicker_per_decade`` per decade (McWhorter's
    superposition; cimlab.physics.read_noise), evolving with the chip's clock, so averaging n
    reads stops shrinking the noise as 1/sqrt(n) once the reads span seconds. ``flicker_psd_peak
    = 0`` (the default profile: paper 000 gives only a per-read fluctuation) switches it off.
    """

    sigma_floor: float = param(0.075e-6, unit="S", lo=0.0, hi=1e-5, doc="absolute floor")
    rel: float = param(0.01, unit="1", lo=0.0, hi=0.5, doc="relative part at high G")
    white_bandwidth_hz: float = param(
        200.0, unit="Hz", lo=0.0, lo_open=True,
        doc="bandwidth of one read (half its sample rate): white PSD = sigma^2 / bandwidth",
    )
    flicker_psd_peak: float = param(
        0.0, unit="S^2/Hz", lo=0.0, hi=1e-9, doc="1/f PSD at 1 Hz at the peak level (0: none)",
    )
    flicker_g_peak: float = param(
        20e-6, unit="S", lo=0.0, doc="level of the largest 1/f amplitude",
    )
    flicker_g_width: float = param(
        20e-6, unit="S", lo=0.0, lo_open=True, doc="Gaussian width of A(g) in conductance",
    )
    flicker_alpha: float = param(1.0, unit="1", lo=0.1, hi=1.9, doc="spectral exponent alpha")
    flicker_f_lo_hz: float = param(
        1e-4, unit="Hz", lo=0.0, lo_open=True, doc="lowest corner of the Lorentzian bank",
    )
    flicker_f_hi_hz: float = param(
        100.0, unit="Hz", lo=0.0, lo_open=True,
        doc="highest corner of the Lorentzian bank (at most the read bandwidth: faster "
        "fluctuations average out within one read, their part is in the white sigma)",
    )
    flicker_per_decade: float = param(
        1.0, unit="1/decade", lo=0.5, hi=10.0,
        doc="Lorentzians per decade (1: ripple of the summed spectrum below ~10%)",
    )

    def __post_init__(self) -> None:
        check(self)
        if self.flicker_f_hi_hz <= self.flicker_f_lo_hz:
            raise ConfigError(None, "flicker_f_hi_hz",
                              f"a value above flicker_f_lo_hz = {self.flicker_f_lo_hz:g} Hz",
                              self.flicker_f_hi_hz)

    def sigma(self, g: Any) -> Any:
        """Std of the white part of one read [S] at true conductance ``g`` [S]."""
        g = np.asarray(g, dtype=float)
        return np.sqrt(self.sigma_floor**2 + (self.rel * g) ** 2)

    def flicker_amplitude(self, g: Any) -> Any:
        """1/f PSD at 1 Hz, ``A(g)`` [S^2/Hz], at true conductance ``g`` [S]."""
        g = np.asarray(g, dtype=float)
        return self.flicker_psd_peak * np.exp(
            -0.5 * ((g - self.flicker_g_peak) / self.flicker_g_width) ** 2)

    def psd(self, g: Any, f_hz: Any) -> Any:
        """Nominal one-sided PSD [S^2/Hz] of reads of a cell at ``g`` [S] at ``f_hz`` [Hz]
        (white + ``A f^-alpha``; the Lorentzian bank follows it within its ripple inside
        the bank's band)."""
        f = np.asarray(f_hz, dtype=float)
        return (np.asarray(self.sigma(g)) ** 2 / self.white_bandwidth_hz
                + self.flicker_amplitude(g) * f ** -self.flicker_alpha)


@dataclass(frozen=True)
class IV:
    """Cell I-V: ``I(v) = g v_ref sinh(v/v_nl)/sinh(v_ref/v_nl)`` scaled so I(v_ref)/v_ref = g.
    Conductances everywhere are defined at the read voltage ``v_ref``."""

    v_ref: float = param(0.2, unit="V", lo=0.01, hi=2.0, doc="reference read voltage")
    v_nl: float = param(
        0.6, unit="V", lo=0.05, hi=100.0, doc="nonlinearity voltage scale (sinh conduction)",
    )

    def __post_init__(self) -> None:
        check(self)

    def current(self, g: Any, v: Any) -> Any:
        """Cell current [A] at bias ``v`` [V] (odd in v)."""
        v = np.asarray(v, dtype=float)
        scale = self.v_ref / math.sinh(self.v_ref / self.v_nl)
        return np.asarray(g) * scale * np.sinh(v / self.v_nl)


@dataclass(frozen=True)
class Relaxation:
    """Conductance relaxation after programming (fit to techC data, docs/physics.md).

    With ``L(t) = log10(1 + t/tau)`` (t equivalent room-temperature time since the last
    programming pulse): variance ``b(g0) L``, ``b(g) = b_peak (g/g_peak)^a exp(a (1 - g/g_peak))``;
    mean shift ``-m_max tanh((g0 - g_attr)/g_width) L``. Independent Gaussian increments."""

    tau_s: float = param(5e-3, unit="s", lo=0.0, lo_open=True, doc="onset time of log relaxation")
    b_peak: float = param(
        2.3e-12, unit="S^2", lo=0.0, hi=1e-9, doc="peak variance growth per decade (2.3 uS^2)",
    )
    g_peak: float = param(14e-6, unit="S", lo=0.0, lo_open=True, doc="level of the peak")
    shape_a: float = param(0.85, unit="1", lo=0.0, hi=10.0, doc="shape of b(g)")
    m_max: float = param(
        0.27e-6, unit="S", lo=0.0, hi=1e-5, doc="largest mean drift per decade (0.27 uS)",
    )
    g_attr: float = param(
        5.6e-6, unit="S", lo=0.0, doc="level the means relax towards (techC: ~5.6 uS)",
    )
    g_width: float = param(7e-6, unit="S", lo=0.0, lo_open=True, doc="width of the drift tanh")

    def __post_init__(self) -> None:
        check(self)

    def log_time(self, t_s: Any) -> Any:
        """``L(t) = log10(1 + t/tau)`` [decades]."""
        return np.log10(1.0 + np.maximum(np.asarray(t_s, dtype=float), 0.0) / self.tau_s)

    def var_rate(self, g0: Any) -> Any:
        """Variance growth per decade [S^2] for a cell programmed to ``g0`` [S]."""
        x = np.maximum(np.asarray(g0, dtype=float), 0.0) / self.g_peak
        with np.errstate(divide="ignore"):
            return self.b_peak * np.exp(self.shape_a * (np.log(x) + 1.0 - x))

    def mean_rate(self, g0: Any) -> Any:
        """Mean drift per decade [S] (negative above g_attr)."""
        return -self.m_max * np.tanh((np.asarray(g0, dtype=float) - self.g_attr) / self.g_width)

    def mean_shift(self, g0: Any, t_s: Any) -> Any:
        """Mean conductance change [S] after equivalent time ``t_s``."""
        return self.mean_rate(g0) * self.log_time(t_s)

    def variance(self, g0: Any, t_s: Any) -> Any:
        """Variance [S^2] of the relaxation offset after equivalent time ``t_s``."""
        return self.var_rate(g0) * self.log_time(t_s)


@dataclass(frozen=True)
class Retention:
    """Thermal acceleration of relaxation (Arrhenius): ``exp(Ea/k (1/T_room - 1/T))``.

    Published activation energies for HfOx retention span 1.1-2.25 eV (DESIGN.md); the default
    1.1 eV is the low (pessimistic) end, the same value as ``DeviceModel.default()`` (one Ea
    for the chip and the literature model), so a 150 C bake accelerates ~3e5 x."""

    ea_ev: float = param(1.1, unit="eV", lo=0.1, hi=4.0, doc="activation energy")

    def __post_init__(self) -> None:
        check(self)

    def acceleration(self, temperature_k: Any, t_room_k: float) -> Any:
        """Equivalent room-temperature seconds per second at ``temperature_k``."""
        t = np.asarray(temperature_k, dtype=float)
        return np.exp(self.ea_ev / K_B_EV * (1.0 / t_room_k - 1.0 / t))


@dataclass(frozen=True)
class Endurance:
    """Wear-out: each SET pulse adds damage ``f d_set (I_cc/i_ref)^p``, each RESET pulse
    ``f d_reset exp((V - v_ref)/v_w)`` (f the fraction switched); a cell fails (sticks in its
    present state) when damage exceeds its own lognormal limit (median 1). Calibrated to paper
    003 Table I: ~100 / >1e4 / >1e6 cycles at 600 uA, 2.5 V / 55 uA, 2.5 V / 20 uA, 1.5 V."""

    d_set: float = param(0.01, unit="1", lo=0.0, hi=1.0, doc="damage per full SET at i_ref")
    i_ref: float = param(600e-6, unit="A", lo=0.0, lo_open=True, doc="reference compliance")
    p: float = param(3.5, unit="1", lo=0.0, hi=10.0, doc="compliance exponent of damage")
    d_reset: float = param(3.1e-5, unit="1", lo=0.0, hi=1.0, doc="damage per full RESET at v_ref")
    v_ref: float = param(2.5, unit="V", lo=0.1, hi=10.0, doc="reference RESET voltage")
    v_w: float = param(0.21, unit="V", lo=0.01, hi=10.0, doc="RESET voltage scale of damage")
    limit_sigma: float = param(0.5, unit="1", lo=0.0, hi=3.0, doc="lognormal sigma of the limit")

    def __post_init__(self) -> None:
        check(self)

    def damage_per_cycle(self, icc_a: float, v_reset: float) -> float:
        """Damage of one full SET + RESET cycle."""
        return self.d_set * (icc_a / self.i_ref) ** self.p + self.d_reset * math.exp(
            (v_reset - self.v_ref) / self.v_w
        )


@dataclass(frozen=True)
class Faults:
    """Manufacturing stuck-at faults (paper 004: 1% stuck, 16.2% off / 83.8% on)."""

    p_stuck: float = param(0.01, unit="1", lo=0.0, hi=1.0, doc="fraction of stuck cells")
    frac_off: float = param(0.162, unit="1", lo=0.0, hi=1.0, doc="fraction of those stuck off")
    g_on: float = param(
        60e-6, unit="S", lo=0.0, lo_open=True, doc="median stuck-on conductance (over-formed)",
    )
    g_off: float = param(0.3e-6, unit="S", lo=0.0, lo_open=True, doc="median stuck-off (unformed)")
    sigma: float = param(0.15, unit="1", lo=0.0, hi=3.0, doc="lognormal sigma of stuck levels")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Forming:
    """The pristine (unformed) state, opt-in (``pristine = true``; off: every cell starts
    formed, as delivered before this option existed, bit for bit).

    A pristine cell conducts like an unformed (stuck-off) cell, ``faults.g_off`` with the
    lognormal spread ``faults.sigma``, does not switch at SET/RESET voltages and does not
    relax. A positive (SET-polarity) bias above its forming voltage ``V_form`` (a pulse, or
    one step of an SMU sweep) forms it: the filament grows as under a SET of that bias, to
    the compliance-limited LRS ``I_cc / v_c``; the cell is then an ordinary cell. ``V_form``
    is drawn per cell, normal ``N(v_form, v_form_sigma^2)``: few-nm HfO2 forms at ~2-3.5 V
    (Sharath et al., APL 105, 073505 (2014): ~3 V, linear in thickness; Ielmini, SST 31,
    063002 (2016)); the defaults (2.6 V, 0.25 V) put 99.7 % of cells in 1.85-3.35 V. A fraction
    ``p_never`` never forms at any voltage (they become stuck-off cells, with the profile's
    manufacturing stuck-off cells, which never form either): an assumed forming yield, of
    the order of the stuck-cell rate of paper 004 (1 %).
    """

    pristine: bool = param(False, doc="cells start unformed (off: formed, as before)")
    v_form: float = param(2.6, unit="V", lo=0.0, lo_open=True, hi=20.0,
                          doc="median forming voltage (HfO2 few nm: ~2-3.5 V)")
    v_form_sigma: float = param(0.25, unit="V", lo=0.0, hi=5.0,
                                doc="device-to-device std of the forming voltage (normal)")
    p_never: float = param(0.01, unit="1", lo=0.0, hi=1.0,
                           doc="fraction of cells that never form (stuck off)")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class Wires:
    """Crossbar wire resistance per cell segment (paper 004: N(mu=2, sigma^2=0.5) ohm)."""

    r_mean_ohm: float = param(2.0, unit="ohm", lo=0.0, lo_open=True, doc="mean per segment")
    r_var_ohm2: float = param(0.5, unit="ohm^2", lo=0.0, doc="variance per segment")
    r_min_ohm: float = param(
        0.1, unit="ohm", lo=0.0, lo_open=True, doc="draws below this are redrawn (truncation)",
    )
    mvm_dlog: float = param(
        0.05, unit="decade", lo=0.0, lo_open=True,
        doc="a cached tile transfer matrix is rebuilt when the relaxation log-time of the "
        "tile's youngest cell has moved by more than this",
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class BinaryCondition:
    """A binary programming condition (paper 003 Table I)."""

    name: str = param("strong", doc="condition name")
    icc_a: float = param(55e-6, unit="A", lo=0.0, lo_open=True, doc="SET compliance current")
    v_set: float = param(2.0, unit="V", lo=0.0, lo_open=True, doc="SET pulse amplitude")
    v_reset: float = param(2.5, unit="V", lo=0.0, lo_open=True, doc="RESET pulse amplitude")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, doc="pulse width")
    ber_paper: float = param(9.7e-5, unit="1", lo=0.0, hi=1.0, doc="paper's BER (1T1R)")
    energy_set_paper_j: float = param(11e-12, unit="J", lo=0.0, doc="paper's SET energy")
    energy_reset_paper_j: float = param(14e-12, unit="J", lo=0.0, doc="paper's RESET energy")
    endurance_paper: float = param(1e4, unit="cycles", lo=0.0, doc="paper's cyclability")

    def __post_init__(self) -> None:
        check(self)


def _default_conditions() -> tuple[BinaryCondition, ...]:
    return (
        BinaryCondition("very_strong", 600e-6, 2.0, 2.5, 100e-9, 1e-6, 120e-12, 150e-12, 100.0),
        BinaryCondition("strong", 55e-6, 2.0, 2.5, 100e-9, 9.7e-5, 11e-12, 14e-12, 1e4),
        BinaryCondition("weak", 20e-6, 2.0, 1.5, 100e-9, 3.3e-2, 4e-12, 5e-12, 1e6),
    )


@dataclass(frozen=True)
class ChipProfile:
    """Everything that defines an emulated chip. Defaults = the ``default`` profile."""

    name: str = param("default", doc="profile name")
    description: str = param(
        "HfOx 1T1R analog array, 2-40 uS window (papers 000/001/003/004, techC relaxation)",
        doc="one-line description",
    )
    geometry: Geometry = param(default_factory=Geometry)
    window: Window = param(default_factory=Window)
    transistor: Transistor = param(default_factory=Transistor)
    set: SetSwitching = param(default_factory=SetSwitching)
    reset: ResetSwitching = param(default_factory=ResetSwitching)
    step_noise: StepNoise = param(default_factory=StepNoise)
    read: ReadNoise = param(default_factory=ReadNoise)
    iv: IV = param(default_factory=IV)
    relaxation: Relaxation = param(default_factory=Relaxation)
    retention: Retention = param(default_factory=Retention)
    endurance: Endurance = param(default_factory=Endurance)
    faults: Faults = param(default_factory=Faults)
    wires: Wires = param(default_factory=Wires)
    forming: Forming = param(default_factory=Forming)
    conditions: tuple[BinaryCondition, ...] = param(default_factory=_default_conditions)

    def __post_init__(self) -> None:
        check(self)
        names = [c.name for c in self.conditions]
        if len(set(names)) != len(names):
            raise ConfigError(None, "conditions", "unique condition names", names)

    def condition(self, name: str) -> BinaryCondition:
        """The binary programming condition called ``name``."""
        for c in self.conditions:
            if c.name == name:
                return c
        raise KeyError(f"no programming condition {name!r}; known: "
                       + ", ".join(c.name for c in self.conditions))


#: Profiles shipped with cimlab (files in cimlab/physics/profiles/).
BUNDLED_PROFILES: tuple[str, ...] = ("default", "techb", "techa", "narrow", "shaped",
                                     "stateful", "pristine")


def profile_path(name: str) -> Path:
    """Path of a bundled profile's TOML file."""
    return Path(str(resources.files("cimlab.physics.profiles").joinpath(f"{name}.toml")))


def load_profile(name_or_path: str | Path = "default") -> ChipProfile:
    """Load a bundled profile by name (``"default"``, ``"techb"``) or a TOML file by path.

    A bad file raises :class:`~cimlab.errors.ConfigError` naming the file, the dotted field
    and what was expected. Conditions are given as ``[[conditions]]`` tables.
    """
    if isinstance(name_or_path, str) and name_or_path in BUNDLED_PROFILES:
        path = profile_path(name_or_path)
    else:
        path = Path(name_or_path)
        if not path.exists():
            raise ConfigError(
                path, "<file>",
                "an existing profile TOML file or a bundled profile name ("
                + ", ".join(BUNDLED_PROFILES) + ")",
            )
    data = load_toml(path)
    return from_dict(ChipProfile, data, source=path)
