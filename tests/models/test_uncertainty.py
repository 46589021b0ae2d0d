"""Intervals a fit could not determine are dropped, never shown as '+- 0'."""

import dataclasses
import math

from cimlab.models.effects import Relaxation
from cimlab.models.params import FitInfo
from cimlab.models.uncertainty import drop_degenerate_intervals


def test_zero_and_nan_standard_errors_lose_their_interval():
    fit = FitInfo(method="m", n=10,
                  stderr={"m_max": 0.0, "g_center": math.nan, "t0_s": 1e-4, "g_width": 1e-7},
                  ci95={"m_max": (1e-7, 1e-7), "g_center": (math.nan, math.nan),
                        "t0_s": (1e-3, 2e-3), "g_width": (2e-6, 2e-6)})
    r = dataclasses.replace(Relaxation(), fit=fit)
    out = drop_degenerate_intervals(r)
    assert set(out.fit.ci95) == {"t0_s"} and set(out.fit.stderr) == {"t0_s"}
    assert "not identified" in out.fit.notes
    for name in ("g_center", "g_width", "m_max"):
        assert name in out.fit.notes
    assert out.m_max == r.m_max  # values kept
    assert drop_degenerate_intervals(Relaxation()) == Relaxation()  # no fit: unchanged
