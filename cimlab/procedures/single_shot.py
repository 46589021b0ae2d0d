"""Programming without verify: a measured gate-voltage -> mean-G curve
(:class:`GateCurve`, :func:`measure_gate_curve`) and one SET per cell at the curve's gate
voltage (:func:`program_single_shot`)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.protocols import CellArray, Clock
from cimlab.procedures.verify_config import RESET, SET
from cimlab.procedures.verify_result import ProgramVerifyResult
from cimlab.stats import robust_sigma


@dataclass(frozen=True)
class GateCurve:
    """Measured word-line voltage -> mean conductance after one SET from the RESET state."""

    v_gate: np.ndarray   # V, ascending
    g_mean_siemens: np.ndarray  # S
    g_std_siemens: np.ndarray   # S
    n_cells: int

    def gate_for(self, g_target: np.ndarray) -> np.ndarray:
        """Word-line voltage per target by monotone interpolation of the inverse curve.

        Targets outside the measured range raise ValueError (never clamped): widen the curve's
        gate range in the plan.
        """
        g_mono = np.maximum.accumulate(self.g_mean_siemens)
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
        stds.append(robust_sigma(g))
    return GateCurve(v_gate=np.asarray(v_gates, dtype=float), g_mean_siemens=np.asarray(means),
                     g_std_siemens=np.asarray(stds), n_cells=int(cells.size))


def program_single_shot(array: CellArray | ArrayOps, cells: np.ndarray, target_siemens: np.ndarray,
                        curve: GateCurve, *, v_set: float, v_reset: float,
                        v_gate_reset: float, width_s: float, clock: Clock | None = None,
                        tolerance_siemens: float = 1e-6) -> ProgramVerifyResult:
    """RESET, then one SET at the curve's gate voltage for each target, then read (3 round
    trips for all cells). Returns the same result type as :func:`program_verify`."""
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_siemens, dtype=float), cells.shape).copy()
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
        scheme="single_shot",
        cells=cells,
        target_siemens=target,
        g_verify_siemens=g,
        pulses=np.full(n, 2, dtype=np.int64),
        energy_j=e1 + e2,
        success=np.abs(g - target) <= tolerance_siemens,
        tolerance_siemens=tolerance_siemens,
        iterations=1,
        round_trips=ops.round_trips - rt0,
        instrument_time_s=t1 - t0,
        host_time_s=time.perf_counter() - t_host0,
        last_pulse_time_s=np.full(n, float(t_set)),
        verify_read_time_s=np.full(n, float(t_read)),
    )
