"""What the cells hold after programming: the fraction within tolerance at fixed delays.

A verify loop stops when one noisy verify read lands in the band; that is a stopping rule,
not a success rate: every pulse restarts the cell's conductance relaxation (docs/physics.md),
and a network is used seconds to days after its tile is finished. :func:`within_tolerance_at`
advances the station clock (``clock.sleep``) to each delay after the tile is finished and
takes a fresh averaged read of every cell through the instruments; the fraction of cells
within ``+- tolerance`` of their targets at each delay is the figure programming schemes are
compared on (issue 13).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.protocols import Clock

#: delays after the tile is finished at which the cells are read [s]: 0 s, 1 s, 1 min, 1 h, 1 day
DEFAULT_DELAYS_S: tuple[float, ...] = (0.0, 1.0, 60.0, 3600.0, 86400.0)


@dataclass
class DelayedTolerance:
    """Within-tolerance fractions at delays after the tile was finished.

    ``measured`` holds the fraction from the averaged instrument reads, ``truth`` (emulated
    benches, tests and benchmarks only) from the emulator's true conductances at the same
    instants, ``g_siemens`` the averaged reads (delays x cells) [S]."""

    delays_s: tuple[float, ...]
    measured: dict[str, float]
    truth: dict[str, float] | None
    g_siemens: np.ndarray

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"within_tol_at_s": self.measured}
        if self.truth is not None:
            out["within_tol_at_s_truth"] = self.truth
        return out


def delay_key(delay_s: float) -> str:
    """JSON key of a delay: whole seconds as a string ("0", "60", "86400")."""
    return f"{delay_s:.0f}" if float(delay_s).is_integer() else f"{delay_s:g}"


def within_tolerance_at(
    ops: ArrayOps,
    clock: Clock,
    cells: np.ndarray,
    target_siemens: np.ndarray,
    tolerance_siemens: float | np.ndarray,
    *,
    finished_at_s: float | None = None,
    delays_s: Sequence[float] = DEFAULT_DELAYS_S,
    n_reads: int = 8,
    mask: np.ndarray | None = None,
    truth: Callable[[np.ndarray], np.ndarray] | None = None,
) -> DelayedTolerance:
    """Read ``cells`` at each delay [s] after ``finished_at_s`` (default: now) and return the
    fraction within ``+- tolerance_siemens`` of ``target_siemens`` [S].

    Each read is ``n_reads`` reads averaged in one command. ``mask`` restricts the fractions to
    some cells (e.g. the responsive ones). ``truth`` (cells -> true conductance [S], e.g. from
    the emulator's ``chip.truth``) is evaluated at the same instants. A delay already past
    (the clock beyond it) raises ValueError: the figure would not mean what its key says.
    """
    cells = np.asarray(cells, dtype=np.uint32)
    target = np.broadcast_to(np.asarray(target_siemens, dtype=float), cells.shape)
    tol = np.broadcast_to(np.asarray(tolerance_siemens, dtype=float), cells.shape)
    sel = np.ones(cells.size, bool) if mask is None else np.asarray(mask, bool)
    t0 = clock.now() if finished_at_s is None else float(finished_at_s)
    measured: dict[str, float] = {}
    true_frac: dict[str, float] | None = {} if truth is not None else None
    reads = np.empty((len(delays_s), cells.size))
    for i, d in enumerate(sorted(float(x) for x in delays_s)):
        wait = t0 + d - clock.now()
        if wait < -1e-9 and d > 0:
            raise ValueError(f"delay {d:g} s after the tile finished is already past "
                             f"({-wait:g} s ago); read it earlier")
        if wait > 0:
            clock.sleep(wait)
        if true_frac is not None:
            g_true = np.asarray(truth(cells), dtype=float)
            true_frac[delay_key(d)] = float(np.mean(np.abs(g_true - target)[sel] <= tol[sel]))
        g = ops.read(cells, n_reads)
        reads[i] = g
        measured[delay_key(d)] = float(np.mean(np.abs(g - target)[sel] <= tol[sel]))
    return DelayedTolerance(tuple(sorted(float(x) for x in delays_s)), measured, true_frac,
                            reads)


def format_held(summaries: list[dict]) -> str:
    """Rows "held @ <delay>" (percent of the responsive cells within tolerance, from each
    summary's ``held_within_tol_at_s``), one column per scheme; empty without holds."""
    if not any("held_within_tol_at_s" in s for s in summaries):
        return ""
    keys: list[str] = []
    for s in summaries:
        for k in s.get("held_within_tol_at_s", {}):
            if k not in keys:
                keys.append(k)
    lines = ["what the cells hold (responsive cells within tolerance, 8 reads averaged):"]
    for k in sorted(keys, key=float):
        row = "".join(f"{100 * s['held_within_tol_at_s'][k]:>14.2f}"
                      if k in s.get("held_within_tol_at_s", {}) else f"{'-':>14s}"
                      for s in summaries)
        lines.append(f"{'held @ ' + k + ' s [%]':27s}" + row)
    return "\n".join(lines)
