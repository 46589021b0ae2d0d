"""Tidy tables generated directly from cimlab.physics.ReRAMChip (for the fitter tests).

These bypass the instruments on purpose: they test the fitters against the physics' known
truth (``chip.truth``) with exact timing. The full bench round trip (procedures through
PyVISA into a store, then ``fit_store``) is in test_roundtrip.py.
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd

from cimlab.physics import ReRAMChip, load_profile
from cimlab.physics.reference_programming import Clock, reference_verify
from cimlab.units import KELVIN_OFFSET

RELAX_TIMES = (0.01, 0.03, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)


@functools.cache
def chip_tables(profile: str = "default", seed: int = 7, n_per_level: int = 400,
                n_levels: int = 10, bake_temps_c: tuple[float, ...] = (125.0, 175.0)) -> dict:
    """Relaxation reads, repeated reads and bake reads of one emulated chip, with its truth.

    Stuck and worn cells are left in (as a campaign would measure them)."""
    prof = load_profile(profile)
    chip = ReRAMChip(prof, seed=seed)
    w = prof.window
    levels = np.linspace(w.g_min + 0.1 * (w.g_max - w.g_min), w.g_max, n_levels)
    n = n_levels * n_per_level
    cells = np.arange(n)
    level = np.arange(n) % n_levels
    target = levels[level]
    clock = Clock()
    res = reference_verify(chip, cells, target, clock=clock)
    g0 = res.g_read_siemens
    t_end = clock.now_s
    t_prog = chip.truth.programmed_time(cells)
    rows = []
    for t in RELAX_TIMES:
        now = t_end + t
        g = chip.read(cells, now)
        rows.append(pd.DataFrame({"cell": cells, "level": level, "target_siemens": target,
                                  "g0_siemens": g0, "time_s": now - t_prog, "g_siemens": g,
                                  "temp_k": w.t_room_k}))
    relax = pd.concat(rows, ignore_index=True)
    # repeated reads (read fluctuation): 8 reads 10 ms apart, late (relaxation negligible)
    t0 = t_end + 2e5
    reps = []
    for r in range(8):
        now = t0 + 0.01 * r
        reps.append(pd.DataFrame({"cell": cells, "level": level, "target_siemens": target,
                                  "repeat": r, "time_s": now - t_prog,
                                  "g_siemens": chip.read(cells, now)}))
    reads = pd.concat(reps, ignore_index=True)
    programmed = pd.DataFrame(
        {
            "cell": cells,
            "level": level,
            "target_siemens": target,
            "g_siemens": g0,
            "mode": "verify",
            "time_s": 0.0,
            "g_true_siemens": chip.truth.programmed(cells),
        }
    )
    # bakes: fresh cells per temperature, instantaneous temperature steps (no ramps)
    bake_rows, prog_rows = [], []
    schedule = (60.0, 600.0, 3600.0, 36000.0, 360000.0)
    now = t0 + 1.0
    for j, tc in enumerate(bake_temps_c):
        bc = cells + (j + 1) * n
        clock2 = Clock(now_s=now)
        rb = reference_verify(chip, bc, target, clock=clock2)
        prog_rows.append(
            pd.DataFrame(
                {
                    "cell": bc,
                    "level": level,
                    "target_siemens": target,
                    "g_siemens": rb.g_read_siemens,
                    "mode": "verify",
                    "time_s": 0.0,
                }
            )
        )
        now = clock2.now_s + 1.0
        t_cum = 0.0
        for k, t_c in enumerate((0.0, *schedule)):
            if k:
                chip.advance(max(now - chip.time_s, 0.0), w.t_room_k)
                chip.advance(t_c - t_cum, tc + KELVIN_OFFSET)
                now = chip.time_s + 1.0
                t_cum = t_c
            g = chip.read(bc, now)
            bake_rows.append(pd.DataFrame({"cell": bc, "level": level, "target_siemens": target,
                                           "step": k, "temp_k": tc + KELVIN_OFFSET,
                                           "bake_time_s": t_c, "g_siemens": g, "temp_index": j}))
        now += 10.0
    bake = pd.concat(bake_rows, ignore_index=True)
    bake_prog = pd.concat(prog_rows, ignore_index=True)
    return {"profile": prof, "chip": chip, "relax": relax, "reads": reads,
            "programmed": programmed, "bake": bake, "bake_programmed": bake_prog,
            "stuck": chip.truth.stuck_mask()[: n * (len(bake_temps_c) + 1)]}


#: Read marks of the endurance tables (cycle indices; 0-based like the procedure's).
ENDURANCE_MARKS = (0, 4, 9, 19, 39, 59, 79, 99, 129, 159, 199, 249, 299, 399)


@functools.cache
def endurance_table(seed: int = 11, n_cells: int = 256,
                    marks: tuple[int, ...] = ENDURANCE_MARKS) -> tuple[pd.DataFrame, object]:
    """SET/RESET cycling of ``n_cells`` fresh cells per condition of the default profile, the
    window read at ``marks`` (as the ``endurance`` procedure does, without the instruments).

    Returns (cycles table: condition, cycle, cell, g_lrs_siemens, g_hrs_siemens; the chip, for its
    truth).
    """
    prof = load_profile("default")
    chip = ReRAMChip(prof, seed=seed)
    now = 1.0
    rows = []
    for j, cond in enumerate(prof.conditions):
        cells = np.arange(n_cells) + j * n_cells + 1000
        vg = float(prof.transistor.v_gate_for_icc(cond.icc_a))
        want = set(marks)
        for cyc in range(max(marks) + 1):
            chip.pulse(cells, "set", cond.v_set, vg, cond.width_s, now)
            now += 1e-3
            if cyc in want:
                g_lrs = chip.read(cells, now)
            chip.pulse(cells, "reset", cond.v_reset, vg, cond.width_s, now)
            now += 1e-3
            if cyc in want:
                rows.append(
                    pd.DataFrame(
                        {
                            "condition": cond.name,
                            "cycle": cyc,
                            "cell": cells,
                            "g_lrs_siemens": g_lrs,
                            "g_hrs_siemens": chip.read(cells, now),
                        }
                    )
                )
    return pd.concat(rows, ignore_index=True), chip
