"""Window finding: the chip's usable conductance window from a short SET/RESET saturation.

Plans state levels relative to the chip's measured window (``levels = {relative = true, lo =
0.05, hi = 0.95}``, :class:`cimlab.procedures.plan.LevelSet`) because fixed targets (the quick
plan's 2-40 uS) do not fit every technology (a 1-25 uS chip, a 240 uS one). At run start,
:func:`measure_window` drives ``n`` cells to saturation with the program-verify limits of the
experiment (``SATURATION_PULSES`` SET pulses at ``v_set_max`` with the word line at
``v_gate_max`` or at the gate of a stated compliance, read; then as many RESET pulses at
``v_reset_max``, ``v_gate_reset``, read;
``READS`` reads averaged per cell and phase) and takes the window every verify can reach:

* ``g_lo`` = the COVERAGE quantile of the RESET-saturated reads (the conductance that
  COVERAGE = 90 % of the cells get below),
* ``g_hi`` = the (1 - COVERAGE) quantile of the SET-saturated reads (90 % get above).

Stuck cells (a few %) fall outside these quantiles and do not move the window. The
measurement is stored as its own run (kind ``window``, table ``window``: cell, phase, g_siemens;
meta ``g_lo_s``, ``g_hi_s``; steps ``set``, ``reset``) and reused by a rerun; a run killed
inside it resumes at its first unfinished phase. The cells are re-programmed by
the experiment's own verify afterwards (one extra SET/RESET cycle of wear).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.verify_config import ProgramVerifyConfig

#: Pulses per saturation phase (full SET / full RESET need a few pulses from any state).
SATURATION_PULSES = 5
#: Reads averaged per cell and phase.
READS = 4
#: Fraction of working cells that must be able to reach each end of the window.
COVERAGE = 0.9
RUN_KIND = "window"


@dataclass(frozen=True)
class Window:
    """Measured usable window [S]: ``g_lo`` (RESET end) .. ``g_hi`` (SET end)."""

    g_lo_s: float
    g_hi_s: float
    n_cells: int
    run_uid: str = ""


def _section(plan_name: str, cells: np.ndarray, cfg: ProgramVerifyConfig) -> dict[str, Any]:
    return json.loads(json.dumps({
        "plan": plan_name, "procedure": RUN_KIND,
        "cells": [int(c) for c in cells],
        "pulses": SATURATION_PULSES, "reads": READS, "coverage": COVERAGE,
        "v_set_max": cfg.v_set_max, "v_gate_max": cfg.v_gate_max,
        "v_reset_max": cfg.v_reset_max, "v_gate_reset": cfg.v_gate_reset,
        "width_s": cfg.width_s,
    }))


def window_from_reads(
    g_set_siemens: np.ndarray, g_reset_siemens: np.ndarray
) -> tuple[float, float]:
    """(g_lo, g_hi) [S] from per-cell SET- and RESET-saturated conductances."""
    q = 1.0 - COVERAGE
    return float(np.quantile(g_reset_siemens, 1.0 - q)), float(np.quantile(g_set_siemens, q))


def measure_window(station: Bench, store: RunStore, cells: np.ndarray,
                   cfg: ProgramVerifyConfig, plan_name: str, icc_a: float = 0.0) -> Window:
    """Measure (or reuse the stored measurement of) the window on ``cells`` (flat indices).
    ``icc_a`` > 0: the SET saturation runs at the word-line voltage of that compliance
    (``station.gate_voltage_for``), which sets the window top (the SET ceiling of a filament
    is set by its compliance current, Ielmini 2011); 0: at the verify's ``v_gate_max``."""
    cells = np.asarray(cells, dtype=np.int64)
    v_gate_set = station.gate_voltage_for(icc_a) if icc_a > 0 else cfg.v_gate_max
    section = _section(plan_name, cells, cfg)
    section["v_gate_set"] = float(v_gate_set)
    for run in store:
        if run.kind == RUN_KIND and run.status == "completed" and run.plan == section:
            meta = run.meta
            return Window(float(meta["g_lo_s"]), float(meta["g_hi_s"]), cells.size, run.uid)
    # resumable by phase: a run killed after its SET phase keeps those reads and redoes
    # only the RESET phase (an interrupted phase is redone from its first pulse, as every
    # procedure's step; docs/procedures.md)
    run = store.begin_run(RUN_KIND, section, snapshot=station.snapshot(), resume=True)
    done = run.completed_steps
    arr = station.array
    g_phase = {}
    for phase, polarity, v, vg in (("set", "set", cfg.v_set_max, v_gate_set),
                                   ("reset", "reset", cfg.v_reset_max, cfg.v_gate_reset)):
        if phase in done:
            t = run.table("window", committed_only=True)
            t = t[t["phase"].astype(str) == phase].set_index("cell")
            g_phase[phase] = t["g_siemens"].reindex(cells).to_numpy(dtype=float)
            continue
        for _ in range(SATURATION_PULSES):
            arr.pulse(cells, polarity, v, vg, cfg.width_s)
        reads = np.asarray(arr.read(np.repeat(cells, READS)), dtype=float)
        g = reads.reshape(cells.size, READS).mean(axis=1)
        g_phase[phase] = g
        run.append("window", {"cell": cells, "phase": np.full(cells.size, phase), "g_siemens": g})
        run.complete_step(phase)
    g_lo, g_hi = window_from_reads(g_phase["set"], g_phase["reset"])
    run.set_meta("g_lo_s", g_lo)
    run.set_meta("g_hi_s", g_hi)
    run.finish("completed")
    return Window(g_lo, g_hi, cells.size, run.uid)


__all__ = ["COVERAGE", "READS", "RUN_KIND", "SATURATION_PULSES", "Window", "measure_window",
           "window_from_reads"]
