"""Each non-ideality alone changes outputs by the amount its device model predicts.

Tolerances come from the sample sizes (fixed seeds): a variance estimated from n draws has a
relative standard error sqrt(2 / (n - 1)); a fraction from n cells a binomial one.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cimlab.sim import AnalogConfig, convert
from tests.sim.sim_helpers import binomial_tol, dm_default, dm_untruncated


def linear(n_in: int, n_out: int, seed: int = 0, bias: bool = True) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(n_in, n_out, bias=bias)).double().eval()


@pytest.fixture(params=["one-stream", "split-streams"])
def noise_split(request, monkeypatch):
    """Run a test with the draws made by one generator, and split over the parallel streams
    (the path every layer of 1 Mi cells or more takes)."""
    if request.param == "split-streams":
        from cimlab.sim import periphery

        monkeypatch.setattr(periphery, "NOISE_SPLIT", 4096)
    return request.param


def test_programming_error_variance_matches_model(noise_split):
    dm = dm_untruncated()
    net = linear(400, 250)
    anet = convert(net, AnalogConfig.ideal(dm, programming_error=True))
    anet.program(torch.Generator().manual_seed(1))
    layer = anet.layers["0"]
    f = layer.mapping.slice_factors(dtype=torch.float64)[0]
    gt = layer.g_target
    pe = dm.programming
    var = (pe.sigma(gt[0, 0]) ** 2 + pe.sigma(gt[1, 0]) ** 2) * f**2  # (out, rows) weight^2
    w_aug = torch.cat([net[0].weight, (net[0].bias / layer.bias_s)[:, None]], 1).detach()
    w_eff = torch.cat([layer.effective_weight(), (layer.effective_bias() / layer.bias_s)[:, None]],
                      1)  # fmt: skip
    z = (w_eff - w_aug) / var.sqrt()  # mean offset is 0 in this model
    n = z.numel()
    assert abs(float(z.mean())) < 4.5 / math.sqrt(n)
    assert float(z.var()) == pytest.approx(1.0, abs=4.5 * math.sqrt(2 / n))
    # a new programming is a new draw, the same generator seed the same chip
    w2 = convert(net, AnalogConfig.ideal(dm, programming_error=True)).program(
        torch.Generator().manual_seed(1)).layers["0"].effective_weight()  # fmt: skip
    torch.testing.assert_close(w2, layer.effective_weight())


@pytest.mark.parametrize("tiled", [False, True], ids=["dense", "tiles-adc"])
@pytest.mark.parametrize("mode", ["weight", "output"])
def test_read_noise_output_variance_matches_analytic(mode, tiled):
    """Per-output variance and mean as the device model predicts, without ADCs and through
    the tiled per-tile-ADC path (24-bit: quantization negligible; the bias row included)."""
    dm = dm_default()
    net = linear(64, 24, seed=2)
    tiles = {"tile": (16, 16), "adc_bits": 24} if tiled else {}
    anet = convert(net, AnalogConfig.ideal(dm, read_noise=mode, **tiles)).program(3)
    layer = anet.layers["0"]
    g = layer.conductances()
    f = layer.mapping.slice_factors(dtype=torch.float64)[0]
    sr = dm.read_noise.sigma
    v_cells = (sr(g[0, 0]) ** 2 + sr(g[1, 0]) ** 2) * f**2  # (out, rows)
    x = torch.randn(1, 64, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_aug = torch.cat([x, torch.full((1, 1), layer.bias_s, dtype=x.dtype)], 1)
    expect = (x_aug**2) @ v_cells.T  # (1, out)
    n = 1500
    with torch.no_grad():
        ys = torch.cat([anet(x) for _ in range(n)])  # (n, out)
    mean_ideal = net(x).detach()
    ratio = ys.var(dim=0) / expect[0]
    se = math.sqrt(2 / (n - 1))
    assert float(ratio.mean()) == pytest.approx(1.0, abs=4.5 * se / math.sqrt(ratio.numel()))
    assert float((ratio - 1).abs().max()) < 5 * se
    # zero-mean noise: the mean output is the ideal one
    tol = 4.5 * (expect[0] / n).sqrt()
    assert bool(((ys.mean(0) - mean_ideal[0]).abs() < tol).all())


def test_read_noise_mode_sharing_within_a_batch():
    dm = dm_default()
    net = linear(32, 8, seed=4)
    x = torch.randn(1, 32, dtype=torch.float64).repeat(2, 1)  # two identical samples
    shared = convert(net, AnalogConfig.ideal(dm, read_noise="weight")).program(0)(x)
    torch.testing.assert_close(shared[0], shared[1])  # one draw per cell per forward call
    indep = convert(net, AnalogConfig.ideal(dm, read_noise="output")).program(0)(x)
    assert not torch.allclose(indep[0], indep[1])  # independent per sample


def test_stuck_at_fractions_and_levels():
    dm = dm_default()
    net = linear(500, 300, bias=False)
    anet = convert(net, AnalogConfig.ideal(dm, stuck=True)).program(5)
    layer = anet.layers["0"]
    mask = layer.stuck_mask
    g = layer.conductances()
    n = mask.numel()
    p_on, p_off = dm.stuck.p_stuck_on, dm.stuck.p_stuck_off
    assert float((mask > 0).double().mean()) == pytest.approx(p_on, abs=binomial_tol(p_on, n))
    assert float((mask < 0).double().mean()) == pytest.approx(p_off, abs=binomial_tol(p_off, n))
    assert bool((g[mask > 0] == dm.stuck.g_on_siemens).all())
    assert bool((g[mask < 0] == dm.stuck.g_off_siemens).all())
    torch.testing.assert_close(g[mask == 0], layer.g_target[mask == 0])


def test_retention_mean_shift_and_spread_match_model(noise_split):
    dm = dm_untruncated()  # cells stay far from 0 S: no floor in the comparison
    net = linear(300, 200, seed=6, bias=False)
    anet = convert(net, AnalogConfig.ideal(dm)).program(7)
    layer = anet.layers["0"]
    g0 = layer.conductances().clone()
    seconds, temp_c = 3600.0, 85.0
    anet.age(seconds, temp_c)
    t_eq = seconds * float(dm.retention.acceleration(temp_c + 273.15))
    assert layer.t_eq_s == pytest.approx(t_eq)
    rel = dm.relaxation
    mean = rel.mean_shift(g0, t_eq)
    sd = rel.sigma(g0, t_eq)
    z = ((layer.conductances() - g0 - mean) / sd).flatten()
    # a conductance is floored at 0 S: compare with the censored normal max(Z, a)
    a = ((0.0 - g0 - mean) / sd).flatten()
    std_normal = torch.distributions.Normal(0.0, 1.0)
    cdf, pdf = std_normal.cdf(a), torch.exp(std_normal.log_prob(a))
    m1 = a * cdf + pdf
    m2 = a * a * cdf + (1 - cdf) + a * pdf
    n = z.numel()
    assert float(z.mean()) == pytest.approx(float(m1.mean()), abs=4.5 / math.sqrt(n))
    assert float((z * z).mean()) == pytest.approx(float(m2.mean()),
                                                  abs=4.5 * math.sqrt(2 / n))  # fmt: skip
    # the effective weights move by the difference of the pair's mean shifts
    f = layer.mapping.slice_factors(dtype=torch.float64)[0]
    pred = f * (mean[0, 0] - mean[1, 0])
    resid = layer.effective_weight() - f * (g0[0, 0] - g0[1, 0]) - pred
    assert abs(float(resid.mean())) < 4.5 * float(resid.std()) / math.sqrt(resid.numel())
    assert float(pred.abs().mean()) > 3 * float(resid.std()) / math.sqrt(resid.numel())


def test_aging_in_steps_equals_aging_at_once():
    """Independent increments: 2 x 1 h at 85 C has the distribution of 2 h at 85 C."""
    dm = dm_untruncated()
    net = linear(300, 200, seed=8, bias=False)
    a = convert(net, AnalogConfig.ideal(dm)).program(1)
    g0 = a.layers["0"].conductances().clone()
    a.age(3600, 85).age(3600, 85)
    b = convert(net, AnalogConfig.ideal(dm)).program(1).age(7200, 85)
    assert a.layers["0"].t_eq_s == pytest.approx(b.layers["0"].t_eq_s)
    da = a.layers["0"].conductances() - g0
    db = b.layers["0"].conductances() - g0
    n = da.numel()
    assert float(da.mean()) == pytest.approx(float(db.mean()), abs=6 * float(db.std()) / n**0.5)
    assert float(da.var() / db.var()) == pytest.approx(1.0, abs=6 * math.sqrt(4 / n))
