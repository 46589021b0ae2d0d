"""Program-verify: bring many cells to target conductances, vectorised over all of them.

Every iteration is exactly ONE batched pulse command and ONE batched read command. cimlab's
array-controller protocol takes one polarity per pulse command (``ARR:PULS? SET|RESET,...``,
per-cell amplitudes and gate voltages), so an iteration pulses either the cells that need a
SET or those that need a RESET; when both groups are non-empty the loop alternates between
them (a cell's pulse count is unaffected; the iteration count at most doubles, and the
per-command instrument time is small against the per-cell time). Verify reads are averaged
over ``n_reads`` reads taken in that one read command (the cell list repeated ``n_reads``
times: the protocol allows repeated cells in ``ARR:READ?``).

A cell is done when its verify read lies within ``+- tolerance_s`` of its target; it fails
when it reaches ``max_pulses``, ``max_alternations`` SET/RESET direction changes, or does not
respond to ``stuck_after`` strong pulses in a row (stuck-at fault, paper 004).

Schemes (``ProgramVerifyConfig.scheme``):

``ispp``
    Incremental-step pulse programming as in NeuRRAM (Wan et al., Nature 608, 2022): SET
    pulses on the bit line at a fixed word-line voltage, RESET pulses on the source line, each
    consecutive pulse in the same direction ``step_v`` (0.1 V) higher, the staircase
    restarting after a direction change; amplitudes capped at ``v_set_max``/``v_reset_max``.
``adaptive``
    Model-predictive choice of each cell's next pulse. A short batched sweep on a subset of
    the cells fits the chip's mean pulse response (:class:`PulseResponse`): the conductance a
    saturating SET leaves at each word-line voltage (the 1T1R compliance sets the LRS,
    R = V_C / I_C, Ielmini 2011), the fraction of the way to it a SET of each amplitude moves,
    and for RESET the fraction and the floor per amplitude. For every unfinished cell the loop
    predicts mean and spread of the outcome of each candidate pulse (SET landing at a ceiling
    equal to the target, partial SET steps, partial RESET steps, a deep RESET) and applies the
    one most likely to land inside the band; per-cell factors learned from the cell's own
    responses (its ceiling factor and its SET/RESET step gains) absorb device-to-device spread
    (10-30 %). In the spirit of RADAR-style adaptive programming (~8.7 pulses/cell, DESIGN.md).
``single_shot``
    One SET pulse from the RESET state at the word-line voltage a measured gate-voltage ->
    mean-G curve maps to the target (:func:`program_single_shot`; what a lab does without
    verify).

Published references (DESIGN.md): ISPP ~24 pulses/cell (99.2 %), fixed-pulse verify ~16
(99.7 %), adaptive RADAR ~8.7 (99.8 %) at 2 bits/cell; NeuRRAM leaves 0.2-0.8 % of cells
outside +-1 uS.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.stats import MAD_TO_SIGMA

SET = 1
RESET = -1


@dataclass(frozen=True)
class ProgramVerifyConfig:
    """Settings of a program-verify run. Voltages [V], widths [s], conductances [S]."""

    scheme: str = param("adaptive", choices=("adaptive", "ispp", "single_shot"),
                        doc="verify scheme")
    tolerance_s: float = param(1e-6, unit="S", lo=0.0, lo_open=True, hi=1e-3,
                               doc="accept band half width around the target (NeuRRAM: 1 uS)")
    max_pulses: int = param(40, unit="1", lo=1, hi=100_000, doc="pulse cap per cell")
    max_alternations: int = param(16, unit="1", lo=0, hi=100_000,
                                  doc="SET<->RESET direction changes before a cell fails")
    stuck_after: int = param(3, unit="1", lo=1, hi=1000,
                             doc="strong pulses without response before a cell is called stuck")
    n_reads: int = param(1, unit="1", lo=1, hi=64, doc="verify reads averaged per iteration")
    width_s: float = param(100e-9, unit="s", lo=0.0, lo_open=True, hi=1.0,
                           doc="pulse width (paper 003: 100 ns; NeuRRAM used 1 us, which on "
                           "the emulated chip gives the same pulse counts at ~13x the energy)")
    v_gate_set: float = param(1.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                              doc="word-line voltage of ISPP SET pulses (sets the compliance)")
    v_gate_reset: float = param(3.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                doc="word-line voltage of RESET pulses (transistor fully on)")
    v_set_start: float = param(0.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                               doc="first SET amplitude of the staircase / lowest candidate")
    v_set_max: float = param(2.0, unit="V", lo=0.0, lo_open=True, hi=10.0,
                             doc="highest SET amplitude (saturating SET of the adaptive scheme)")
    v_reset_start: float = param(0.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                                 doc="first RESET amplitude of the staircase / lowest candidate")
    v_reset_max: float = param(2.8, unit="V", lo=0.0, lo_open=True, hi=10.0,
                               doc="highest RESET amplitude (deep RESET)")
    step_v: float = param(0.1, unit="V", lo=0.0, lo_open=True, hi=2.0,
                          doc="staircase step (NeuRRAM: 0.1 V)")
    # adaptive scheme
    v_gate_min: float = param(0.55, unit="V", lo=0.0, hi=10.0,
                              doc="lowest word-line voltage of the adaptive SET candidates")
    v_gate_max: float = param(1.2, unit="V", lo=0.0, hi=10.0,
                              doc="highest word-line voltage of the adaptive SET candidates")
    fine_step_v: float = param(0.05, unit="V", lo=0.0, lo_open=True, hi=1.0,
                               doc="amplitude grid spacing of the adaptive partial pulses")
    gain_rate: float = param(0.5, unit="1", lo=0.0, hi=1.0,
                             doc="per-cell gain update rate (0: no per-cell adaptation)")
    calibration_rounds: int = param(4, unit="1", lo=1, hi=1000,
                                    doc="rounds of each pulse-response sweep (adaptive)")
    calibration_cells: int = param(1024, unit="1", lo=16, doc="cells in the response sweep")

    def __post_init__(self) -> None:
        check(self)
        if self.v_set_max < self.v_set_start:
            raise ConfigError(None, "v_set_max", f">= v_set_start = {self.v_set_start:g} V",
                              self.v_set_max)
        if self.v_reset_max < self.v_reset_start:
            raise ConfigError(None, "v_reset_max", f">= v_reset_start = {self.v_reset_start:g} V",
                              self.v_reset_max)
        if self.v_gate_max <= self.v_gate_min:
            raise ConfigError(None, "v_gate_max", f"> v_gate_min = {self.v_gate_min:g} V",
                              self.v_gate_max)

    def max_v_set(self) -> float:
        return self.v_set_max

    def max_v_reset(self) -> float:
        return self.v_reset_max

    def max_v_gate(self) -> float:
        return max(self.v_gate_set, self.v_gate_reset, self.v_gate_max)

    def max_v_gate_set(self) -> float:
        """Highest word-line voltage of a SET pulse [V] (sets the largest compliance)."""
        return self.v_gate_set if self.scheme == "ispp" else self.v_gate_max

    def set_amplitudes(self) -> np.ndarray:
        """ISPP SET staircase [V]."""
        return _grid(self.v_set_start, self.v_set_max, self.step_v)

    def reset_amplitudes(self) -> np.ndarray:
        """ISPP RESET staircase [V]."""
        return _grid(self.v_reset_start, self.v_reset_max, self.step_v)


def _grid(lo: float, hi: float, step: float) -> np.ndarray:
    n = int(np.floor((hi - lo) / step + 1e-9)) + 1
    return np.round(lo + step * np.arange(n), 9)


# --------------------------------------------------------------------------- array access
class ArrayOps:
    """Batched pulse and read over a station's array driver, counting round trips.

    ``pulse`` sends one command per polarity present (program-verify always passes one
    polarity, so one command); ``read`` one command for ``n_reads`` reads of every cell
    (cell list repeated), averaged here.
    """

    def __init__(self, array: Any):
        self.array = array
        self.round_trips = 0
        #: cell operations sent: one per pulsed cell, one per cell read
        self.cell_ops = 0

    def pulse(self, cells: np.ndarray, direction: Any, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        """Pulse ``cells``; ``direction`` +1 SET / -1 RESET (scalar or per cell). Energy [J]."""
        cells = np.asarray(cells, dtype=np.uint32)
        n = cells.size
        d = np.broadcast_to(np.asarray(direction), (n,))
        vp = np.broadcast_to(np.asarray(v_pulse, dtype=float), (n,))
        vg = np.broadcast_to(np.asarray(v_gate, dtype=float), (n,))
        energy = np.zeros(n)
        for pol, sign in (("set", SET), ("reset", RESET)):
            m = d == sign
            if not m.any():
                continue
            self.round_trips += 1
            self.cell_ops += int(m.sum())
            energy[m] = np.asarray(self.array.pulse(cells[m], pol, _compact(vp[m]),
                                                    _compact(vg[m]), float(width_s)), float)
        return energy

    def read(self, cells: np.ndarray, n_reads: int = 1) -> np.ndarray:
        """One batched read of ``cells`` (``n_reads`` reads averaged) [S]."""
        self.round_trips += 1
        c = np.asarray(cells, dtype=np.uint32)
        self.cell_ops += c.size * n_reads
        if n_reads == 1:
            return np.asarray(self.array.read(c), dtype=float)
        g = np.asarray(self.array.read(np.tile(c, n_reads)), dtype=float)
        return g.reshape(n_reads, c.size).mean(axis=0)


def _compact(v: np.ndarray) -> Any:
    """One number when every cell gets the same value (fewer bytes on the wire)."""
    return float(v[0]) if v.size and np.all(v == v[0]) else v


# --------------------------------------------------------------------------- pulse response
@dataclass(frozen=True)
class PulseResponse:
    """The chip's mean pulse response, fitted by :func:`measure_pulse_response`.

    SET (1T1R, compliance set by the word line): a saturating SET (amplitude ``v_set_sat``)
    leaves a cell near the ceiling ``ceiling_s(v_gate)`` (relative spread
    ``ceiling_rel_sd``); a SET of amplitude ``v`` moves the fraction ``set_frac(v)`` of the way
    from G to the ceiling. RESET of amplitude ``v`` moves the fraction ``reset_frac(v)`` of the
    way from G down to the floor ``reset_floor_s(v)`` (log spread ``floor_log_sd``).
    ``*_rel_sd``: cell-to-cell relative spread of the step at a given setting.
    """

    gate_v: np.ndarray
    ceiling_s: np.ndarray
    ceiling_rel_sd: float
    v_set_sat: float
    set_v: np.ndarray
    set_frac: np.ndarray
    set_rel_sd: float
    reset_v: np.ndarray
    reset_frac: np.ndarray
    reset_floor_s: np.ndarray
    reset_rel_sd: float
    floor_log_sd: float
    n_cells: int = 0
    round_trips: int = 0

    def gate_for_ceiling(self, g: np.ndarray) -> np.ndarray:
        """Word-line voltage whose mean ceiling is ``g`` [S] (monotone interpolation; NaN
        outside the measured range)."""
        c = np.maximum.accumulate(self.ceiling_s)
        keep = np.concatenate([[True], np.diff(c) > 0])
        return np.interp(g, c[keep], self.gate_v[keep], left=np.nan, right=np.nan)

    def ceiling_at(self, v_gate: np.ndarray) -> np.ndarray:
        return np.interp(v_gate, self.gate_v, np.maximum.accumulate(self.ceiling_s))

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                for k, v in self.__dict__.items()}


def _robust_median(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else np.nan


def _robust_rel_sd(x: np.ndarray) -> float:
    """1.4826 * MAD / median (robust relative spread; stuck cells do not inflate it)."""
    x = x[np.isfinite(x)]
    if x.size < 3:
        return np.nan
    med = np.median(x)
    return float(MAD_TO_SIGMA * np.median(np.abs(x - med)) / max(abs(med), 1e-30))


def measure_pulse_response(ops: ArrayOps, cells: np.ndarray, cfg: ProgramVerifyConfig,
                           rng: np.random.Generator) -> PulseResponse:
    """Fit the adaptive scheme's pulse response with a short batched sweep on ``cells``.

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
    gates = _grid(cfg.v_gate_min, cfg.v_gate_max, 0.025)
    # 1. ceiling per gate voltage
    vg_s, g_s = [], []
    for _ in range(R):
        ops.pulse(cells, RESET, cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
        vg = rng.choice(gates, n)
        ops.pulse(cells, SET, cfg.v_set_max, vg, cfg.width_s)
        vg_s.append(vg)
        g_s.append(ops.read(cells))
    vg_all, g_all = np.concatenate(vg_s), np.concatenate(g_s)
    ceiling = np.array([_robust_median(g_all[vg_all == v]) for v in gates])
    rel = np.array([_robust_rel_sd(g_all[vg_all == v]) for v in gates])
    ok = np.isfinite(ceiling)
    gates, ceiling = gates[ok], ceiling[ok]
    ceiling_rel_sd = float(np.nanmedian(rel[ok][ceiling > 5e-6])) if np.any(ceiling > 5e-6) \
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
    set_frac = np.array([_robust_median(ff_all[fv_all == v]) for v in set_v])
    set_frac = np.clip(np.nan_to_num(set_frac, nan=0.0), 0.0, 1.0)
    set_frac = np.maximum.accumulate(set_frac)
    mid = (set_frac > 0.05) & (set_frac < 0.7)
    set_rel_sd = float(np.nanmedian([_robust_rel_sd(ff_all[fv_all == v])
                                     for v in set_v[mid]])) if mid.any() else 0.5
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
                rel_sd.append(_robust_rel_sd(y / np.where(pred > 0, pred, np.nan)))
        else:
            floor[i] = np.nan
    frac = np.maximum.accumulate(frac)
    # floors: log-linear fit where the RESET is nearly complete, extended to all amplitudes
    full = np.isfinite(floor) & (frac > 0.5)
    if full.sum() >= 2:
        k, b0 = np.polyfit(reset_v[full], np.log(floor[full]), 1)
        floor_fit = np.exp(b0 + k * reset_v)
        fl = [np.log(np.maximum(r1_all[(rv_all == v)], 1e-9)) for v in reset_v[frac > 0.95]]
        floor_log_sd = float(np.nanmedian([MAD_TO_SIGMA * np.median(np.abs(a - np.median(a)))
                                           for a in fl if a.size > 5])) if fl else 0.9
    else:
        floor_fit = np.where(np.isfinite(floor), floor, np.nanmin(floor))
        floor_log_sd = 0.9
    return PulseResponse(
        gate_v=gates, ceiling_s=ceiling, ceiling_rel_sd=float(ceiling_rel_sd),
        v_set_sat=cfg.v_set_max, set_v=set_v, set_frac=set_frac,
        set_rel_sd=float(np.clip(set_rel_sd, 0.05, 2.0)),
        reset_v=reset_v, reset_frac=frac, reset_floor_s=floor_fit,
        reset_rel_sd=float(np.clip(np.nanmedian(rel_sd) if rel_sd else 0.5, 0.05, 2.0)),
        floor_log_sd=float(floor_log_sd if np.isfinite(floor_log_sd) else 0.9),
        n_cells=int(n), round_trips=ops.round_trips - rt0)


def _robust_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares line y = a x + b, refitted once without points beyond 3 robust sigma."""
    a, b = np.polyfit(x, y, 1)
    r = y - (a * x + b)
    s = MAD_TO_SIGMA * np.median(np.abs(r - np.median(r))) + 1e-30
    keep = np.abs(r) < 3 * s
    if keep.sum() >= 4:
        a, b = np.polyfit(x[keep], y[keep], 1)
    return float(a), float(b)


# --------------------------------------------------------------------------- results
@dataclass
class ProgramVerifyResult:
    """Per-cell outcome and run totals of a program-verify (or single-shot) run."""

    scheme: str
    cells: np.ndarray
    target_s: np.ndarray
    g_verify_s: np.ndarray        # last verify read per cell [S]
    pulses: np.ndarray            # pulses per cell
    energy_j: np.ndarray          # programming energy per cell [J]
    success: np.ndarray           # within tolerance at the last verify read
    tolerance_s: float
    iterations: int
    round_trips: int
    instrument_time_s: float      # virtual/real clock time spent
    host_time_s: float            # wall time on this computer
    stuck: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    alternations: np.ndarray = field(default_factory=lambda: np.zeros(0))
    last_pulse_iteration: np.ndarray = field(default_factory=lambda: np.zeros(0))
    iteration_times_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    g_final_s: np.ndarray | None = None   # an independent read after the run, if taken
    calibration_round_trips: int = 0
    #: clock time [s] of each cell's last pulse in this run (the start of the batched pulse
    #: command that carried it; NaN: the cell needed no pulse, its last pulse is unknown)
    last_pulse_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))
    #: clock time [s] of the read behind ``g_verify_s`` (start of its batched read command)
    verify_read_time_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def g0_time_s(self) -> np.ndarray:
        """Time [s] of each cell's verify read after its last pulse (NaN: no pulse)."""
        return self.verify_read_time_s - self.last_pulse_time_s

    def summary(self) -> dict[str, Any]:
        """Figures for the report table and the benchmark JSON."""
        err = self.g_verify_s - self.target_s
        p = self.pulses
        stuck = self.stuck if self.stuck.size == self.cells.size else np.zeros(p.size, bool)
        resp = ~stuck
        out: dict[str, Any] = {
            "scheme": self.scheme,
            "cells": int(self.cells.size),
            "success_rate": float(self.success.mean()),
            "stuck_detected": int(stuck.sum()),
            "success_rate_responsive": float(self.success[resp].mean()) if resp.any() else 0.0,
            "pulses_mean": float(p.mean()),
            "pulses_mean_responsive": float(p[resp].mean()) if resp.any() else 0.0,
            "pulses_median": float(np.median(p)),
            "pulses_p99": float(np.percentile(p, 99)),
            "pulses_max": int(p.max()) if p.size else 0,
            "error_rms_s": float(np.sqrt(np.mean(err[resp] ** 2))) if resp.any() else 0.0,
            "error_p99_abs_s": float(np.percentile(np.abs(err[resp]), 99)) if resp.any()
            else 0.0,
            "energy_total_j": float(self.energy_j.sum()),
            "energy_per_cell_j": float(self.energy_j.mean()),
            "iterations": int(self.iterations),
            "round_trips": int(self.round_trips),
            "calibration_round_trips": int(self.calibration_round_trips),
            "instrument_time_s": float(self.instrument_time_s),
            "host_time_s": float(self.host_time_s),
        }
        if self.g_final_s is not None:
            ef = self.g_final_s - self.target_s
            out["final_within_tol"] = float(np.mean(np.abs(ef[resp]) <= self.tolerance_s))
            out["final_error_rms_s"] = float(np.sqrt(np.mean(ef[resp] ** 2)))
        return out

    def pulse_histogram(self) -> dict[int, int]:
        """Number of cells per pulse count."""
        vals, counts = np.unique(self.pulses, return_counts=True)
        return {int(v): int(c) for v, c in zip(vals, counts, strict=True)}

    def pulse_distribution(self) -> str:
        """One line: share of cells per pulse-count bin (0, 1, 2-3, 4-7, 8-15, 16-31, 32+)."""
        edges = [0, 1, 2, 4, 8, 16, 32, np.iinfo(np.int64).max]
        labels = ["0", "1", "2-3", "4-7", "8-15", "16-31", "32+"]
        n = max(self.pulses.size, 1)
        parts = []
        for lo, hi, lab in zip(edges[:-1], edges[1:], labels, strict=True):
            share = np.count_nonzero((self.pulses >= lo) & (self.pulses < hi)) / n
            parts.append(f"{lab}: {100 * share:.1f}%")
        return f"{self.scheme} pulses/cell: " + ", ".join(parts)


_REPORT_ROWS = [
    ("cells", "{:.0f}", "cells", 1.0),
    ("success within tol [%]", "{:.3f}", "success_rate", 100.0),
    ("stuck cells detected", "{:.0f}", "stuck_detected", 1.0),
    ("success, responsive [%]", "{:.3f}", "success_rate_responsive", 100.0),
    ("pulses/cell mean", "{:.2f}", "pulses_mean", 1.0),
    ("pulses/cell mean, resp.", "{:.2f}", "pulses_mean_responsive", 1.0),
    ("pulses/cell median", "{:.1f}", "pulses_median", 1.0),
    ("pulses/cell p99", "{:.1f}", "pulses_p99", 1.0),
    ("pulses/cell max", "{:.0f}", "pulses_max", 1.0),
    ("verify error rms [uS]", "{:.3f}", "error_rms_s", 1e6),
    ("|verify error| p99 [uS]", "{:.3f}", "error_p99_abs_s", 1e6),
    ("final read within tol [%]", "{:.2f}", "final_within_tol", 100.0),
    ("final read error rms [uS]", "{:.3f}", "final_error_rms_s", 1e6),
    ("energy/cell [pJ]", "{:.2f}", "energy_per_cell_j", 1e12),
    ("energy total [uJ]", "{:.4f}", "energy_total_j", 1e6),
    ("iterations", "{:.0f}", "iterations", 1.0),
    ("round trips (+calib.)", "{:.0f}", "round_trips", 1.0),
    ("instrument time [s]", "{:.4f}", "instrument_time_s", 1.0),
    ("host time [s]", "{:.3f}", "host_time_s", 1.0),
]


def format_report(results: list[ProgramVerifyResult] | list[dict]) -> str:
    """A readable comparison table of several runs (one column per scheme)."""
    sums = [r if isinstance(r, dict) else r.summary() for r in results]
    head = f"{'':27s}" + "".join(f"{s['scheme']:>14s}" for s in sums)
    lines = [head, "-" * len(head)]
    for label, fmt, key, scale in _REPORT_ROWS:
        row = []
        for s in sums:
            v = s.get(key)
            row.append(f"{'-':>14s}" if v is None else f"{fmt.format(v * scale):>14s}")
        lines.append(f"{label:27s}" + "".join(row))
    return "\n".join(lines)


# --------------------------------------------------------------------------- verify loop
def program_verify(
    array: Any,
    cells: np.ndarray,
    target_s: np.ndarray,
    cfg: ProgramVerifyConfig,
    *,
    clock: Any = None,
    response: PulseResponse | None = None,
    rng: np.random.Generator | None = None,
    progress: bool = False,
    final_read: bool = False,
    timestamps: bool = False,
) -> ProgramVerifyResult:
    """Program ``cells`` to ``target_s`` [S] with the ``cfg.scheme`` verify loop.

    ``array`` is the station's array driver (anything with batched ``pulse`` and ``read``) or
    an :class:`ArrayOps`. ``clock`` (the station clock) is queried before and after for the
    instrument time and, with ``timestamps``, right before each batched pulse and each batched
    read command (clock queries, not array round trips): the result then holds each cell's
    last-pulse time (``last_pulse_time_s``) and the time of its verify read
    (``verify_read_time_s``), from which relaxation is timed. The time of a batch is the
    clock at the start of its command: the emulator applies a batch at that instant; a real
    board works through the batch's cells within the command's duration (one pulse width plus
    overhead per cell, e.g. ~1 us x the cells pulsed), which bounds the error of the
    record. ``iteration_times_s`` (clock after each iteration) is kept too. The adaptive
    scheme measures its pulse response on a subset of the cells first unless ``response`` is
    given. ``final_read`` adds one read of all cells after the loop (``g_final_s``).
    """
    if cfg.scheme == "single_shot":
        raise ValueError("single_shot has no verify loop; use program_single_shot()")
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_s, dtype=float), cells.shape).copy()
    rng = rng if rng is not None else np.random.default_rng(0)
    ops = array if isinstance(array, ArrayOps) else ArrayOps(array)
    t_host0 = time.perf_counter()
    t_inst0 = clock.now() if clock is not None else 0.0
    rt_start = ops.round_trips
    calib_rt = 0
    if cfg.scheme == "adaptive" and response is None:
        sub = cells if cells.size <= cfg.calibration_cells else np.sort(
            rng.choice(cells, cfg.calibration_cells, replace=False))
        response = measure_pulse_response(ops, sub, cfg, rng)
        calib_rt = response.round_trips
    loop = _VerifyLoop(ops, cells, target, cfg, response,
                       clock=clock if timestamps else None)
    iter_times: list[float] = []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        # disable=None: tqdm switches itself off when stderr is not a terminal (a log file)
        bar = tqdm(total=cells.size, desc=f"program-verify ({cfg.scheme})", unit="cell",
                   leave=False, disable=None)
    try:
        loop.start()
        if bar is not None:
            bar.update(int(loop.done.sum()))
        while True:
            newly = loop.iterate()
            if newly is None:
                break
            if timestamps and clock is not None:
                iter_times.append(clock.now())
            if bar is not None:
                bar.update(newly)
    finally:
        if bar is not None:
            bar.close()
    g_final = ops.read(cells) if final_read else None
    t_inst1 = clock.now() if clock is not None else 0.0
    return ProgramVerifyResult(
        scheme=cfg.scheme, cells=cells, target_s=target, g_verify_s=loop.g,
        pulses=loop.pulses, energy_j=loop.energy, success=loop.done,
        tolerance_s=cfg.tolerance_s, iterations=loop.it,
        round_trips=ops.round_trips - rt_start, instrument_time_s=t_inst1 - t_inst0,
        host_time_s=time.perf_counter() - t_host0, stuck=loop.stuck,
        alternations=loop.alternations, last_pulse_iteration=loop.last_iter,
        iteration_times_s=np.asarray(iter_times), g_final_s=g_final,
        calibration_round_trips=calib_rt, last_pulse_time_s=loop.pulse_time,
        verify_read_time_s=loop.read_time)


