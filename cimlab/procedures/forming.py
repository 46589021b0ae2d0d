"""Forming of pristine 1T1R cells: a voltage ramp per cell through the SMU, ended by the
SMU's current limit, then a verify read (the ``forming`` kind).

Each cell is routed to the SMU (``array.select(cell, v_gate)``) with its word line at the gate
voltage of the forming compliance (the station's transistor calibration), and ramped with one
Keithley 2450 list sweep ``v_start, v_start + v_step, ... <= v_max`` whose current limit is
``abort_current_a`` with failAbort on (2450 reference manual, "Sweep operation"): the forming
jump (soft breakdown: the current rises from the pristine leakage, ~uA, to the transistor's
compliance) puts the source in its limit and ends the sweep in the instrument, so no higher
voltage reaches the formed cell. The forming voltage is the level of the first step whose
current reached the limit (the buffer is checked too: a reading at or above
``abort_current_a`` or flagged limited). Then ``reads`` readings at ``v_read`` (limit
``read_limit_a``) give the conductance after forming. This is the constant-ramp-rate forming
of Lanza et al., Adv. Electron. Mater. 5, 1800143 (2019), Sec. 3 (ramped voltage stress
under a current compliance, the compliance set by the 1T1R transistor).

Tables: ``forming_ramp`` (every step: cell, step, level_v, v, i_a, limited, time_s) and
``forming`` (one row per cell: v_form, i_at_form_a, i_before_a, steps, aborted, shorted,
formed, g_after_siemens, v_gate); a cell whose ramp reached ``v_max`` without the limit has
``aborted`` False, ``formed`` False and ``v_form`` NaN: it never formed (reported: the
``never_formed`` figures and the report's list). A cell at the limit from the first step on
(``shorted``: conducting before any forming, e.g. an over-formed stuck-on cell) is neither
formed by the ramp nor counted as never formed; its ``v_form`` is NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cimlab.instruments.limits import check_requests
from cimlab.procedures.iv_sweep import smu_sweep
from cimlab.procedures.plan_experiments import FormingExp
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun


def ramp_levels(v_start: float, v_max: float, v_step: float) -> np.ndarray:
    """The forming staircase [V]: ``v_start + k v_step`` up to ``v_max`` (inclusive)."""
    n = int(np.floor((v_max - v_start) / v_step + 1e-9)) + 1
    return np.round(v_start + v_step * np.arange(n), 12)


def forming_step(i_a: np.ndarray, limited: np.ndarray, abort_current_a: float) -> int:
    """Index of the ramp step that ended the ramp (its current at or above
    ``abort_current_a`` [A], or the source in its limit); -1 when none did."""
    hit = np.asarray(limited, dtype=bool) | (np.abs(np.asarray(i_a)) >= abort_current_a)
    k = np.flatnonzero(hit)
    return int(k[0]) if k.size else -1


def precheck(station: Bench, exp: FormingExp) -> float:
    """Check the ramp's top, the SMU limits and the forming compliance against the
    station's limits before anything is sent; the word-line voltage [V] of the compliance."""
    check_requests(station.limits, {
        "smu_v_max_v": exp.v_max,
        "smu_i_max_a": max(exp.abort_current_a, exp.read_limit_a),
        "set_icc_max_a": exp.compliance_a},
        fields={"smu_v_max_v": "v_max", "smu_i_max_a": "abort_current_a/read_limit_a",
                "set_icc_max_a": "compliance_a"},
        context=exp.label, station=getattr(station, "path", None))
    return float(station.gate_voltage_for(exp.compliance_a))


_CELL_COLS = ("v_form", "i_at_form_a", "i_before_a", "steps", "aborted", "shorted", "formed",
              "g_after_siemens")


