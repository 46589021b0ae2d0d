"""Access-transistor (gate) calibration: compliance current versus word-line voltage, fitted
with the square law and written where the station reads its calibration.

Each cell is SET deep (one SMU sweep at a high compliance), so that at the drain bias the
cell alone would conduct far more than the transistor: with the word line at ``V`` the SMU
then measures the transistor's saturation current ``I(V)``. Per cell the long-channel square
law ``I = k/2 (V - V_th)^2`` (Shichman & Hodges, IEEE JSSC 3, 285 (1968);
:mod:`cimlab.transistor`) is a straight line in ``sqrt(I)``: slope ``sqrt(k/2)``, intercept
``-sqrt(k/2) V_th``, fitted by least squares to the points above ``min_current_a``. The chip's
values are the means over cells, with standard errors from the spread between cells
(``std / sqrt(n)``: the device-to-device threshold mismatch is what the cells differ by);
a cell whose fit lies far from the others (a stuck cell: :func:`usable`) is left out.

Tables: ``gate_iv`` (cell, v_gate, repeat, v, i_a) and ``gate_fit`` (one row per cell:
k_a_per_v2, v_th_v, points, rms_sqrt_a); the chip fit is in the run metadata
(``transistor_fit``) and, with ``write_calibration``, in a TOML file holding
``[calibration.transistor]`` that a station file uses with ``[calibration] file = ...``
(:class:`cimlab.instruments.station_config.Calibration`), so ``gate_voltage_for`` and the
station's compliance limit checks use the measured transistor.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import InsufficientDataError
from cimlab.instruments.limits import check_set_gate
from cimlab.procedures.iv_sweep import loop_levels, precheck, smu_sweep
from cimlab.procedures.plan_experiments import GateCalibrationExp
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun
from cimlab.stats import robust_sigma


def fit_cell(v_gate: np.ndarray, i_a: np.ndarray, min_current_a: float
             ) -> tuple[float, float, int, float]:
    """Square-law fit of one cell: ``(k_a_per_v2, v_th_v, points, rms)`` with ``rms`` the
    residual of ``sqrt(I)`` [sqrt(A)]; NaN with fewer than 3 points above ``min_current_a``."""
    ok = np.isfinite(i_a) & (i_a > min_current_a)
    n = int(ok.sum())
    if n < 3:
        return math.nan, math.nan, n, math.nan
    x, y = v_gate[ok], np.sqrt(i_a[ok])
    b, a = np.polyfit(x, y, 1)
    if b <= 0:
        return math.nan, math.nan, n, math.nan
    rms = float(np.sqrt(np.mean((y - (a + b * x)) ** 2)))
    return float(2.0 * b * b), float(-a / b), n, rms


#: a cell's fit further than this many robust sigmas from the median (in k or V_th) is left
#: out of the chip values: a stuck or unformed cell never conducts more than the transistor,
#: so its "saturation" curve is the cell's own ohmic current
OUTLIER_SIGMAS = 5.0


def usable(k: np.ndarray, v_th: np.ndarray) -> np.ndarray:
    """Cells whose fit enters the chip values: finite, and within :data:`OUTLIER_SIGMAS`
    robust sigmas (floor: 0.1 % of the median) of the median in both ``k`` and ``V_th``."""
    ok = np.isfinite(k) & np.isfinite(v_th)
    for x in (k, v_th):
        if ok.sum() < 3:
            break
        med = float(np.median(x[ok]))
        scale = max(float(robust_sigma(x[ok])), 1e-3 * abs(med))
        ok &= np.abs(np.nan_to_num(x, nan=np.inf) - med) <= OUTLIER_SIGMAS * scale
    return ok


def combine(k: np.ndarray, v_th: np.ndarray) -> dict[str, float]:
    """Chip values from per-cell fits: means and standard errors (std/sqrt(n)) of ``k`` and
    ``V_th`` over the :func:`usable` cells; InsufficientDataError with fewer than 2."""
    ok = usable(k, v_th)
    n = int(ok.sum())
    if n < 2:
        raise InsufficientDataError(f"gate calibration: {n} cell(s) gave a square-law fit; "
                                    "at least 2 are needed (raise v_gates or lower "
                                    "min_current_a)")
    kk, vv = k[ok], v_th[ok]
    return {"k_a_per_v2": float(kk.mean()), "k_a_per_v2_se": float(kk.std(ddof=1) / math.sqrt(n)),
            "v_th_v": float(vv.mean()), "v_th_v_se": float(vv.std(ddof=1) / math.sqrt(n)),
            "cells": n, "cells_left_out": int(ok.size - n)}


def write_calibration_file(path: str | Path, fit: dict[str, Any], *, run_uid: str = "",
                           station: str = "") -> Path:
    """Write ``fit`` as a calibration file: ``[calibration.transistor]`` (model, k_a_per_v2,
    v_th_v) and a ``[fit]`` table with the standard errors and provenance."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = (
        "# Access-transistor calibration measured by cimlab (gate_calibration).\n"
        "# Use it from a station file with:  [calibration]  file = \"" + p.name + "\"\n"
        "[calibration.transistor]\n"
        "model = \"square_law\"\n"
        f"k_a_per_v2 = {fit['k_a_per_v2']!r}\n"
        f"v_th_v = {fit['v_th_v']!r}\n\n"
        "[fit]\n"
        f"k_a_per_v2_se = {fit['k_a_per_v2_se']!r}\n"
        f"v_th_v_se = {fit['v_th_v_se']!r}\n"
        f"cells = {int(fit['cells'])}\n"
        f"run = \"{run_uid}\"\n"
        f"station = \"{station}\"\n")
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(p)
    return p


