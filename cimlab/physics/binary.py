"""Binary programming conditions (paper 003, Table I): LRS/HRS distributions, BER, energy.

A condition is (SET compliance I_cc via the gate voltage, SET amplitude, RESET amplitude, 100 ns
pulses). In the physics (chip.py) a full SET leaves a cell at its ceiling
``g_L = I_cc(cell) / v_c * F_cell * C`` (lognormal d2d ``F`` and c2c ``C``, times the square
law of the transistor with its threshold mismatch, integrated by quadrature). A full RESET
from that LRS leaves ``ln g_H = ln Fl - s min(d, d_sat) e``, ``d = ln g_L - ln Fl``, with the
cell's floor ``Fl`` (lognormal d2d) and c2c ``e ~ N(0, 1)``, capped at ``g_L`` (a RESET never
raises g): given ``(Fl, g_L)`` the HRS is a capped lognormal, and the BERs below integrate
over ``(Fl, g_L)`` by 2-D Gauss-Hermite quadrature (the LRS entering the depth is
moment-matched to one lognormal, a second-order approximation that only matters for the weak
condition's HRS).

What the paper's BER means: Fig. 1 shows kilobit 1T1R arrays read cell by cell; the bit error
rate is the probability that a single cell programmed LRS (HRS) reads on the wrong side of the
sense threshold, i.e. the overlap of the two resistance distributions (values below ~1e-3 are
extrapolations of the fitted distributions, a kilobit array cannot count 1e-6). That is the
``"1T1R"`` structure here: ``BER = (P(LRS < g_ref) + P(HRS > g_ref)) / 2`` with ``g_ref`` the
threshold that minimises it (or one given). The ``"2T2R"`` structure (Bocquet et al., IEDM
2018, the authors' differential cell) stores a bit in two cells programmed LRS/HRS and reads
their difference: ``BER = P(g_LRS < g_HRS)``, smaller for the same condition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import ndtr

from cimlab.physics.profile import BinaryCondition, ChipProfile

STRUCTURES = ("1T1R", "2T2R")


_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(48)
_GH_W = _GH_W / _GH_W.sum()


@dataclass(frozen=True)
class StateDistribution:
    """Conductance distribution as a mixture of (capped) lognormals: component ``k`` has
    ``ln g ~ min(N(mu_k, sigma_k), cap_k)`` with weight ``w_k`` (one component per quadrature
    node; ``cap`` is the cell's own LRS for an HRS: a RESET never raises ``g``)."""

    mus: tuple[float, ...]
    sigmas: tuple[float, ...]
    weights: tuple[float, ...]
    caps: tuple[float, ...] | None = None

    @property
    def mu(self) -> float:
        """Mean of ln g (caps ignored)."""
        return float(np.dot(self.weights, self.mus))

    @property
    def sigma(self) -> float:
        """Std of ln g (caps ignored)."""
        m = np.asarray(self.mus)
        v = np.dot(self.weights, np.asarray(self.sigmas) ** 2 + (m - self.mu) ** 2)
        return float(math.sqrt(v))

    @property
    def median_siemens(self) -> float:
        """exp(mean of ln g) [S] (the median for one component)."""
        return math.exp(self.mu)

    def cdf_ln(self, x: np.ndarray) -> np.ndarray:
        """P(ln g <= x) for an array ``x``."""
        x = np.asarray(x, dtype=float)[..., None]
        c = ndtr((x - np.asarray(self.mus)) / np.asarray(self.sigmas))
        if self.caps is not None:
            c = np.where(x >= np.asarray(self.caps), 1.0, c)
        return c @ np.asarray(self.weights)

    def cdf(self, g: float) -> float:
        """P(conductance <= g)."""
        return float(self.cdf_ln(np.array(math.log(g))))

    def widened(self, extra_sigma: float) -> StateDistribution:
        return StateDistribution(self.mus, tuple(math.hypot(s, extra_sigma)
                                                 for s in self.sigmas), self.weights, self.caps)


def lrs_distribution(profile: ChipProfile, icc_a: float) -> StateDistribution:
    """Conductance after a full SET with compliance ``icc_a`` [A] (gate at
    ``v_gate_for_icc(icc_a)``): ``ln g = 2 ln(V_ov - dV_th) + ln(k / 2 v_c) + N(0, s)`` with the
    transistor's threshold mismatch ``dV_th`` integrated by Gauss-Hermite quadrature (its
    square law skews the LRS towards low conductance) and ``s`` the ceiling's d2d and c2c
    lognormal sigmas."""
    tr = profile.transistor
    ov = tr.v_gate_for_icc(icc_a) - tr.v_th
    s = math.hypot(profile.set.v_c_sigma, profile.set.ceil_c2c_sigma)
    eff = np.maximum(ov - tr.v_th_sigma * _GH_X, 1e-12)
    mus = np.log(0.5 * tr.k_a_per_v2 * eff**2 / profile.set.v_c)
    return StateDistribution(tuple(mus), (s,) * len(mus), tuple(_GH_W))


def hrs_distribution(
    profile: ChipProfile, icc_a: float, v_reset: float, read_sigma_ln: float = 0.0
) -> StateDistribution:
    """Conductance after a full RESET at ``v_reset`` [V] from a full SET at ``icc_a`` [A]:
    given the cell's floor ``Fl`` and previous LRS ``g_L`` (2-D Gauss-Hermite nodes), ``ln g_H``
    is normal with mean ``ln Fl`` and std ``depth_sigma min(d, depth_sat)``,
    ``d = ln g_L - ln Fl`` (a cell with ``d <= 0`` stays at ``g_L``). ``read_sigma_ln`` adds a
    read's noise in quadrature."""
    rs = profile.reset
    lrs = lrs_distribution(profile, icc_a)
    mu_l, s_l = lrs.mu, lrs.sigma  # moment-matched lognormal for the depth
    mu_f = math.log(float(rs.g_floor(v_reset)))
    ln_f = (mu_f + rs.floor_sigma * _GH_X)[:, None]
    ln_l = (mu_l + s_l * _GH_X)[None, :]
    d = ln_l - ln_f
    s_c2c = rs.depth_sigma * np.minimum(np.maximum(d, 0.0), rs.depth_sat)
    mus = np.where(d > 0, ln_f, ln_l)
    sig = np.hypot(np.where(d > 0, s_c2c, 0.0), read_sigma_ln)
    sig = np.maximum(sig, 1e-9)
    caps = np.where(d > 0, ln_l, np.inf) + np.zeros_like(ln_f)
    w = _GH_W[:, None] * _GH_W[None, :]
    return StateDistribution(tuple(mus.ravel()), tuple(sig.ravel()), tuple(w.ravel()),
                             tuple(caps.ravel()))


def with_read_noise(profile: ChipProfile, d: StateDistribution) -> StateDistribution:
    """``d`` widened by one read's relative noise sigma/g at its median conductance [S]."""
    g = d.median_siemens
    return d.widened(float(profile.read.sigma(g)) / g)



def optimal_reference(lrs: StateDistribution, hrs: StateDistribution) -> float:
    """Threshold conductance [S] that minimises the 1T1R BER."""

    def f(x: float) -> float:
        g = math.exp(x)
        return 0.5 * (lrs.cdf(g) + 1.0 - hrs.cdf(g))

    lo, hi = sorted((hrs.mu, lrs.mu))
    res = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-10})
    return math.exp(float(res.x))