class _VerifyLoop:
    """State of a program-verify run; :meth:`iterate` is one pulse command + one read."""

    def __init__(self, ops: ArrayOps, cells: np.ndarray, target: np.ndarray,
                 cfg: ProgramVerifyConfig, response: PulseResponse | None, clock: Any = None):
        self.ops, self.cells, self.target, self.cfg, self.resp = ops, cells, target, cfg, response
        self.clock = clock
        n = cells.size
        # clock time of each cell's last pulse and of its last verify read (NaN: unknown)
        self.pulse_time = np.full(n, np.nan)
        self.read_time = np.full(n, np.nan)
        self.pulses = np.zeros(n, dtype=np.int64)
        self.energy = np.zeros(n)
        self.alternations = np.zeros(n, dtype=np.int64)
        self.last_dir = np.zeros(n, dtype=np.int64)
        self.stair = np.zeros(n, dtype=np.int64)
        self.last_iter = np.full(n, -1, dtype=np.int64)
        self.no_response = np.zeros(n, dtype=np.int64)
        self.stuck = np.zeros(n, dtype=bool)
        self.failed = np.zeros(n, dtype=bool)
        # adaptive per-cell knowledge
        self.kappa = np.ones(n)           # ceiling factor (cell ceiling / mean ceiling)
        self.kappa_n = np.zeros(n)        # observations behind kappa
        self.gain_set = np.ones(n)
        self.gain_reset = np.ones(n)
        self.n_set_obs = np.zeros(n)
        self.n_reset_obs = np.zeros(n)
        # per-cell escalation of partial pulses (grid steps) after pulses that moved nothing:
        # a device whose threshold or RESET floor lies far from the chip's mean
        self.boost_set = np.zeros(n, dtype=np.int64)
        self.boost_reset = np.zeros(n, dtype=np.int64)
        self.it = 0
        self.next_dir = SET
        self.set_amps = cfg.set_amplitudes()
        self.reset_amps = cfg.reset_amplitudes()

    def _now(self) -> float:
        return float(self.clock.now()) if self.clock is not None else np.nan

    def start(self) -> None:
        self.read_time[:] = self._now()
        self.g = self.ops.read(self.cells, self.cfg.n_reads)
        self.done = np.abs(self.g - self.target) <= self.cfg.tolerance_s

    # ------------------------------------------------------------------ one iteration
    def iterate(self) -> int | None:
        cfg = self.cfg
        active = np.flatnonzero(~self.done & ~self.failed)
        if active.size == 0:
            return None
        err = self.target[active] - self.g[active]
        want = np.where(err > 0, SET, RESET)
        has = {SET: bool((want == SET).any()), RESET: bool((want == RESET).any())}
        d = self.next_dir if has[self.next_dir] else -self.next_dir
        self.next_dir = -d
        sel = active[want == d]
        err = self.target[sel] - self.g[sel]
        changed = (self.last_dir[sel] != 0) & (self.last_dir[sel] != d)
        self.alternations[sel] += changed
        self.stair[sel] = np.where(changed | (self.last_dir[sel] == 0), 0, self.stair[sel] + 1)
        over = self.alternations[sel] > cfg.max_alternations
        if over.any():
            self.failed[sel[over]] = True
            sel, err = sel[~over], err[~over]
            if sel.size == 0:
                self.it += 1
                return 0
        if cfg.scheme == "ispp":
            amps = self.set_amps if d == SET else self.reset_amps
            vp = amps[np.minimum(self.stair[sel], amps.size - 1)]
            vg = np.full(sel.size, cfg.v_gate_set if d == SET else cfg.v_gate_reset)
            strong = vp >= amps[-1]
            pred = None
        else:
            vp, vg, pred, strong = self._adaptive(sel, err, d)
        self.pulse_time[sel] = self._now()
        e = self.ops.pulse(self.cells[sel], d, vp, vg, cfg.width_s)
        self.energy[sel] += e
        self.pulses[sel] += 1
        self.last_dir[sel] = d
        self.last_iter[sel] = self.it
        self.read_time[sel] = self._now()
        g_new = self.ops.read(self.cells[sel], cfg.n_reads)
        obs = g_new - self.g[sel]
        if pred is not None:
            self._learn(sel, d, vg, g_new, obs, pred)
        # stuck detection: strong pulses that move nothing
        moved = np.abs(obs) > 0.5 * cfg.tolerance_s
        still = strong & ~moved & (np.abs(err) > 3 * cfg.tolerance_s)
        self.no_response[sel] = np.where(still, self.no_response[sel] + 1, 0)
        self.g[sel] = g_new
        ok = np.abs(g_new - self.target[sel]) <= cfg.tolerance_s
        self.done[sel[ok]] = True
        stuck = ~ok & (self.no_response[sel] >= cfg.stuck_after)
        self.stuck[sel[stuck]] = True
        self.failed[sel[stuck]] = True
        capped = ~ok & (self.pulses[sel] >= cfg.max_pulses)
        self.failed[sel[capped]] = True
        self.it += 1
        return int(ok.sum())

    # ------------------------------------------------------------------ adaptive choice
    def _adaptive(self, sel: np.ndarray, err: np.ndarray, d: int):
        """Per cell, the candidate pulse most likely to land inside the band.

        Returns amplitudes, gate voltages, predicted outcome info and a 'strong' mask (pulses
        that must move any working cell: used for stuck detection).
        """
        r, cfg = self.resp, self.cfg
        assert r is not None
        tol = cfg.tolerance_s
        g = self.g[sel]
        tgt = self.target[sel]
        read_sd = 0.01 * np.abs(g) + 0.1e-6
        if d == SET:
            kappa = self.kappa[sel]
            k_sd = r.ceiling_rel_sd / np.sqrt(1.0 + self.kappa_n[sel])
            # candidate 0: saturating SET landing at a ceiling equal to the target
            vg_land = r.gate_for_ceiling(tgt / kappa)
            land_ok = np.isfinite(vg_land)
            vg_land = np.where(land_ok, vg_land, r.gate_v[-1])
            sd_land = np.hypot(tgt * k_sd, read_sd)
            p_land = np.where(land_ok, 2 * ndtr(tol / sd_land) - 1, 0.0)
            # candidates 1..k: partial SET at amplitude v toward a ceiling above the target
            c_hi = np.maximum(tgt + 4 * tol, 1.25 * tgt)
            vg_hi = r.gate_for_ceiling(c_hi / kappa)
            vg_hi = np.where(np.isfinite(vg_hi), vg_hi, r.gate_v[-1])
            gap = np.maximum(kappa * r.ceiling_at(vg_hi) - g, 0.0)        # (n,)
            f = np.minimum(r.set_frac[None, :] * self.gain_set[sel, None], 1.0)   # (n, k)
            step = f * gap[:, None]
            s_sd = (r.set_rel_sd / np.sqrt(1.0 + self.n_set_obs[sel]))[:, None]
            sd = np.sqrt((s_sd * step) ** 2 + 0.1e-6 * step + (0.03 * step) ** 2
                         + read_sd[:, None] ** 2)
            mu = g[:, None] + step - tgt[:, None]
            p = ndtr((tol - mu) / sd) - ndtr((-tol - mu) / sd)
            k = p.argmax(axis=1)
            p_part = p[np.arange(sel.size), k]
            use_land = p_land >= p_part
            k = np.minimum(k + self.boost_set[sel], r.set_v.size - 1)
            # far below the target: land (one big move) unless a partial step is clearly better
            vp = np.where(use_land, r.v_set_sat, r.set_v[k])
            vg = np.where(use_land, vg_land, vg_hi)
            pred_step = np.where(use_land, np.maximum(kappa * r.ceiling_at(vg_land) - g, 0.0),
                                 step[np.arange(sel.size), k])
            strong = use_land & (tgt - g > 3 * tol)
            return vp, vg, {"step": pred_step, "land": use_land}, strong
        # RESET: partial steps toward the floor at each amplitude, or a deep RESET below target
        fl = r.reset_floor_s[None, :]
        f = np.minimum(r.reset_frac[None, :] * self.gain_reset[sel, None], 1.0)
        step = -f * np.maximum(g[:, None] - fl, 0.0)
        s_sd = (r.reset_rel_sd / np.sqrt(1.0 + self.n_reset_obs[sel]))[:, None]
        sd = np.sqrt((s_sd * step) ** 2 + 0.1e-6 * np.abs(step) + (0.03 * step) ** 2
                     + read_sd[:, None] ** 2 + (f * fl * r.floor_log_sd) ** 2)
        mu = g[:, None] + step - tgt[:, None]
        p = ndtr((tol - mu) / sd) - ndtr((-tol - mu) / sd)
        k = p.argmax(axis=1)
        p_best = p[np.arange(sel.size), k]
        # deep RESET: land well below the target, the next SET lands at the target's ceiling.
        # Worth it when no partial step is likely to hit and the landing precision is good.
        land_sd = np.hypot(tgt * r.ceiling_rel_sd / np.sqrt(1.0 + self.kappa_n[sel]),
                           read_sd)
        p_next_land = 2 * ndtr(tol / land_sd) - 1
        deep = p_best < 0.5 * p_next_land
        k = np.minimum(k + self.boost_reset[sel], r.reset_v.size - 1)
        vp = np.where(deep, r.reset_v[-1], r.reset_v[k])
        pred_step = np.where(deep, -np.maximum(g - r.reset_floor_s[-1], 0.0),
                             step[np.arange(sel.size), k])
        vg = np.full(sel.size, cfg.v_gate_reset)
        strong = deep & (g - tgt > 3 * tol)
        return vp, vg, {"step": pred_step, "land": deep}, strong

    def _learn(self, sel: np.ndarray, d: int, vg: np.ndarray, g_new: np.ndarray,
               obs: np.ndarray, pred: dict) -> None:
        """Update per-cell ceiling factors and step gains from the observed responses."""
        r, rate = self.resp, self.cfg.gain_rate
        tol = self.cfg.tolerance_s
        # escalate partial pulses that moved nothing, back off after an overshoot
        boost = self.boost_set if d == SET else self.boost_reset
        err_before = self.target[sel] - (g_new - obs)
        err_after = self.target[sel] - g_new
        partial = ~pred["land"]
        idle = partial & (np.abs(obs) < 0.3 * tol) & (np.abs(err_after) > tol)
        over = partial & (np.sign(err_after) != np.sign(err_before)) & (np.abs(err_after) > tol)
        boost[sel[idle]] += max(1, round(self.cfg.step_v / self.cfg.fine_step_v))
        boost[sel[over]] = np.maximum(boost[sel[over]] - 1, 0)
        if rate <= 0:
            return
        if d == SET:
            land = pred["land"] & (obs > 0.5 * tol)
            if land.any():
                c = r.ceiling_at(vg[land])
                k_obs = g_new[land] / np.maximum(c, 1e-12)
                i = sel[land]
                n = self.kappa_n[i]
                self.kappa[i] = np.clip((self.kappa[i] * n + k_obs) / (n + 1)
                                        if True else k_obs, 0.3, 3.0)
                self.kappa[i] = np.where(n == 0, np.clip(k_obs, 0.3, 3.0), self.kappa[i])
                self.kappa_n[i] = n + 1
            part = ~pred["land"] & (pred["step"] > 0.5 * tol)
            gains, nobs = self.gain_set, self.n_set_obs
        else:
            part = ~pred["land"] & (pred["step"] < -0.5 * tol)
            gains, nobs = self.gain_reset, self.n_reset_obs
        if part.any():
            ratio = obs[part] / pred["step"][part]
            ratio = np.clip(ratio, 0.2, 5.0)
            i = sel[part]
            gains[i] = np.clip(gains[i] * ratio ** rate, 0.1, 10.0)
            nobs[i] += 1


