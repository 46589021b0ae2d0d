"""Report recipes of the first procedures: quasi-static I-V loops (``iv_sweep``), the gate
calibration (``gate_calibration``) and forming (``forming``): summary sections and PNG
plots."""

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


def summarize_forming(table: pd.DataFrame) -> tuple[list[Section], dict[str, Any]]:
    """Forming summary (formed fraction, V_form median / std / robust sigma / range over the
    formed cells, median conductance after forming), the cells that never formed, and the
    per-cell rows; the figures are the summary's values."""
    from cimlab.procedures.forming import summary

    fig = summary(table)
    formed = table["formed"].to_numpy(bool)
    vf = table["v_form"].to_numpy(float)[formed]
    fig["v_form_robust_sigma"] = float(robust_sigma(vf)) if vf.size > 1 else np.nan
    never = fig.pop("never_formed_cells")
    summ = pd.DataFrame([{k: fig[k] for k in (
        "cells", "formed_fraction", "never_formed", "shorted", "v_form_median", "v_form_std",
        "v_form_robust_sigma", "v_form_min", "v_form_max", "g_after_median")}])
    never_rows = table[~formed & ~table["shorted"].to_numpy(bool)][
        ["cell", "steps", "aborted", "g_after_siemens"]]
    return [Section("forming summary", summ, conductance=("g_after_median",),
                    note="V_form statistics [V] over the formed cells"),
            Section("cells that never formed", never_rows.reset_index(drop=True),
                    conductance=("g_after_siemens",),
                    note=f"{len(never)} cell(s): no step of the ramp reached the abort "
                    "current, or too low a conductance after it"),
            Section("forming per cell", table.drop(columns=["v_gate"]).reset_index(drop=True),
                    conductance=("g_after_siemens",))], fig


def plot_forming(table: pd.DataFrame, out: Path, stem: str) -> list[Path]:
    """The forming-voltage distribution of the formed cells: histogram and empirical CDF."""
    from cimlab.procedures.report.plots import _figure, _save

    fig, ax = _figure(1, 2, size=(9.0, 3.8))
    vf = np.sort(table.loc[table["formed"].to_numpy(bool), "v_form"].to_numpy(float))
    h, c = ax[0, 0], ax[0, 1]
    if vf.size:
        h.hist(vf, bins=max(5, min(40, int(np.sqrt(vf.size)) + 3)), color="C0")
        c.step(vf, np.arange(1, vf.size + 1) / len(table), where="post", color="C0")
    frac = vf.size / max(len(table), 1)
    h.set_xlabel("forming voltage [V]")
    h.set_ylabel("cells")
    h.set_title(f"{vf.size} of {len(table)} cells formed")
    c.set_xlabel("forming voltage [V]")
    c.set_ylabel("cumulative fraction of cells")
    c.set_ylim(0, 1)
    c.axhline(frac, color="k", lw=0.6, ls="--", label=f"formed fraction {frac:.3f}")
    c.legend(fontsize=7)
    return [_save(fig, out / f"{stem}_vform.png")]


__all__ = ["plot_forming", "plot_gate", "plot_iv", "summarize_forming", "summarize_gate",
           "summarize_iv"]