def gate_calibration(station: Bench, store: RunStore, exp: GateCalibrationExp,
                     cells: np.ndarray, seed: int, *, plan_name: str = "",
                     progress: bool = True) -> ProcedureResult:
    """Measure compliance current versus word-line voltage on ``cells`` and fit the square law
    (module docstring). One step per cell (``cell-NNNNNN``): a SET sweep at
    ``lrs_compliance_a``, ``repeats`` readings at ``v_drain`` per gate voltage (one SMU list
    sweep each), a RESET sweep. Every gate voltage is checked against the station's limits
    (``set_wl_max_v`` and its compliance against ``set_icc_max_a``) before anything is sent."""
    v_gate_set = precheck(station, exp, exp.lrs_compliance_a, "lrs_compliance_a")
    cal = getattr(getattr(station, "calibration", None), "transistor", None)
    board = getattr(station.array, "v_gate_at_icc_max", None)
    for vg in exp.v_gates:
        check_set_gate(station.limits, vg, calibration=cal, v_gate_at_icc_max=board,
                       what="gate_calibration word-line voltage (v_gates)",
                       context=exp.label, station=getattr(station, "path", None))
    set_lv, n_set = loop_levels(exp.v_set_max, exp.v_reset_max, exp.v_step)
    set_sweep, reset_sweep = set_lv[:n_set], set_lv[n_set - 1:]
    gates = np.asarray(exp.v_gates, dtype=float)
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        bar = ctx.bar(ctx.cells.size, "gate calibration")
        for n, cell in enumerate(ctx.cells):
            step = f"cell-{n:06d}"
            if ctx.skip(step):
                bar.update(1)
                continue
            v_rows, i_rows = [], []
            try:
                station.array.select(int(cell), v_gate_set)
                smu_sweep(station, set_sweep, exp.smu_limit_a, exp.nplc)
                for vg in gates:
                    station.array.select(int(cell), float(vg))
                    r = smu_sweep(station, np.full(exp.repeats, exp.v_drain),
                                  exp.smu_limit_a, exp.nplc)
                    v_rows.append(r["v"])
                    i_rows.append(r["i_a"])
                station.array.select(int(cell), v_gate_set)
                smu_sweep(station, reset_sweep, exp.smu_limit_a, exp.nplc)
            finally:
                station.array.deselect()
            ctx.other_ops += set_sweep.size + reset_sweep.size + gates.size * exp.repeats
            vg_col = np.repeat(gates, exp.repeats)
            i_col = np.concatenate(i_rows)
            ctx.append("gate_iv", {
                "cell": np.full(vg_col.size, cell, dtype=np.uint32), "v_gate": vg_col,
                "repeat": np.tile(np.arange(exp.repeats), gates.size),
                "v": np.concatenate(v_rows), "i_a": i_col})
            k, vth, pts, rms = fit_cell(vg_col, i_col, exp.min_current_a)
            ctx.append("gate_fit", {"cell": np.array([cell], dtype=np.uint32),
                                    "k_a_per_v2": np.array([k]), "v_th_v": np.array([vth]),
                                    "points": np.array([pts]), "rms_sqrt_a": np.array([rms])})
            ctx.complete(step)
            bar.update(1)
        bar.close()
        fits = ctx.run.table("gate_fit")
        fit = combine(fits["k_a_per_v2"].to_numpy(float), fits["v_th_v"].to_numpy(float))
        ctx.run.set_meta("transistor_fit", fit)
        written = ""
        if exp.write_calibration:
            written = str(write_calibration_file(
                exp.write_calibration, fit, run_uid=str(ctx.run.uid),
                station=str(getattr(station, "path", ""))))
            ctx.run.set_meta("calibration_file", written)
        return ctx.finish(**fit, calibration_file=written)


__all__ = ["OUTLIER_SIGMAS", "combine", "fit_cell", "gate_calibration", "usable",
           "write_calibration_file"]