def distributions(
    profile: ChipProfile, condition: str | BinaryCondition, include_read_noise: bool = True
) -> tuple[StateDistribution, StateDistribution]:
    """(LRS, HRS) distributions of ``condition`` right after programming."""
    c = profile.condition(condition) if isinstance(condition, str) else condition
    lrs = lrs_distribution(profile, c.icc_a)
    hrs = hrs_distribution(profile, c.icc_a, c.v_reset)
    if include_read_noise:
        g = hrs.median_siemens
        hrs = hrs_distribution(profile, c.icc_a, c.v_reset, float(profile.read.sigma(g)) / g)
        lrs = with_read_noise(profile, lrs)
    return lrs, hrs


def ber(
    profile: ChipProfile,
    condition: str | BinaryCondition,
    structure: str = "1T1R",
    g_ref: float | None = None,
    include_read_noise: bool = True,
) -> float:
    """Bit error rate of ``condition`` read as ``structure`` ("1T1R" against the threshold
    ``g_ref`` [S], default the optimal one; "2T2R" differential pair), right after programming
    (full SET / full RESET, no relaxation). ``include_read_noise`` adds one read's noise."""
    lrs, hrs = distributions(profile, condition, include_read_noise)
    if structure == "1T1R":
        ref = optimal_reference(lrs, hrs) if g_ref is None else g_ref
        return 0.5 * (lrs.cdf(ref) + 1.0 - hrs.cdf(ref))
    if structure == "2T2R":
        # P(g_LRS < g_HRS) = integral of f_LRS(y) P(ln g_HRS > y) dy on a fine grid
        ml, sl, wl = (np.asarray(x) for x in (lrs.mus, lrs.sigmas, lrs.weights))
        y = np.linspace(ml.min() - 8 * sl.max(), ml.max() + 8 * sl.max(), 2001)
        f = (np.exp(-0.5 * ((y[:, None] - ml) / sl) ** 2) / (sl * math.sqrt(2 * math.pi))) @ wl
        surv = 1.0 - hrs.cdf_ln(y)
        h = f * surv
        return float(0.5 * np.sum(h[1:] + h[:-1]) * (y[1] - y[0]))  # trapezoid rule
    raise ValueError(f"structure must be one of {STRUCTURES}, got {structure!r}")


