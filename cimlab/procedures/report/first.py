"""Report recipes of the first procedures: quasi-static I-V loops (``iv_sweep``) and the gate
calibration (``gate_calibration``): summary sections and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cimlab.procedures.report.sections import Section
from cimlab.stats import robust_sigma


def summarize_iv(switching: pd.DataFrame) -> tuple[list[Section], dict[str, Any]]:
    """Per cell: SET / RESET switching voltages over its loops (median and robust sigma,
    :func:`cimlab.stats.robust_sigma`), loops with a SET / RESET found, median HRS and LRS
    conductance; the figures are the medians over all loops."""
    rows = []
    for cell, d in switching.groupby("cell"):
        vs, vr = d["v_set"].to_numpy(float), d["v_reset"].to_numpy(float)
        rows.append({
            "cell": int(cell), "loops": len(d),
            "sets_found": int(np.isfinite(vs).sum()), "resets_found": int(np.isfinite(vr).sum()),
            "v_set_median": float(np.nanmedian(vs)) if np.isfinite(vs).any() else np.nan,
            "v_set_sigma": float(robust_sigma(vs[np.isfinite(vs)])) if np.isfinite(vs).sum() > 1
            else np.nan,
            "v_reset_median": float(np.nanmedian(vr)) if np.isfinite(vr).any() else np.nan,
            "v_reset_sigma": float(robust_sigma(vr[np.isfinite(vr)])) if np.isfinite(vr).sum() > 1
            else np.nan,
            "g_hrs_siemens": float(np.nanmedian(d["g_hrs_siemens"])),
            "g_lrs_siemens": float(np.nanmedian(d["g_lrs_siemens"]))})
    per_cell = pd.DataFrame(rows)
    vs, vr = switching["v_set"].to_numpy(float), switching["v_reset"].to_numpy(float)
    figures = {"cells": int(per_cell.shape[0]), "loops": len(switching),
               "v_set_median": float(np.nanmedian(vs)) if np.isfinite(vs).any() else np.nan,
               "v_reset_median": float(np.nanmedian(vr)) if np.isfinite(vr).any() else np.nan}
    return [Section("switching voltages per cell", per_cell,
                    conductance=("g_hrs_siemens", "g_lrs_siemens"),
                    note="V_set / V_reset: median and robust sigma over the cell's loops [V]")
            ], figures


def summarize_gate(fits: pd.DataFrame, meta: dict[str, Any]) -> tuple[list[Section],
                                                                     dict[str, Any]]:
    """The per-cell square-law fits and the chip fit of the run's metadata."""
    fit = dict(meta.get("transistor_fit") or {})
    chip = pd.DataFrame([fit]) if fit else pd.DataFrame()
    return [Section("square-law fit per cell", fits),
            Section("transistor calibration (chip)", chip,
                    note="means over cells, standard errors std/sqrt(n)")], fit


def plot_iv(iv: pd.DataFrame, out: Path, stem: str, max_cells: int = 8) -> list[Path]:
    """log|I| vs V of the loops of up to ``max_cells`` cells (one colour per cell)."""
    from cimlab.procedures.report.plots import _figure, _save

    fig, ax = _figure()
    a = ax[0, 0]
    for n, (cell, d) in enumerate(iv.groupby("cell")):
        if n >= max_cells:
            break
        for k, (_, loop) in enumerate(d.groupby("cycle")):
            i = np.abs(loop["i_a"].to_numpy(float))
            a.semilogy(loop["v"], np.where(i > 0, i, np.nan), color=f"C{n}", lw=0.8,
                       alpha=0.8, label=f"cell {int(cell)}" if k == 0 else None)
    a.set_xlabel("V [V]")
    a.set_ylabel("|I| [A]")
    a.set_title("quasi-static I-V loops")
    a.legend(fontsize=7)
    return [_save(fig, out / f"{stem}_iv.png")]


def plot_gate(gate_iv: pd.DataFrame, fit: dict[str, Any], out: Path, stem: str) -> list[Path]:
    """Measured current vs word-line voltage and the fitted square law."""
    from cimlab.procedures.report.plots import _figure, _save
    from cimlab.transistor import square_law_current

    fig, ax = _figure()
    a = ax[0, 0]
    a.plot(gate_iv["v_gate"], gate_iv["i_a"] * 1e6, ".", ms=3, alpha=0.5, label="measured")
    if fit:
        v = np.linspace(float(gate_iv["v_gate"].min()), float(gate_iv["v_gate"].max()), 200)
        a.plot(v, square_law_current(v, fit["k_a_per_v2"], fit["v_th_v"]) * 1e6, "k-",
               label=f"k = {fit['k_a_per_v2']:.3g} A/V^2, V_th = {fit['v_th_v']:.3f} V")
    a.set_xlabel("word-line voltage [V]")
    a.set_ylabel("compliance current [uA]")
    a.legend(fontsize=7)
    return [_save(fig, out / f"{stem}_gate.png")]


__all__ = ["plot_gate", "plot_iv", "summarize_gate", "summarize_iv"]
