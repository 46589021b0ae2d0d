"""Retention extrapolation to a use condition (e.g. 10 years at 85 C), with uncertainty.

Time ``t`` at temperature ``T`` is ``AF(T) t`` of room-temperature time (Arrhenius, Ea from
the retention model); the relaxation model then gives the mean drift and the extra spread of
every level at that equivalent time. Uncertainty: Monte-Carlo over the fitted parameters,
drawing (Ea, ln tau0) from their joint normal (the retention fit's covariance; the relaxation
onset t0 follows as ``t0 = tau0 exp(Ea / kB T_ref)``, so the correlation between Ea and t0
is kept) and the relaxation rate and drift scales from their relative standard errors
(independent normals). Reported intervals are the 2.5 / 97.5 percentiles of the draws.
Mean and spread are those of a read floored at 0 S (a low level whose spread reaches zero
conductance piles up at 0, as the samplers and a real conductance do).
Parameters without uncertainty (literature values) are held fixed: the interval then only
reflects what was fitted, and the result says which parameters were fixed.

A retention model fitted to bakes at ONE temperature keeps Ea at a prior (``fit.gof``
``ea_ev_prior`` = 1, ``fit.ci95["ea_ev"]`` the published range, see
:mod:`cimlab.models.fit.retention`): Ea is then drawn uniformly over that range (the room-
temperature onset t0 kept), the acceleration and equivalent-time intervals are the range's
end points, and the result carries a warning (printed by ``cimlab model extrapolate``).

Use conditions are bounded: ``years`` > 0 and ``MIN_TEMP_C`` < ``temp_c`` <= ``MAX_TEMP_C``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cimlab.models.device_model import DeviceModel, rectified_moments
from cimlab.models.effects import K_B_EV
from cimlab.units import KELVIN_OFFSET

SECONDS_PER_YEAR = 365.25 * 86400.0
#: Lowest use temperature [C] (exclusive): absolute zero.
MIN_TEMP_C = -KELVIN_OFFSET
#: Highest use temperature [C] accepted: 400 C, above any CMOS back-end operating or bake
#: condition (JEDEC retention bakes go up to 250-300 C); the Arrhenius law of one mechanism
#: is not an extrapolation tool beyond that.
MAX_TEMP_C = 400.0


@dataclass
class Extrapolation:
    """Result of :func:`extrapolate_retention` (all SI; intervals are 95 %)."""

    t_use_s: float
    temp_k: float
    acceleration: float
    acceleration_ci95: tuple[float, float]
    t_equivalent_s: float
    t_equivalent_ci95: tuple[float, float]
    g_siemens: np.ndarray
    mean_shift_siemens: np.ndarray
    mean_shift_ci95: np.ndarray  # (levels, 2)
    sigma_siemens: np.ndarray  # total std of a read: programming, relaxation, read noise
    sigma_ci95: np.ndarray
    sigma_relax_siemens: np.ndarray
    fixed: list[str] = field(default_factory=list)
    n_draws: int = 0
    warnings: list[str] = field(default_factory=list)

    def table(self) -> str:
        """Readable table of the per-level projection."""
        lines = [f"WARNING: {w}" for w in self.warnings]
        lines += [
            f"use condition: {self.t_use_s / SECONDS_PER_YEAR:.3g} years at "
            f"{self.temp_k - KELVIN_OFFSET:.1f} C",
            f"acceleration vs room temperature: {self.acceleration:.4g} "
            f"[{self.acceleration_ci95[0]:.3g}, {self.acceleration_ci95[1]:.3g}]",
            f"equivalent room-temperature time: {self.t_equivalent_s:.4g} s "
            f"[{self.t_equivalent_ci95[0]:.3g}, {self.t_equivalent_ci95[1]:.3g}]",
            "",
            f"{'level [µS]':>10} {'mean shift [µS]':>26} {'sigma of a read [µS]':>26}",
        ]
        for i, g in enumerate(self.g_siemens):
            ms, (mlo, mhi) = self.mean_shift_siemens[i] * 1e6, self.mean_shift_ci95[i] * 1e6
            sg, (slo, shi) = self.sigma_siemens[i] * 1e6, self.sigma_ci95[i] * 1e6
            lines.append(f"{g * 1e6:10.2f} {ms:8.3f} [{mlo:7.3f}, {mhi:7.3f}] "
                         f"{sg:8.3f} [{slo:7.3f}, {shi:7.3f}]")
        if self.fixed:
            lines.append("held fixed (no uncertainty in the model): " + ", ".join(self.fixed))
        lines.append(f"Monte-Carlo draws: {self.n_draws}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return {
            "t_use_s": self.t_use_s,
            "temp_k": self.temp_k,
            "acceleration": self.acceleration,
            "acceleration_ci95": list(self.acceleration_ci95),
            "t_equivalent_s": self.t_equivalent_s,
            "t_equivalent_ci95": list(self.t_equivalent_ci95),
            "levels": [
                {
                    "g_siemens": float(g),
                    "mean_shift_siemens": float(m),
                    "mean_shift_ci95": list(map(float, mc)),
                    "sigma_siemens": float(s),
                    "sigma_ci95": list(map(float, sc)),
                }
                for g, m, mc, s, sc in zip(
                    self.g_siemens,
                    self.mean_shift_siemens,
                    self.mean_shift_ci95,
                    self.sigma_siemens,
                    self.sigma_ci95,
                    strict=True,
                )
            ],
            "fixed": self.fixed,
            "n_draws": self.n_draws,
            "warnings": self.warnings,
        }


def _rel_se(effect, names) -> float:
    fit = effect.fit
    if fit is None:
        return 0.0
    for n in names:
        v = getattr(effect, n)
        se = fit.stderr.get(n)
        if se is not None and v != 0 and math.isfinite(se):
            return abs(se / v)
    return 0.0


def extrapolate_retention(
    dm: DeviceModel,
    years: float = 10.0,
    temp_c: float = 85.0,
    g_siemens: np.ndarray | None = None,
    n_draws: int = 4000,
    seed: int = 0,
) -> Extrapolation:
    """Project every level of ``dm`` to ``years`` at ``temp_c`` [degC]: the time becomes
    Arrhenius-equivalent room-temperature time, the relaxation model gives each level's mean
    drift and spread (a read floored at 0 S); 95 % intervals from ``n_draws`` Monte-Carlo
    draws of the fitted parameters (Ea and ln tau0 jointly, from the retention fit's
    covariance; Ea uniform over the published range when it was not fitted)."""
    if not (math.isfinite(years) and years > 0):
        raise ValueError(f"the time at temperature must be a positive number of years, "
                         f"got {years}")
    if not (math.isfinite(temp_c) and MIN_TEMP_C < temp_c <= MAX_TEMP_C):
        raise ValueError(f"the use temperature must be above {MIN_TEMP_C} C (absolute zero) "
                         f"and at most {MAX_TEMP_C:g} C, got {temp_c} C")
    temp_k = temp_c + KELVIN_OFFSET
    ret = dm.retention
    if ret.t_fail_k > 0 and temp_k >= ret.t_fail_k:
        raise ValueError(
            f"the model's bakes left the Arrhenius law at {ret.t_fail_k - KELVIN_OFFSET:.0f} C and "
            f"above (another failure mode; see 'cimlab model show'), so it cannot project to "
            f"{temp_c:g} C; use a temperature below {ret.t_fail_k - KELVIN_OFFSET:.0f} C")
    g = np.asarray(dm.window.level_conductances() if g_siemens is None else g_siemens, dtype=float)
    # parameter draws that leave floating point (an Ea or onset the bakes did not identify)
    # end in the refusal below, not in NumPy warnings on the way
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        return _project(dm, g, years * SECONDS_PER_YEAR, temp_k, n_draws, seed)


def _project(dm: DeviceModel, g: np.ndarray, t_use: float, temp_k: float, n_draws: int,
             seed: int) -> Extrapolation:
    """The Monte-Carlo projection of :func:`extrapolate_retention` (arguments checked)."""
    ret, rel = dm.retention, dm.relaxation
    rng = np.random.default_rng(seed)
    fixed = []
    warnings: list[str] = []
    mean = np.array([ret.ea_ev, math.log(ret.tau0_s)])
    cov = None
    if ret.fit is not None and ret.fit.covariance is not None:
        cov = np.asarray(ret.fit.covariance["matrix"], dtype=float)
    ea_range = None
    if ret.fit is not None and ret.fit.gof.get("ea_ev_prior") and "ea_ev" in ret.fit.ci95:
        ea_range = tuple(map(float, ret.fit.ci95["ea_ev"]))
    if ea_range is not None:
        # Ea a prior (one bake temperature): uniform over its range, room-temperature onset
        # t0 = tau0 exp(Ea / kB T_ref) kept (with its own uncertainty)
        b = 1.0 / (K_B_EV * ret.t_ref_k)
        ln_t0 = mean[1] + b * mean[0]
        var_lt0 = 0.0
        if cov is not None and np.all(np.isfinite(cov)):
            var_lt0 = max(float(cov[1, 1] + 2 * b * cov[0, 1] + b * b * cov[0, 0]), 0.0)
        ea = rng.uniform(ea_range[0], ea_range[1], n_draws)
        ln_tau0 = ln_t0 + math.sqrt(var_lt0) * rng.standard_normal(n_draws) - b * ea
        warnings.append(
            f"Ea was not fitted (one bake temperature: Ea not identifiable); it is a prior of "
            f"{ret.ea_ev:g} eV with the published range [{ea_range[0]:g}, {ea_range[1]:g}] eV, "
            f"propagated into every interval. Bake at two or more temperatures to fit Ea.")
    elif cov is None or not np.all(np.isfinite(cov)):
        fixed.append("retention (Ea, tau0)")
        draws = np.repeat(mean[None, :], n_draws, axis=0)
        ea, ln_tau0 = draws[:, 0], draws[:, 1]
    else:
        draws = rng.multivariate_normal(mean, cov, size=n_draws, method="eigh")
        ea, ln_tau0 = draws[:, 0], draws[:, 1]
    t0 = np.exp(ln_tau0 + ea / (K_B_EV * ret.t_ref_k))
    af = np.exp(ea / K_B_EV * (1.0 / ret.t_ref_k - 1.0 / temp_k))
    t_eq = t_use * af
    se_k = _rel_se(rel, ("k_peak", "k0"))
    se_m = _rel_se(rel, ("m_max",))
    if se_k == 0.0:
        fixed.append("relaxation rate")
    if se_m == 0.0:
        fixed.append("relaxation drift")
    # rate scale: log-normal (a variance rate cannot go negative, however uncertain); drift
    # scale: normal (a drift may change sign within its uncertainty)
    sk = np.exp(se_k * rng.standard_normal(n_draws) - 0.5 * se_k**2)
    sm = 1.0 + se_m * rng.standard_normal(n_draws)
    L = np.log10(1.0 + t_eq / t0)  # (draws,)
    k = np.asarray(rel.rate(g))  # (levels,)
    dr = np.asarray(rel.drift(g))
    var_relax = sk[:, None] * k[None, :] * L[:, None]
    base = np.asarray(dm.programming.sigma(g)) ** 2 + np.asarray(dm.read_noise.sigma(g)) ** 2
    # moments of a read floored at 0 S (as the samplers and a conductance are)
    m_read, sig = rectified_moments(g[None, :] + sm[:, None] * dr[None, :] * L[:, None],
                                    base[None, :] + var_relax)
    shift = m_read - g[None, :]
    # central values from the point estimates
    t_eq0 = ret.equivalent_time(t_use, temp_k)
    L0 = float(np.log10(1.0 + t_eq0 / (ret.tau0_s * math.exp(ret.ea_ev / (K_B_EV * ret.t_ref_k)))))
    pct = (2.5, 97.5)
    m0, s0 = rectified_moments(g + dr * L0, base + k * L0)
    af_ci = tuple(np.percentile(af, pct).tolist())
    if ea_range is not None:
        # the published range is a bound, not a distribution: its end points
        x = (1.0 / ret.t_ref_k - 1.0 / temp_k) / K_B_EV
        af_ci = tuple(sorted(math.exp(e * x) for e in ea_range))
    out = (af_ci, np.percentile(shift, pct, axis=0), np.percentile(sig, pct, axis=0), m0, s0)
    if not all(np.all(np.isfinite(np.asarray(x, dtype=float))) for x in out):
        raise ValueError(
            "the projection has no finite interval (the model's Ea / tau0 uncertainty spans "
            "more than floating point can carry at this time and temperature: "
            f"Ea {ret.ea_ev:g} eV, tau0 {ret.tau0_s:.3g} s); refit with more bake "
            "temperatures, or project a shorter time")
    return Extrapolation(
        t_use_s=t_use, temp_k=temp_k,
        acceleration=float(ret.acceleration(temp_k)),
        acceleration_ci95=af_ci,
        t_equivalent_s=float(t_eq0),
        t_equivalent_ci95=(t_use * af_ci[0], t_use * af_ci[1]) if ea_range is not None
        else tuple(np.percentile(t_eq, pct).tolist()),
        g_siemens=g, mean_shift_siemens=m0 - g,
        mean_shift_ci95=np.percentile(shift, pct, axis=0).T,
        sigma_siemens=s0, sigma_ci95=np.percentile(sig, pct, axis=0).T,
        sigma_relax_siemens=np.sqrt(np.maximum(k * L0, 0.0)), fixed=fixed, n_draws=n_draws,
        warnings=warnings,
    )
