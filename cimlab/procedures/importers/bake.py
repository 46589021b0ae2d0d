"""Bake retention reads from any layout -> the ``bake_retention`` tables ``characterize`` writes.

Input: one row per read with cell, bake temperature [K], bake duration at temperature [s]
(0 for the reference read taken before the bake) and conductance [S]; optionally a
programming-cycle index (the cells re-programmed between bakes: one cycle per bake series,
default one per temperature), a level or a target. Output (docs/architecture.md section 5)::

    reads:  cell, level, target_siemens, step, temp_k, bake_time_s, g_siemens,
            repeat, temp_index, g0_siemens (this cycle's reference read)
    bakes:  temp_index, step, temp_k, soak_s, bake_time_s (median of the step's reads)

``step`` numbers a cell's distinct bake times within its cycle (0: the reference read at bake
time 0); ``temp_index`` is the cycle. The reference read ``g0_siemens`` of a row is the mean of the
bake-time-0 reads of the SAME cell in the SAME cycle: cell ids repeat across temperatures, and
a reference from another temperature would mix two programmings. Without a level or target,
``level = floor(g0 / level_step)`` and ``target = (level + offset) * level_step`` (the centre
of the band with ``offset`` 0.5); rows whose cell's reference lies outside
``[0, n_levels * level_step)`` go to a table ``outliers`` with the same columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cimlab.errors import ConfigError
from cimlab.procedures.importers._table import line_of
from cimlab.units import KELVIN_OFFSET

#: The columns of a bake ``reads`` table, in order (the contract, then the extras).
BAKE_COLUMNS = ("cell", "level", "target_siemens", "step", "temp_k", "bake_time_s", "g_siemens",
                "repeat", "temp_index", "g0_siemens")


def build_bake(path: Path, cell: np.ndarray, temp_k: np.ndarray, bake_time_s: np.ndarray,
               g_siemens: np.ndarray, *, header: bool, names: dict[str, str],
               cycle: np.ndarray | None = None, level: np.ndarray | None = None,
               target_siemens: np.ndarray | None = None, level_step_siemens: float | None = None,
               n_levels: int | None = None, target_offset: float = 0.5,
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(reads, outliers, bakes) columns; ``names`` maps quantity -> file column for errors."""
    n = cell.size
    if cycle is None:
        _, cycle = np.unique(temp_k, return_inverse=True)
        cycle = cycle.reshape(-1).astype(np.int64)
    else:
        first_t = {}
        for i in np.unique(cycle, return_index=True)[1]:
            first_t[int(cycle[i])] = temp_k[i]
        ref_t = np.array([first_t[int(c)] for c in cycle]) if n else temp_k
        bad = np.flatnonzero(temp_k != ref_t)
        if bad.size:
            i = int(bad[0])
            raise ConfigError(path, f'line {line_of(i, header)}, column "{names["temp"]}"',
                              f"one bake temperature per cycle ({names['cycle']} "
                              f"{cycle[i]} is at {ref_t[i] - KELVIN_OFFSET:g} C)",
                              f"{temp_k[i] - KELVIN_OFFSET:g} C")
    order = np.lexsort((np.arange(n), bake_time_s, cell, cycle))
    c_s, k_s, t_s = cycle[order], cell[order], bake_time_s[order]
    new_group = np.ones(n, bool)
    new_group[1:] = (c_s[1:] != c_s[:-1]) | (k_s[1:] != k_s[:-1])
    new_time = new_group.copy()
    new_time[1:] |= t_s[1:] != t_s[:-1]
    group = np.cumsum(new_group) - 1
    starts = np.flatnonzero(new_group)
    # step: number of distinct times before this one in the group
    tcount = np.cumsum(new_time) - 1
    step_sorted = tcount - tcount[starts][group]
    # repeat: position among the rows of the same (group, time)
    tstart = np.flatnonzero(new_time)
    repeat_sorted = np.arange(n) - tstart[np.cumsum(new_time) - 1]
    no_ref = np.flatnonzero(t_s[starts] != 0.0)
    if no_ref.size:
        i = int(order[starts[no_ref[0]]])
        raise ConfigError(path, f'line {line_of(i, header)}, column "{names["bake_time"]}"',
                          f"a reference read at bake time 0 for every cell of every bake "
                          f"(cell {cell[i]} at {temp_k[i] - KELVIN_OFFSET:g} C has none; its first "
                          "read is this one)", f"{bake_time_s[i]!r}; {no_ref.size} such cell(s)")
    is_ref = step_sorted == 0
    sums = np.bincount(group[is_ref], weights=g_siemens[order][is_ref], minlength=starts.size)
    counts = np.bincount(group[is_ref], minlength=starts.size)
    ref_sorted = (sums / counts)[group]
    step = np.empty(n, np.int64)
    step[order] = step_sorted
    repeat = np.empty(n, np.int64)
    repeat[order] = repeat_sorted
    g0 = np.empty(n)
    g0[order] = ref_sorted
    keep = np.ones(n, bool)
    if level is None and target_siemens is None:
        if level_step_siemens is None:
            raise ConfigError(path, "level", "a level column, a target column, or a level step "
                              "(--level-step) to take levels from the reference reads", None)
        level = np.floor(g0 / level_step_siemens)
        keep = level >= 0
        if n_levels is not None:
            keep &= level < n_levels
        level = level.astype(np.int64)
        target_siemens = (level + float(target_offset)) * float(level_step_siemens)
    elif level is None:
        _, level = np.unique(target_siemens, return_inverse=True)
        level = level.reshape(-1).astype(np.int64)
    elif target_siemens is None:
        if level_step_siemens is None:
            raise ConfigError(path, "level_step_siemens", "the conductance step per level "
                              "(--level-step, e.g. 7.5uS) when there is no target column "
                              "(target_siemens = level * step)", None)
        target_siemens = level * float(level_step_siemens)
    cols = {"cell": cell.astype(np.uint32), "level": level, "target_siemens": target_siemens,
            "step": step, "temp_k": temp_k, "bake_time_s": bake_time_s, "g_siemens": g_siemens,
            "repeat": repeat, "temp_index": cycle.astype(np.int64), "g0_siemens": g0}
    by_cycle = np.argsort(cycle, kind="stable")
    cols = {k: np.asarray(v)[by_cycle] for k, v in cols.items()}
    keep = keep[by_cycle]
    reads = {k: v[keep] for k, v in cols.items()}
    outliers = {k: v[~keep] for k, v in cols.items()}
    return reads, outliers, bake_segments(reads)


def bake_segments(reads: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ``bakes`` table: one row per (temp_index, step > 0), soak = the median bake time of
    the step's reads minus the previous step's."""
    rows: dict[str, list] = {"temp_index": [], "step": [], "temp_k": [], "soak_s": [],
                             "bake_time_s": []}
    ti, st = reads["temp_index"], reads["step"]
    for j in np.unique(ti):
        m = ti == j
        prev = 0.0
        for k in np.unique(st[m]):
            if k == 0:
                continue
            t = float(np.median(reads["bake_time_s"][m & (st == k)]))
            rows["temp_index"].append(int(j))
            rows["step"].append(int(k))
            rows["temp_k"].append(float(reads["temp_k"][m][0]))
            rows["soak_s"].append(t - prev)
            rows["bake_time_s"].append(t)
            prev = t
    return {"temp_index": np.array(rows["temp_index"], np.int64),
            "step": np.array(rows["step"], np.int64),
            "temp_k": np.array(rows["temp_k"], float), "soak_s": np.array(rows["soak_s"], float),
            "bake_time_s": np.array(rows["bake_time_s"], float)}
