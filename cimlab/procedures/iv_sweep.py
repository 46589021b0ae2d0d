"""Quasi-static I-V sweeps of single 1T1R cells through the SMU (SET/RESET loops).

Each cell is routed to the SMU (``array.select(cell, v_gate)``) with its word line at the gate
voltage of the SET compliance (the station's transistor calibration), and each loop is one
SMU list sweep ``0 -> +v_set_max -> 0 -> -v_reset_max -> 0`` read from the SMU's buffer in
one transfer (:meth:`LimitedKeithley2450.voltage_list_sweep`). Tables: ``iv`` (every step)
and ``switching`` (one row per loop: SET and RESET voltages, HRS/LRS conductances).

Switching voltages (the usual reading of a DC loop, e.g. Ielmini, Semicond. Sci. Technol. 31,
063002 (2016), Fig. 2): the SET voltage is the first step of the rising positive branch where
``I/V`` exceeds ``set_ratio`` times its largest earlier value on that branch (the abrupt
SET, carrying at least half the compliance current); the RESET voltage is the first step of
the falling negative branch where ``I/V`` drops ``reset_drop`` below its largest earlier
value (the onset of the gradual RESET). HRS/LRS: ``I/V`` at the step nearest ``v_read`` on
the rising / falling positive branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.instruments.limits import check_requests
from cimlab.procedures.plan_experiments import IVSweepExp
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun


def loop_levels(v_set_max: float, v_reset_max: float, v_step: float) -> tuple[np.ndarray, int]:
    """The staircase of one SET/RESET loop [V] and the number of its SET-branch points
    (0 -> +v_set_max -> 0; the rest is 0 -> -v_reset_max -> 0, without a repeated 0)."""
    up = np.round(np.arange(0.0, v_set_max + 0.5 * v_step, v_step), 12)
    up = up[up <= v_set_max + 1e-12]
    dn = np.round(np.arange(0.0, v_reset_max + 0.5 * v_step, v_step), 12)
    dn = dn[dn <= v_reset_max + 1e-12]
    pos = np.concatenate([up, up[::-1][1:]])
    neg = -np.concatenate([dn[1:], dn[::-1][1:]])
    return np.concatenate([pos, neg]), pos.size


def _branch_g(v: np.ndarray, i: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(v != 0.0, i / v, np.nan)


def switching_voltages(levels: np.ndarray, n_set: int, i_a: np.ndarray, *, v_read: float,
                       set_ratio: float, reset_drop: float, i_set_min_a: float = 0.0
                       ) -> dict[str, float]:
    """SET and RESET voltages [V] and HRS/LRS conductances [S] of one loop (module
    docstring); a SET step must also carry at least ``i_set_min_a`` [A] (half the compliance
    in :func:`iv_sweep`, so read noise on a deep HRS is not taken for a SET); NaN where the
    loop shows none."""
    g = _branch_g(levels, i_a)
    top = int(np.argmax(levels[:n_set]))
    rise = np.arange(1, top + 1)                 # rising positive branch, 0 V left out
    fall_pos = np.arange(top, n_set)
    neg = np.arange(n_set, levels.size)
    bottom = int(neg[np.argmin(levels[neg])]) if neg.size else n_set
    fall = np.arange(n_set, bottom + 1)          # falling negative branch
    out = {"v_set": np.nan, "v_reset": np.nan, "g_hrs_siemens": np.nan,
           "g_lrs_siemens": np.nan}
    best = -np.inf
    for k in rise:
        if (np.isfinite(best) and best > 0 and g[k] > set_ratio * best
                and abs(i_a[k]) >= i_set_min_a):
            out["v_set"] = float(levels[k])
            break
        best = max(best, g[k])
    best = -np.inf
    for k in fall:
        if np.isfinite(best) and g[k] < (1.0 - reset_drop) * best:
            out["v_reset"] = float(levels[k])
            break
        best = max(best, g[k])
    if rise.size:
        out["g_hrs_siemens"] = float(g[rise[np.argmin(np.abs(levels[rise] - v_read))]])
    fp = fall_pos[levels[fall_pos] > 0]
    if fp.size:
        out["g_lrs_siemens"] = float(g[fp[np.argmin(np.abs(levels[fp] - v_read))]])
    return out


def smu_sweep(station: Bench, levels: np.ndarray, limit_a: float, nplc: float, *,
              fail_abort: bool = False) -> dict[str, np.ndarray]:
    """One list sweep on the station's SMU (limits checked by the station's driver first);
    ``fail_abort``: the first reading in the current limit ends the sweep."""
    sweep = getattr(station.smu, "voltage_list_sweep", None)
    if sweep is None:
        raise ConfigError(getattr(station, "path", None), "instruments.smu.driver",
                          "an SMU driver with voltage_list_sweep (the station's Keithley "
                          "2450 driver) for quasi-static sweeps")
    if fail_abort:
        return sweep(levels, limit_a, nplc=nplc, fail_abort=True)
    return sweep(levels, limit_a, nplc=nplc)


def precheck(station: Bench, exp: Any, icc_a: float, field: str) -> float:
    """Check the sweep's extremes against the station's limits before anything is sent;
    the word-line voltage [V] of the SET compliance ``icc_a`` (LimitError beyond limits)."""
    ctx = f"{exp.label}"
    check_requests(station.limits, {
        "smu_v_max_v": max(exp.v_set_max, exp.v_reset_max),
        "smu_i_max_a": exp.smu_limit_a, "set_icc_max_a": icc_a},
        fields={"smu_v_max_v": "v_set_max/v_reset_max", "smu_i_max_a": "smu_limit_a",
                "set_icc_max_a": field}, context=ctx, station=getattr(station, "path", None))
    return float(station.gate_voltage_for(icc_a))


def iv_sweep(station: Bench, store: RunStore, exp: IVSweepExp, cells: np.ndarray, seed: int,
             *, plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Quasi-static SET/RESET loops of ``cells``, one cell routed to the SMU at a time.

    One step per cell (``cell-NNNNNN``): ``cycles`` list sweeps, each one SMU transfer; rows
    into ``iv`` (cell, cycle, branch, step, level_v, v, i_a, g_siemens, limited, time_s,
    v_gate) and ``switching`` (cell, cycle, v_set, v_reset, g_hrs_siemens, g_lrs_siemens).
    Limits (SMU voltage and current, SET compliance and its word-line voltage) are checked
    before the first byte is sent.
    """
    v_gate = precheck(station, exp, exp.compliance_a, "compliance_a")
    levels, n_set = loop_levels(exp.v_set_max, exp.v_reset_max, exp.v_step)
    branch = np.where(np.arange(levels.size) < n_set, "set", "reset")
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        ctx.run.set_meta("iv_sweep", {"v_gate": v_gate, "points_per_loop": int(levels.size)})
        bar = ctx.bar(ctx.cells.size, "I-V loops")
        v_sets: list[float] = []
        v_resets: list[float] = []
        for n, cell in enumerate(ctx.cells):
            step = f"cell-{n:06d}"
            if ctx.skip(step):
                bar.update(1)
                continue
            rows: dict[str, list[Any]] = {k: [] for k in (
                "cycle", "step", "level_v", "v", "i_a", "limited", "time_s")}
            sw: dict[str, list[float]] = {k: [] for k in (
                "v_set", "v_reset", "g_hrs_siemens", "g_lrs_siemens")}
            station.array.select(int(cell), v_gate)
            try:
                for cyc in range(exp.cycles):
                    r = smu_sweep(station, levels, exp.smu_limit_a, exp.nplc)
                    t0 = ctx.now()
                    rows["cycle"].append(np.full(levels.size, cyc))
                    rows["step"].append(np.arange(levels.size))
                    rows["level_v"].append(levels)
                    rows["v"].append(r["v"])
                    rows["i_a"].append(r["i_a"])
                    rows["limited"].append(r["limited"])
                    rows["time_s"].append(t0 - r["time_s"][-1] + r["time_s"])
                    s = switching_voltages(levels, n_set, r["i_a"], v_read=exp.v_read,
                                           set_ratio=exp.set_ratio,
                                           reset_drop=exp.reset_drop,
                                           i_set_min_a=0.5 * exp.compliance_a)
                    for k in sw:
                        sw[k].append(s[k])
            finally:
                station.array.deselect()
            ctx.other_ops += exp.cycles * levels.size
            cat = {k: np.concatenate(v) for k, v in rows.items()}
            m = cat["v"].size
            ctx.append("iv", {
                "cell": np.full(m, cell, dtype=np.uint32), "cycle": cat["cycle"],
                "branch": np.tile(branch, exp.cycles), "step": cat["step"],
                "level_v": cat["level_v"], "v": cat["v"], "i_a": cat["i_a"],
                "g_siemens": _branch_g(cat["v"], cat["i_a"]), "limited": cat["limited"],
                "time_s": cat["time_s"], "v_gate": np.full(m, v_gate)})
            ctx.append("switching", {
                "cell": np.full(exp.cycles, cell, dtype=np.uint32),
                "cycle": np.arange(exp.cycles), **{k: np.asarray(v) for k, v in sw.items()}})
            v_sets += sw["v_set"]
            v_resets += sw["v_reset"]
            ctx.complete(step)
            bar.update(1)
        bar.close()
        return ctx.finish(v_gate=v_gate, v_set_median=_nanmedian(v_sets),
                          v_reset_median=_nanmedian(v_resets))


def _nanmedian(x: list[float]) -> float:
    a = np.asarray(x, dtype=float)
    return float(np.nanmedian(a)) if np.isfinite(a).any() else float("nan")


__all__ = ["iv_sweep", "loop_levels", "precheck", "smu_sweep", "switching_voltages"]