def energy_per_pulse(v_pulse: float, width_s: float, i_a: float) -> float:
    """V I t [J]."""
    return v_pulse * width_s * i_a


def endurance_median(profile: ChipProfile, condition: str | BinaryCondition) -> float:
    """Median cycles to failure under ``condition`` (full SET + full RESET per cycle)."""
    c = profile.condition(condition) if isinstance(condition, str) else condition
    return 1.0 / profile.endurance.damage_per_cycle(c.icc_a, c.v_reset)


def reference_table(profile: ChipProfile) -> list[dict]:
    """One row per condition: gate voltage, LRS/HRS medians, BERs, energies, endurance."""
    rows = []
    for c in profile.conditions:
        lrs, hrs = distributions(profile, c, include_read_noise=False)
        rows.append({
            "condition": c.name,
            "icc_a": c.icc_a,
            "v_gate": profile.transistor.v_gate_for_icc(c.icc_a),
            "r_lrs_median_ohm": 1.0 / lrs.median_siemens,
            "r_hrs_median_ohm": 1.0 / hrs.median_siemens,
            "sigma_ln_lrs": lrs.sigma,
            "sigma_ln_hrs": hrs.sigma,
            "ber_1t1r": ber(profile, c, "1T1R"),
            "ber_2t2r": ber(profile, c, "2T2R"),
            "ber_paper": c.ber_paper,
            "energy_set_j": energy_per_pulse(c.v_set, c.width_s, c.icc_a),
            "energy_reset_j": energy_per_pulse(c.v_reset, c.width_s, c.icc_a),
            "energy_set_paper_j": c.energy_set_paper_j,
            "energy_reset_paper_j": c.energy_reset_paper_j,
            "endurance_median": endurance_median(profile, c),
            "endurance_paper": c.endurance_paper,
        })
    return rows


def solve_reset_for_ber(profile: ChipProfile) -> tuple[float, float]:
    """Calibration helper: (depth_sigma, v_slope) reproducing the paper's 'strong' and 'weak'
    1T1R BERs with the profile's other values (used to choose the default profile's values)."""
    from dataclasses import replace

    from scipy.optimize import brentq

    def with_(ds: float, v_slope: float) -> ChipProfile:
        return replace(profile, reset=replace(profile.reset, depth_sigma=ds, v_slope=v_slope))

    strong = profile.condition("strong")
    weak = profile.condition("weak")

    def v_slope_for(ds: float) -> float:
        return brentq(lambda v: math.log(max(ber(with_(ds, v), weak), 1e-300) / weak.ber_paper),
                      0.2, 3.0)

    ds = brentq(lambda d: math.log(max(ber(with_(d, v_slope_for(d)), strong), 1e-300)
                                   / strong.ber_paper), 0.35, 0.7)
    return ds, v_slope_for(ds)