# --------------------------------------------------------------------------- single shot
@dataclass(frozen=True)
class GateCurve:
    """Measured word-line voltage -> mean conductance after one SET from the RESET state."""

    v_gate: np.ndarray   # V, ascending
    g_mean_s: np.ndarray  # S
    g_std_s: np.ndarray   # S
    n_cells: int

    def gate_for(self, g_target: np.ndarray) -> np.ndarray:
        """Word-line voltage per target by monotone interpolation of the inverse curve.

        Targets outside the measured range raise ValueError (never clamped): widen the curve's
        gate range in the plan.
        """
        g_mono = np.maximum.accumulate(self.g_mean_s)
        g_t = np.asarray(g_target, dtype=float)
        lo, hi = g_mono[0], g_mono[-1]
        bad = (g_t < lo) | (g_t > hi)
        if bad.any():
            raise ValueError(
                f"targets {g_t[bad].min():.3g}..{g_t[bad].max():.3g} S lie outside the "
                f"measured gate curve ({lo:.3g}..{hi:.3g} S between "
                f"{self.v_gate[0]:g} and {self.v_gate[-1]:g} V); widen v_gate_min/v_gate_max")
        keep = np.concatenate([[True], np.diff(g_mono) > 0])
        return np.interp(g_t, g_mono[keep], self.v_gate[keep])


