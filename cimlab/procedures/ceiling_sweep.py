"""Where a saturating SET leaves the cells at each word-line voltage: the first step of both
pulse-response models (:mod:`cimlab.procedures.pulse_response`,
:mod:`cimlab.procedures.pulse_table`).

In a 1T1R cell the access transistor limits the SET current, so a saturating SET ends near a
ceiling set by the word-line voltage (R_LRS = V_C / I_C, Ielmini, SST 31, 063002 (2016)). The
sweep measures it without assuming that law: ``calibration_rounds`` rounds of a deep RESET, a
saturating SET at a random word-line voltage per cell (0.025 V grid), and a read.
"""

from __future__ import annotations

import numpy as np

from cimlab.procedures.array_ops import ArrayOps
from cimlab.procedures.verify_config import RESET, SET, ProgramVerifyConfig, _grid
from cimlab.stats import robust_sigma

#: Word-line voltage grid of the sweep [V].
GATE_STEP_V = 0.025


def finite_median(x: np.ndarray) -> float:
    """Median of the finite entries (NaN when there are none)."""
    x = x[np.isfinite(x)]
    return float(np.median(x)) if x.size else np.nan


def robust_rel_sd(x: np.ndarray) -> float:
    """1.4826 * MAD / median of the finite entries (stuck cells do not inflate it; NaN for
    fewer than 3)."""
    x = x[np.isfinite(x)]
    if x.size < 3:
        return np.nan
    return robust_sigma(x) / max(abs(float(np.median(x))), 1e-30)


def measure_ceilings(ops: ArrayOps, cells: np.ndarray, cfg: ProgramVerifyConfig,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gates [V], median ceiling [S], relative spread) per word-line voltage the sweep
    measured (voltages no cell was drawn at are left out)."""
    n = np.asarray(cells).size
    gates = _grid(cfg.v_gate_min, cfg.v_gate_max, GATE_STEP_V)
    vg_s, g_s = [], []
    for _ in range(cfg.calibration_rounds):
        ops.pulse(cells, RESET, cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
        vg = rng.choice(gates, n)
        ops.pulse(cells, SET, cfg.v_set_max, vg, cfg.width_s)
        vg_s.append(vg)
        g_s.append(ops.read(cells))
    vg_all, g_all = np.concatenate(vg_s), np.concatenate(g_s)
    ceiling = np.array([finite_median(g_all[vg_all == v]) for v in gates])
    rel = np.array([robust_rel_sd(g_all[vg_all == v]) for v in gates])
    ok = np.isfinite(ceiling)
    return gates[ok], ceiling[ok], rel[ok]
