"""Paper 000's offset mapping vs the differential pair, in weights (device model draws)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.mitigation import weight_mapping as wm


@pytest.fixture(scope="module")
def dm():
    from cimlab.models import DeviceModel

    return DeviceModel.default()


@pytest.mark.parametrize("scheme", wm.SCHEMES)
def test_targets_round_trip_exactly(scheme):
    w = torch.linspace(-0.2, 0.2, 41, dtype=torch.float64)
    g = wm._targets(w, scheme, 2e-6, 38e-6, 0.2)
    assert g.shape[0] == (1 if scheme == "offset" else 2)
    assert float(g.min()) >= 2e-6 - 1e-18 and float(g.max()) <= 40e-6 + 1e-18
    assert torch.allclose(wm._weight(g, scheme, 2e-6, 38e-6, 0.2), w, atol=1e-15)
    if scheme == "offset":  # paper 000: [-0.2, 0.2] linearly onto 2-40 uS, 0 mid-window
        assert g[0, 0] == pytest.approx(2e-6) and g[0, 20] == pytest.approx(21e-6)


def _rectified_sd(mu: float, s: float) -> float:
    """Std of max(0, Y), Y ~ N(mu, s^2) (the device model floors conductances at 0 S)."""
    from scipy.stats import norm

    a = mu / s
    m1 = mu * norm.cdf(a) + s * norm.pdf(a)
    m2 = (mu**2 + s**2) * norm.cdf(a) + mu * s * norm.pdf(a)
    return math.sqrt(m2 - m1**2)


def test_programming_error_in_weight_units_matches_the_device_model(dm):
    # w = 0 everywhere: one offset cell at g_mid, weight noise 2 wmax / span * sd(g_mid);
    # the pair: both cells at g_min, wmax / span * sqrt(2) sd(g_min), sd of the programmed
    # conductance floored at 0 S
    n, wmax = 20000, 0.2
    w = torch.zeros(n, dtype=torch.float64)
    w[0] = wmax  # sets max|w| = wmax
    win = dm.window
    span = win.g_max - win.g_min
    pe = dm.programming

    def sd(g: float) -> float:
        return _rectified_sd(g + pe.mean_offset,
                             float(pe.sigma(torch.tensor(g, dtype=torch.float64))))

    expect = {"offset": 2 * wmax / span * sd(win.g_min + span / 2),
              "differential": wmax / span * math.sqrt(2) * sd(win.g_min)}
    for scheme, s in expect.items():
        gen = torch.Generator().manual_seed(1)
        e = wm.effective_weight(w, scheme, dm, gen, read=False)[1:] - w[1:]
        # 5 standard errors of a std from n draws: about s * 5 / sqrt(2 n)
        assert float(e.std()) == pytest.approx(s, rel=5 / math.sqrt(2 * n)), scheme
    # w = 0 on one cell mid-window: far more noise than the pair's two g_min cells
    assert expect["offset"] > expect["differential"]


def test_a_bake_shifts_offset_weights_together_and_cancels_in_the_pair(dm):
    # the relaxation mean shift at one conductance is common to every cell there: the
    # offset map turns it into a weight shift, the pair (both cells at g_min) cancels it
    n = 20000
    w = torch.zeros(n, dtype=torch.float64)
    w[0] = 0.2
    shift = {}
    for scheme in wm.SCHEMES:
        gen = torch.Generator().manual_seed(2)
        a = wm.effective_weight(w, scheme, dm, gen, read=False)[1:]
        gen = torch.Generator().manual_seed(2)
        b = wm.effective_weight(w, scheme, dm, gen, bake_s=3600.0, read=False)[1:]
        shift[scheme] = float((b - a).mean()), float((b - a).std()) / math.sqrt(n)
    win = dm.window
    span = win.g_max - win.g_min
    g_mid = torch.tensor(win.g_min + span / 2, dtype=torch.float64)
    t_eq = dm.retention.equivalent_time(3600.0, 150.0 + 273.15)
    expect = 2 * 0.2 / span * float(dm.relaxation.mean_shift(g_mid, t_eq))
    m, se = shift["offset"]
    assert abs(m - expect) < 5 * se + 1e-12
    assert abs(expect) > 10 * se  # a real shift, not noise
    m, se = shift["differential"]
    assert abs(m) < 5 * se


def test_inject_restores_the_weights_and_rejects_unknown_layers(dm):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    before = [p.detach().clone() for p in net.parameters()]
    with wm.inject(net, ["0"], "offset", dm, torch.Generator().manual_seed(0)):
        assert not torch.equal(net[0].weight, before[0])
        assert torch.equal(net[2].weight, before[2])
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))
    with pytest.raises(ConfigError, match="layers"):
        with wm.inject(net, ["nope"], "offset", dm, torch.Generator()):
            pass
    with pytest.raises(ConfigError, match="scheme"):
        wm.effective_weight(net[0].weight, "nope", dm, torch.Generator())