def measure_gate_curve(ops: ArrayOps, cells: np.ndarray, v_gates: np.ndarray, *, v_set: float,
                       v_reset: float, v_gate_reset: float, width_s: float) -> GateCurve:
    """For each word-line voltage: RESET the cells, one SET at that gate, read (3 round trips
    per point, all cells batched). Mean and std of G per gate voltage (the median and a
    robust spread, so the ~1 % stuck cells do not bend the curve)."""
    cells = np.asarray(cells, dtype=np.uint32)
    means, stds = [], []
    for vg in v_gates:
        ops.pulse(cells, RESET, v_reset, v_gate_reset, width_s)
        ops.pulse(cells, SET, v_set, float(vg), width_s)
        g = ops.read(cells)
        med = float(np.median(g))
        means.append(med)
        stds.append(float(MAD_TO_SIGMA * np.median(np.abs(g - med))))
    return GateCurve(v_gate=np.asarray(v_gates, dtype=float), g_mean_s=np.asarray(means),
                     g_std_s=np.asarray(stds), n_cells=int(cells.size))


def program_single_shot(array: Any, cells: np.ndarray, target_s: np.ndarray, curve: GateCurve,
                        *, v_set: float, v_reset: float, v_gate_reset: float, width_s: float,
                        clock: Any = None, tolerance_s: float = 1e-6) -> ProgramVerifyResult:
    """RESET, then one SET at the curve's gate voltage for each target, then read (3 round
    trips for all cells). Returns the same result type as :func:`program_verify`."""
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_s, dtype=float), cells.shape).copy()
    ops = array if isinstance(array, ArrayOps) else ArrayOps(array)
    rt0 = ops.round_trips
    t_host0 = time.perf_counter()
    t0 = clock.now() if clock is not None else 0.0
    vg = curve.gate_for(target)
    e1 = ops.pulse(cells, RESET, v_reset, v_gate_reset, width_s)
    t_set = clock.now() if clock is not None else np.nan
    e2 = ops.pulse(cells, SET, v_set, vg, width_s)
    t_read = clock.now() if clock is not None else np.nan
    g = ops.read(cells)
    t1 = clock.now() if clock is not None else 0.0
    n = cells.size
    return ProgramVerifyResult(
        scheme="single_shot", cells=cells, target_s=target, g_verify_s=g,
        pulses=np.full(n, 2, dtype=np.int64), energy_j=e1 + e2,
        success=np.abs(g - target) <= tolerance_s, tolerance_s=tolerance_s, iterations=1,
        round_trips=ops.round_trips - rt0, instrument_time_s=t1 - t0,
        host_time_s=time.perf_counter() - t_host0,
        last_pulse_time_s=np.full(n, float(t_set)), verify_read_time_s=np.full(n, float(t_read)))