def _form_cell(station: Bench, exp: FormingExp, levels: np.ndarray, cell: int,
               v_gate: float) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Ramp and verify one cell: its ramp rows and its ``forming`` row."""
    station.array.select(int(cell), v_gate)
    try:
        r = smu_sweep(station, levels, exp.abort_current_a, exp.nplc, fail_abort=True)
        rd = smu_sweep(station, np.full(exp.reads, exp.v_read), exp.read_limit_a, exp.nplc)
    finally:
        station.array.deselect()
    n = r["v"].size
    k = forming_step(r["i_a"], r["limited"], exp.abort_current_a)
    g_after = float(np.median(rd["i_a"] / exp.v_read))
    aborted = k >= 0
    shorted = k == 0  # at the limit from the first step on: conducting before any forming
    row = {"v_form": float(levels[k]) if k >= 1 else np.nan,
           "i_at_form_a": float(r["i_a"][k]) if aborted else np.nan,
           "i_before_a": float(r["i_a"][k - 1]) if k >= 1 else np.nan,
           "steps": n, "aborted": aborted, "shorted": shorted,
           "formed": bool(k >= 1 and g_after >= exp.formed_min_siemens),
           "g_after_siemens": g_after}
    ramp = {"step": np.arange(n), "level_v": levels[:n], "v": r["v"], "i_a": r["i_a"],
            "limited": r["limited"], "time_s": r["time_s"]}
    return ramp, row


def forming(station: Bench, store: RunStore, exp: FormingExp, cells: np.ndarray, seed: int,
            *, plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Form ``cells`` (module docstring), ``exp.batch`` cells per committed step
    (``batch-NNNNNN``), each cell one ramp sweep and one verify sweep (two SMU transfers).

    Limits (the ramp's top against ``smu_v_max_v``, the SMU limits, the compliance and its
    word-line voltage) are checked before the first byte is sent. Figures: ``formed_fraction``,
    ``never_formed`` (count), ``v_form_median``/``v_form_std`` [V] and ``g_after_median``
    [S] over the formed cells, all from the committed ``forming`` table (so a resumed run
    reports the whole run)."""
    v_gate = precheck(station, exp)
    levels = ramp_levels(exp.v_start, exp.v_max, exp.v_step)
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        ctx.run.set_meta("forming", {"v_gate": v_gate, "ramp_steps": int(levels.size)})
        bar = ctx.bar(ctx.cells.size, "forming")
        for b, start in enumerate(range(0, ctx.cells.size, exp.batch)):
            chunk = ctx.cells[start:start + exp.batch]
            step = f"batch-{b:06d}"
            if ctx.skip(step):
                bar.update(chunk.size)
                continue
            ramps: list[dict[str, np.ndarray]] = []
            rows: dict[str, list[Any]] = {k: [] for k in _CELL_COLS}
            for cell in chunk:
                t0 = ctx.now()
                ramp, row = _form_cell(station, exp, levels, int(cell), v_gate)
                ramp["time_s"] = t0 + ramp["time_s"]
                ramp["cell"] = np.full(ramp["step"].size, cell, dtype=np.uint32)
                ramps.append(ramp)
                for k in _CELL_COLS:
                    rows[k].append(row[k])
                ctx.other_ops += int(ramp["step"].size) + exp.reads
            ctx.append("forming_ramp", {k: np.concatenate([r[k] for r in ramps]) for k in (
                "cell", "step", "level_v", "v", "i_a", "limited", "time_s")})
            ctx.append("forming", {"cell": chunk.astype(np.uint32),
                                   **{k: np.asarray(v) for k, v in rows.items()},
                                   "v_gate": np.full(chunk.size, v_gate)})
            ctx.complete(step)
            bar.update(chunk.size)
        bar.close()
        return ctx.finish(v_gate=v_gate, **summary(ctx.run.table("forming")))


def summary(table: Any) -> dict[str, Any]:
    """Figures of a ``forming`` table: cells, formed_fraction, shorted (count), never_formed
    (count) and never_formed_cells, v_form_median, v_form_std, v_form_min, v_form_max [V] and
    g_after_median [S] over the formed cells (NaN without any)."""
    formed = np.asarray(table["formed"], dtype=bool)
    vf = np.asarray(table["v_form"], dtype=float)[formed]
    g = np.asarray(table["g_after_siemens"], dtype=float)[formed]
    n = int(formed.size)

    def stat(f: Any, x: np.ndarray) -> float:
        return float(f(x)) if x.size else float("nan")

    shorted = np.asarray(table["shorted"], dtype=bool)
    never = np.asarray(table["cell"])[~formed & ~shorted]
    return {"cells": n, "formed_fraction": float(formed.mean()) if n else float("nan"),
            "shorted": int(shorted.sum()), "never_formed": int(never.size),
            "never_formed_cells": [int(c) for c in np.sort(never)],
            "v_form_median": stat(np.median, vf),
            "v_form_std": stat(lambda x: np.std(x, ddof=1) if x.size > 1 else np.nan, vf),
            "v_form_min": stat(np.min, vf), "v_form_max": stat(np.max, vf),
            "g_after_median": stat(np.median, g)}


__all__ = ["forming", "forming_step", "precheck", "ramp_levels", "summary"]
