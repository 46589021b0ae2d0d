"""Manufacturing stuck-at faults (paper 004) and the endurance limits of each cell.

Fault codes (int8, per cell): ``0`` ok, ``+1`` stuck-on, ``-1`` stuck-off (manufacture),
``+2`` worn out (failed by cycling, frozen at its conductance at failure; see chip.py).
Stuck and worn cells ignore programming pulses.
"""

from __future__ import annotations

import numpy as np

from cimlab.physics.profile import Faults

OK, STUCK_ON, STUCK_OFF, WORN = 0, 1, -1, 2


def draw_stuck(
    faults: Faults, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Fault codes (int8) and the conductance [S] of each stuck cell (NaN where ok)."""
    u = rng.random(n)
    code = np.zeros(n, dtype=np.int8)
    stuck = u < faults.p_stuck
    off = u < faults.p_stuck * faults.frac_off
    code[stuck] = STUCK_ON
    code[off] = STUCK_OFF
    g = np.full(n, np.nan)
    z = rng.standard_normal(n)
    g_on = faults.g_on * np.exp(faults.sigma * z)
    g_off = faults.g_off * np.exp(faults.sigma * z)
    g[code == STUCK_ON] = g_on[code == STUCK_ON]
    g[code == STUCK_OFF] = g_off[code == STUCK_OFF]
    return code, g


def stuck_mask(code: np.ndarray, g: np.ndarray, g_mid: float) -> np.ndarray:
    """int8 mask in the models' convention: 0 ok, +1 stuck-on, -1 stuck-off. Worn-out cells
    count as stuck-on when frozen above ``g_mid`` [S], stuck-off below."""
    mask = np.where(code == WORN, np.where(g >= g_mid, STUCK_ON, STUCK_OFF), code)
    return mask.astype(np.int8)
