"""Which cells of a run are stuck (hold no state), the one rule shared by the report and the
fitters (:mod:`cimlab.models.fit.binary` imports it from here).

* analog runs (programming error, read fluctuation, relaxation, bake): a cell is stuck when a
  fault map in the same store flags it (:func:`analog_filter`, :class:`CellFilter`): an
  analog run has no SET/RESET reads of its own to decide on;
* BER runs: :func:`stuck_cells` (the fault map where it lists the cell, else the run's own
  reads after SET and after RESET); :func:`working_bits` masks the bits on working cells.

Stuck-at faults: paper 004, ~1 % of cells, 16.2 % of them stuck-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cimlab.stats import robust_sigma

STUCK_STATES = ("stuck_on", "stuck_off")


def fault_states(faults: pd.DataFrame) -> pd.Series:
    """State per cell ("ok", "stuck_on", "stuck_off") of a ``fault_map`` ``faults`` table
    (the last row of a cell wins), indexed by cell: rule 1 of :func:`stuck_cells`."""
    fm = faults.drop_duplicates("cell", keep="last").set_index("cell")["state"].astype(str)
    fm.index = fm.index.astype(np.int64)
    return fm


@dataclass(frozen=True)
class CellFilter:
    """Which cells of an analog run the report's statistics leave out as stuck, and why.

    ``basis``: "fault_map" (a fault map lists every cell: sigma = plain std of the cells it
    does not flag), "robust" (some cells unmapped: sigma = 1.4826 x MAD, which ~1 % of stuck
    cells barely move) or "plain" (imported data: the importer already set outliers apart)."""

    stuck: np.ndarray
    cells: int
    covered: int
    basis: str

    def keep(self, cell: Any) -> np.ndarray:
        """Row mask: the cell is not flagged stuck."""
        return ~np.isin(np.asarray(cell).astype(np.int64), self.stuck)

    def note(self, robust: str = "1.4826 x median absolute deviation") -> str:
        """What was excluded and what sigma means (``robust``: how the robust one is made)."""
        if self.covered == 0:
            ex = f"no fault map in this store covers the run's {self.cells} cells"
        else:
            ex = (f"{self.stuck.size} stuck cells excluded (flagged by the fault map, which "
                  f"covers {self.covered} of the run's {self.cells} cells)")
        raw = "sigma_raw = std over all cells (stuck cells included)"
        if self.basis == "fault_map":
            return f"{ex}; sigma = std over the other cells; {raw}"
        if self.basis == "robust":
            return (f"{ex}; sigma = robust sigma ({robust}: stuck cells, ~1 %, barely move "
                    f"it); {raw}")
        return f"{ex}; sigma = std over the cells of the run (imported data); {raw}"


def analog_filter(cells: Any, faults: pd.DataFrame | None, kind: str = "") -> CellFilter:
    """The stuck cells of an analog run (programming error, read fluctuation, relaxation,
    bake): a cell is stuck when a fault map in the same store flags it (the rule of
    :func:`stuck_cells`; an analog run has no SET/RESET reads of its own to decide on)."""
    u = np.unique(np.asarray(cells).astype(np.int64))
    stuck = np.empty(0, np.int64)
    covered = 0
    if faults is not None and len(faults):
        fm = fault_states(faults)
        known = fm.reindex(u)
        covered = int(known.notna().sum())
        stuck = u[known.isin(STUCK_STATES).to_numpy()]
    if covered == u.size and u.size:
        basis = "fault_map"
    else:
        basis = "plain" if kind == "imported" else "robust"
    return CellFilter(stuck=stuck, cells=int(u.size), covered=covered, basis=basis)


#: A BER-run cell has switched when the median of its reads after SET exceeds the median of
#: its reads after RESET by at least this much [S] ... (see :func:`stuck_cells`)
STUCK_WINDOW_S = 2e-6
#: ... and by at least this fraction of the larger median (a stuck-on cell at ~60 uS reads
#: with ~1 % noise, paper 000: 10 % is > 7 standard deviations of a read difference).
STUCK_WINDOW_REL = 0.1
#: Conductance [S] above which a cell that never switched counts as stuck-on (as the fault
#: map's default ``g_split_siemens``).
STUCK_SPLIT_S = 10e-6
#: A cell that never switched but lies within this many robust standard deviations (ln g)
#: of the condition's LRS is a working cell the condition's RESET cannot switch.
STUCK_STATE_SIGMAS = 4.0


def _state_reads(bits: pd.DataFrame) -> pd.DataFrame:
    """Long table (cell, after, g) of a BER ``bits`` table: every read of every cell with the
    state it was last pulsed to (``after`` 0: SET / LRS, 1: RESET / HRS)."""
    bit = bits["bit"].to_numpy().astype(np.int64)
    cell = bits["cell"].to_numpy().astype(np.int64)
    parts = [(cell, bit, bits["g_siemens"].to_numpy(dtype=float))]
    has_b = "cell_b" in bits.columns and "g_b_siemens" in bits.columns
    if has_b:
        cb = bits["cell_b"].to_numpy().astype(np.int64)
        parts.append((cb, 1 - bit, bits["g_b_siemens"].to_numpy(dtype=float)))
    if "g_pre_siemens" in bits.columns:  # the precondition read: the opposite state
        parts.append((cell, 1 - bit, bits["g_pre_siemens"].to_numpy(dtype=float)))
        if has_b and "g_b_pre_siemens" in bits.columns:
            parts.append((cb, bit, bits["g_b_pre_siemens"].to_numpy(dtype=float)))
    c, a, g = (np.concatenate(x) for x in zip(*parts, strict=True))
    ok = (c >= 0) & np.isfinite(g)
    return pd.DataFrame({"cell": c[ok], "after": a[ok], "g": g[ok]})


def stuck_cells(bits: pd.DataFrame, faults: pd.DataFrame | None = None) -> pd.DataFrame:
    """Which cells of a BER run hold no bit (stuck-at faults, paper 004: ~1 % of cells).

    ``bits``: a ``ber`` ``bits`` table (the procedure gives every condition its own cells;
    call it per condition where cells are shared).

    The one rule for the report's working-cell BER and the binary-state fitter
    (:func:`cimlab.models.fit.binary.fit_binary`). Per cell, in this order:

    1. a ``fault_map`` ``faults`` table that lists the cell decides (source "fault_map"):
       stuck_on / stuck_off, or ok;
    2. else the BER run itself (source "ber_run"), when it read the cell after a SET and
       after a RESET (the precondition read ``g_pre_siemens``, or cycles with both bits): the cell
       switched when ``median(g after SET) - median(g after RESET) >= max(STUCK_WINDOW_S,
       STUCK_WINDOW_REL * the larger median)`` (a cell whose medians differ by that much the
       other way moved too, and is not stuck); one that did not move is stuck (on above
       :data:`STUCK_SPLIT_S`, else off) unless its conductance lies inside the LRS of that
       condition's switching cells (:data:`STUCK_STATE_SIGMAS`): then it is a
       working cell the condition cannot switch (a weak RESET above the cell's floor leaves
       it in the LRS), whose wrong reads are that condition's bit errors. Medians of
       conductances, not read bits: a working cell that was read wrong (a bit error, what
       the BER counts) still moved, so the rule does not remove the errors it counts;
    3. else "unknown" (source "none": seen in one state only), counted as working.

    Returns a DataFrame indexed by cell: state ("ok", "stuck_on", "stuck_off", "unknown"),
    source, g_set_siemens, g_reset_siemens (medians; NaN if not seen).
    """
    parts = []
    by = bits.groupby(bits["condition"].astype(str), sort=False) if "condition" in \
        bits.columns else [("", bits)]
    for _, b in by:
        parts.append(_stuck_from_run(_state_reads(b)))
    out = pd.concat(parts)
    out = out[~out.index.duplicated(keep="last")]
    if faults is not None and len(faults):
        fm = fault_states(faults)
        common = out.index.intersection(fm.index)
        out.loc[common, "state"] = fm.loc[common].to_numpy()
        out.loc[common, "source"] = "fault_map"
    return out


def _stuck_from_run(reads: pd.DataFrame) -> pd.DataFrame:
    """Rule 2 of :func:`stuck_cells` on one condition's reads (cell, after, g)."""
    med = reads.groupby(["cell", "after"])["g"].median().unstack("after")
    med = med.reindex(columns=[0, 1])
    g_set = med[0].to_numpy(dtype=float)
    g_reset = med[1].to_numpy(dtype=float)
    seen_both = np.isfinite(g_set) & np.isfinite(g_reset)
    top = np.fmax(g_set, g_reset)
    window = np.maximum(STUCK_WINDOW_S, STUCK_WINDOW_REL * top)
    switched = seen_both & ((g_set - g_reset) >= window)
    level = np.where(seen_both, 0.5 * (g_set + g_reset), np.fmax(g_set, g_reset))
    # a cell that did not switch but sits inside the LRS of the cells that did is
    # a working cell this condition cannot switch (e.g. a weak RESET above the cell's floor,
    # docs/physics.md): its wrong reads are bit errors of the condition, not a fault
    inside = np.zeros(level.size, dtype=bool)
    for col in (g_set,):  # SET pulses (2 V) switch every working cell; RESETs may not
        x = np.log(col[switched & (col > 0)])
        if x.size >= 20:
            mu = np.median(x)
            sd = robust_sigma(x)
            with np.errstate(divide="ignore", invalid="ignore"):
                inside |= np.abs(np.log(level) - mu) <= STUCK_STATE_SIGMAS * max(sd, 1e-3)
    moved = seen_both & (np.abs(g_set - g_reset) >= window)  # either way: not stuck
    state = np.where(~seen_both, "unknown", np.where(
        moved | inside, "ok", np.where(level > STUCK_SPLIT_S, "stuck_on", "stuck_off")))
    out = pd.DataFrame({"state": state, "source": np.where(seen_both, "ber_run", "none"),
                        "g_set_siemens": g_set, "g_reset_siemens": g_reset}, index=med.index)
    out.index.name = "cell"
    return out


def working_bits(bits: pd.DataFrame, stuck: pd.DataFrame) -> np.ndarray:
    """Mask of the rows of ``bits`` whose cell (and 2T2R partner) is not stuck."""
    bad = stuck.index[stuck["state"].isin(("stuck_on", "stuck_off"))].to_numpy()
    ok = ~np.isin(bits["cell"].to_numpy().astype(np.int64), bad)
    if "cell_b" in bits.columns:
        cb = bits["cell_b"].to_numpy().astype(np.int64)
        ok &= ~((cb >= 0) & np.isin(cb, bad))
    return ok

