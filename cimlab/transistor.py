"""The 1T1R access transistor's gate curve: SET compliance current versus word-line voltage
and its one inversion (layer 0: pure NumPy).

Long-channel square law in saturation (Shichman & Hodges, IEEE JSSC 3, 285 (1968)):
``I = k/2 (V_gate - V_th)^2`` above threshold, 0 below. The emulated chip's transistor
(:mod:`cimlab.physics.profile`, layer 1) and the station's transistor calibration
(:mod:`cimlab.instruments.station_config`, layer 4) both use these functions, so the station
never imports the emulator's physics and there is one inversion, which refuses targets off the
curve instead of clamping them.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def square_law_current(v_gate: Any, k_a_per_v2: float, v_th_v: float,
                       dv_th: Any = 0.0) -> Any:
    """Saturation current [A] of a square-law transistor (Shichman-Hodges):
    ``I = k/2 (V_gate - V_th - dV_th)^2`` for ``V_gate > V_th + dV_th``, 0 below threshold (the
    transistor is off there: the device law, not a clamp). Scalar in, float out; arrays
    broadcast."""
    ov = np.maximum(np.asarray(v_gate, dtype=float) - v_th_v - dv_th, 0.0)
    out = 0.5 * k_a_per_v2 * ov * ov
    return float(out) if np.ndim(out) == 0 else out


def square_law_gate_voltage(icc_a: Any, k_a_per_v2: float, v_th_v: float) -> Any:
    """Gate voltage [V] at which a square-law transistor's saturation current is ``icc_a``
    [A]: ``V = V_th + sqrt(2 I / k)``, the inverse of :func:`square_law_current`.

    The one gate-curve inversion of cimlab: the emulated chip's
    :class:`cimlab.physics.profile.Transistor` and the station's transistor calibration
    (:class:`cimlab.instruments.station_config.TransistorCalibration`) both call it. A
    target outside the curve's range (negative, NaN or infinite) raises ValueError naming it;
    nothing is clamped. ``icc_a = 0`` is the threshold voltage.
    """
    i = np.asarray(icc_a, dtype=float)
    bad = ~np.isfinite(i) | (i < 0)
    if np.any(bad):
        first = float(i.reshape(-1)[np.flatnonzero(bad.reshape(-1))[0]])
        raise ValueError(f"compliance current must be a finite value >= 0 A, got {first!r} "
                         "(the square-law gate curve has no gate voltage for it)")
    out = v_th_v + np.sqrt(2.0 * i / k_a_per_v2)
    return float(out) if np.ndim(out) == 0 else out


__all__ = ["square_law_current", "square_law_gate_voltage"]
