"""The pulse-response models adaptive program-verify plans with and the sweeps that measure
them (:func:`measure_pulse_response` picks one by ``ProgramVerifyConfig.response_model``).

:class:`PulseResponse` (``"parametric"``) assumes a functional form: a SET moves a fraction
``set_frac(v)`` of the way from G to a gate-dependent ceiling, a RESET a fraction
``reset_frac(v)`` of the way down to a floor. That form is the emulator's own pulse law
(cimlab.physics.chip: ``g' = g + f (g_t - g)``), so a planner built on it knows the physics;
it is kept for comparison. The default is the generic, measured table
(:class:`~cimlab.procedures.pulse_table.TabulatedResponse`, ``"tabulated"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.ceiling_sweep import finite_median, measure_ceilings, robust_rel_sd
from cimlab.procedures.pulse_table import TabulatedResponse, measure_tabulated_response
from cimlab.procedures.verify_config import RESET, SET, ProgramVerifyConfig, _grid
from cimlab.stats import robust_sigma


@dataclass(frozen=True)
class PulseResponse:
    """The chip's mean pulse response, fitted by :func:`measure_pulse_response`.

    SET (1T1R, compliance set by the word line): a saturating SET (amplitude ``v_set_sat``)
    leaves a cell near the ceiling ``ceiling_siemens(v_gate)`` (relative spread
    ``ceiling_rel_sd``); a SET of amplitude ``v`` moves the fraction ``set_frac(v)`` of the way
    from G to the ceiling. RESET of amplitude ``v`` moves the fraction ``reset_frac(v)`` of the
    way from G down to the floor ``reset_floor_siemens(v)`` (log spread ``floor_log_sd``).
    ``*_rel_sd``: cell-to-cell relative spread of the step at a given setting.
    """

    gate_v: np.ndarray
    ceiling_siemens: np.ndarray
    ceiling_rel_sd: float
    v_set_sat: float
    set_v: np.ndarray
    set_frac: np.ndarray
    set_rel_sd: float
    reset_v: np.ndarray
    reset_frac: np.ndarray
    reset_floor_siemens: np.ndarray
    reset_rel_sd: float
    floor_log_sd: float
    n_cells: int = 0
    round_trips: int = 0
    kind: str = "parametric"

    def gate_for_ceiling(self, g: np.ndarray) -> np.ndarray:
        """Word-line voltage whose mean ceiling is ``g`` [S] (monotone interpolation; NaN
        outside the measured range)."""
        c = np.maximum.accumulate(self.ceiling_siemens)
        keep = np.concatenate([[True], np.diff(c) > 0])
        return np.interp(g, c[keep], self.gate_v[keep], left=np.nan, right=np.nan)

    def ceiling_at(self, v_gate: np.ndarray) -> np.ndarray:
        return np.interp(v_gate, self.gate_v, np.maximum.accumulate(self.ceiling_siemens))

    # ---------------------------------------------------------------- loop interface
    def set_candidates(self, g: np.ndarray, tgt: np.ndarray, kappa: np.ndarray,
                       gain: np.ndarray, n_obs: np.ndarray, tol: float
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Partial SETs at each amplitude towards a ceiling above the target: amplitudes,
        gates, mean steps and spreads (n, amps) (spreads without the read noise)."""
        c_hi = np.maximum(tgt + 4 * tol, 1.25 * tgt)
        vg_hi = self.gate_for_ceiling(c_hi / kappa)
        vg_hi = np.where(np.isfinite(vg_hi), vg_hi, self.gate_v[-1])
        gap = np.maximum(kappa * self.ceiling_at(vg_hi) - g, 0.0)
        f = np.minimum(self.set_frac[None, :] * gain[:, None], 1.0)
        step = f * gap[:, None]
        s_sd = (self.set_rel_sd / np.sqrt(1.0 + n_obs))[:, None]
        sd = np.sqrt((s_sd * step) ** 2 + 0.1e-6 * step + (0.03 * step) ** 2)
        return (np.broadcast_to(self.set_v, step.shape),
                np.broadcast_to(vg_hi[:, None], step.shape), step, sd)

    def reset_candidates(self, g: np.ndarray, gain: np.ndarray, n_obs: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Partial RESETs: amplitudes (k,), mean steps and spreads (n, k)."""
        fl = self.reset_floor_siemens[None, :]
        f = np.minimum(self.reset_frac[None, :] * gain[:, None], 1.0)
        step = -f * np.maximum(g[:, None] - fl, 0.0)
        s_sd = (self.reset_rel_sd / np.sqrt(1.0 + n_obs))[:, None]
        sd = np.sqrt((s_sd * step) ** 2 + 0.1e-6 * np.abs(step) + (0.03 * step) ** 2
                     + (f * fl * self.floor_log_sd) ** 2)
        return self.reset_v, step, sd

    def deep_reset(self, g: np.ndarray) -> tuple[float, np.ndarray]:
        """The strongest RESET: amplitude [V] and mean step [S] (n,)."""
        return float(self.reset_v[-1]), -np.maximum(g - self.reset_floor_siemens[-1], 0.0)

    def bump(self, direction: int, k: np.ndarray, boost: np.ndarray) -> np.ndarray:
        """Candidate index ``boost`` amplitude steps above ``k``."""
        amps = self.set_v if direction == SET else self.reset_v
        return np.minimum(k + boost, amps.size - 1)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PulseResponse:
        return cls(**{k: np.asarray(v, dtype=float) if isinstance(v, list) else v
                      for k, v in d.items()})


#: the models the adaptive loop can plan with (``ProgramVerifyConfig.response_model``)
ResponseModel = PulseResponse | TabulatedResponse


def measure_pulse_response(ops: ArrayOps, cells: np.ndarray, cfg: ProgramVerifyConfig,
                           rng: np.random.Generator) -> ResponseModel:
    """Measure the adaptive scheme's pulse-response model with a short batched sweep on
    ``cells``: ``cfg.response_model`` "tabulated" (generic, measured, no
    physical form; :func:`~cimlab.procedures.pulse_table.measure_tabulated_response`) or
    "parametric" (:func:`measure_parametric_response`)."""
    if cfg.response_model == "tabulated":
        return measure_tabulated_response(ops, cells, cfg, rng)
    return measure_parametric_response(ops, cells, cfg, rng)


def response_from_dict(d: dict[str, Any]) -> ResponseModel:
    """A response model back from its ``to_dict()`` (checkpoints, store metadata)."""
    if d.get("kind", "parametric") == "tabulated":
        return TabulatedResponse.from_dict(d)
    return PulseResponse.from_dict(d)


def measure_parametric_response(ops: ArrayOps, cells: np.ndarray, cfg: ProgramVerifyConfig,
                                rng: np.random.Generator) -> PulseResponse:
    """Fit the parametric pulse response with a short batched sweep on ``cells``.

    Three sweeps, each ``cfg.calibration_rounds`` rounds over all ``cells`` with a random
    setting per cell (per-cell amplitudes and gate voltages in one command):

    1. ceiling: deep RESET, saturating SET at a random word-line voltage, read;
    2. SET kinetics: deep RESET, read, SET at a random amplitude with the gate at a ceiling
       near the top of the window, read; fraction = dG / (ceiling - G);
    3. RESET kinetics: saturating SET to a random ceiling, read, RESET at a random amplitude,
       read; per amplitude, ``G0 - G1 = f G0 - f F`` is fitted across cells (robust
       least squares) for the fraction ``f`` and the floor ``F``.
    """
    rt0 = ops.round_trips
    cells = np.asarray(cells, dtype=np.uint32)
    n = cells.size
    R = cfg.calibration_rounds
    # 1. ceiling per gate voltage
    gates, ceiling, rel = measure_ceilings(ops, cells, cfg, rng)
    ceiling_rel_sd = float(np.nanmedian(rel[ceiling > 5e-6])) if np.any(ceiling > 5e-6) \
        else float(np.nanmedian(rel))
    # 2. SET kinetics at a gate giving a ceiling near the top of the window
    c_mono = np.maximum.accumulate(ceiling)
    top = float(c_mono[-1])
    target_ceiling = min(top, 1.2 * float(np.interp(0.8, [0, 1], [0, top])))
    vg_ref = float(np.interp(target_ceiling, c_mono, gates))
    c_ref = float(np.interp(vg_ref, gates, c_mono))
    set_v = _grid(cfg.v_set_start, cfg.v_set_max, cfg.fine_step_v)
    fv, ff = [], []
    for _ in range(R):
        ops.pulse(cells, RESET, cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
        g0 = ops.read(cells)
        v = rng.choice(set_v, n)
        ops.pulse(cells, SET, v, vg_ref, cfg.width_s)
        g1 = ops.read(cells)
        gap = c_ref - g0
        good = gap > 0.3 * c_ref
        fv.append(v[good])
        ff.append((g1[good] - g0[good]) / gap[good])
    fv_all, ff_all = np.concatenate(fv), np.concatenate(ff)
    set_frac = np.array([finite_median(ff_all[fv_all == v]) for v in set_v])
    set_frac = np.clip(np.nan_to_num(set_frac, nan=0.0), 0.0, 1.0)
    set_frac = np.maximum.accumulate(set_frac)
    mid = (set_frac > 0.05) & (set_frac < 0.7)
    sds = [robust_rel_sd(ff_all[fv_all == v]) for v in set_v[mid]]
    sds = [x for x in sds if np.isfinite(x)]
    # no partial-SET amplitude with a measurable spread (a small calibration set): 0.5
    set_rel_sd = float(np.median(sds)) if sds else 0.5
    # 3. RESET kinetics from spread starting points
    reset_v = _grid(cfg.v_reset_start, cfg.v_reset_max, cfg.fine_step_v)
    rv, r0, r1 = [], [], []
    hi_gates = gates[(c_mono >= 0.3 * top)]
    for _ in range(R):
        vg = rng.choice(hi_gates, n)
        ops.pulse(cells, SET, cfg.v_set_max, vg, cfg.width_s)
        g0 = ops.read(cells)
        v = rng.choice(reset_v, n)
        ops.pulse(cells, RESET, v, cfg.v_gate_reset, cfg.width_s)
        g1 = ops.read(cells)
        rv.append(v)
        r0.append(g0)
        r1.append(g1)
    rv_all, r0_all, r1_all = (np.concatenate(x) for x in (rv, r0, r1))
    frac = np.zeros(reset_v.size)
    floor = np.full(reset_v.size, np.nan)
    rel_sd = []
    for i, v in enumerate(reset_v):
        m = (rv_all == v) & (r0_all > 0.2 * top) & (r0_all < 1.1 * top)
        if m.sum() < 8:
            continue
        x, y = r0_all[m], r0_all[m] - r1_all[m]
        f_i, b_i = _robust_line(x, y)
        f_i = float(np.clip(f_i, 0.0, 1.0))
        frac[i] = f_i
        if f_i > 0.02:
            floor[i] = max(-b_i / f_i, 1e-9)
            pred = f_i * (x - floor[i])
            if 0.05 < f_i < 0.7:
                rel_sd.append(robust_rel_sd(y / np.where(pred > 0, pred, np.nan)))
        else:
            floor[i] = np.nan
    frac = np.maximum.accumulate(frac)
    # floors: log-linear fit where the RESET is nearly complete, extended to all amplitudes
    full = np.isfinite(floor) & (frac > 0.5)
    if full.sum() >= 2:
        k, b0 = np.polyfit(reset_v[full], np.log(floor[full]), 1)
        floor_fit = np.exp(b0 + k * reset_v)
        fl = [np.log(np.maximum(r1_all[(rv_all == v)], 1e-9)) for v in reset_v[frac > 0.95]]
        lsd = [x for x in (robust_sigma(a) for a in fl if a.size > 5) if np.isfinite(x)]
        floor_log_sd = float(np.median(lsd)) if lsd else 0.9
    else:
        # too few amplitudes with a measurable floor (a small calibration set): the measured
        # floor where there is one, else the lowest conductance any RESET left
        known = np.isfinite(floor)
        fallback = (float(np.min(floor[known])) if known.any()
                    else max(float(np.min(r1_all)), 1e-9))
        floor_fit = np.where(known, floor, fallback)
        floor_log_sd = 0.9
    return PulseResponse(
        gate_v=gates, ceiling_siemens=ceiling, ceiling_rel_sd=float(ceiling_rel_sd),
        v_set_sat=cfg.v_set_max, set_v=set_v, set_frac=set_frac,
        set_rel_sd=float(np.clip(set_rel_sd, 0.05, 2.0)),
        reset_v=reset_v, reset_frac=frac, reset_floor_siemens=floor_fit,
        reset_rel_sd=float(np.clip(np.nanmedian(rel_sd) if rel_sd else 0.5, 0.05, 2.0)),
        floor_log_sd=float(floor_log_sd if np.isfinite(floor_log_sd) else 0.9),
        n_cells=int(n), round_trips=ops.round_trips - rt0)


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line y = a x + b, refitted once without points beyond 3 robust sigma."""
    a, b = np.polyfit(x, y, 1)
    r = y - (a * x + b)
    s = robust_sigma(r) + 1e-30
    keep = np.abs(r) < 3 * s
    if keep.sum() >= 4:
        a, b = np.polyfit(x[keep], y[keep], 1)
    return float(a), float(b)

