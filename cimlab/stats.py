"""Small robust statistics shared by every layer (layer 0: NumPy only)."""

from __future__ import annotations

import numpy as np

#: Consistency constant of the median absolute deviation for a normal distribution,
#: ``1 / Phi^-1(3/4)`` (Rousseeuw & Croux 1993): ``MAD_TO_SIGMA * MAD`` estimates sigma.
MAD_TO_SIGMA = 1.482602218505602


def robust_sigma(x: np.ndarray) -> float:
    """``MAD_TO_SIGMA`` x median absolute deviation of ``x`` (stuck or failed cells, a few
    percent of the sample, do not inflate it)."""
    x = np.asarray(x, dtype=float)
    return float(MAD_TO_SIGMA * np.median(np.abs(x - np.median(x))))
