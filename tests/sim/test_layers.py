"""Analog layers: ideal equivalence, mapping, tiling/ADC/DAC against a reference loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cimlab.errors import ConfigError
from cimlab.sim import AnalogConfig, convert
from cimlab.sim.layers import converter_levels
from cimlab.sim.mapping import Mapping, make_layout
from tests.sim.sim_helpers import dm_default


def small_net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(3)
        net = nn.Sequential(
            nn.Conv2d(3, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
            nn.Conv2d(12, 8, 3, stride=2, bias=False), nn.ReLU(), nn.Flatten(),
            nn.Linear(8 * 3 * 3, 20), nn.ReLU(), nn.Linear(20, 5),
        )  # fmt: skip
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_ideal_conversion_reproduces_plain_network():
    net = small_net()
    x = torch.randn(10, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    anet = convert(net, AnalogConfig.ideal(dm_default())).program(0)
    assert set(anet.layers) == {"0", "3", "6", "8"}
    torch.testing.assert_close(anet(x), net(x), rtol=1e-5, atol=1e-5)
    # tiles alone (no ADC) change nothing either, and the original net is untouched
    anet = convert(net, AnalogConfig.ideal(dm_default(), tile=(16, 8))).program(0)
    torch.testing.assert_close(anet(x), net(x), rtol=1e-5, atol=1e-5)
    assert isinstance(net[0], nn.Conv2d)


def test_each_switch_alone_changes_outputs():
    net = small_net()
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    ref = net(x)
    dm = dm_default()
    for change in ({"programming_error": True}, {"read_noise": "weight"}, {"stuck": True},
                   {"ir_drop": True}, {"adc_bits": 4, "tile": (32, 16)}, {"dac_bits": 3},
                   {"levels": 4}):  # fmt: skip
        anet = convert(net, AnalogConfig.ideal(dm, **change)).program(0)
        assert not torch.allclose(anet(x), ref, atol=1e-4), change


def test_mapping_paper000_window_and_bit_slicing():
    m = Mapping(2e-6, 40e-6, 0.2, None, 1)
    w = torch.tensor([-0.2, -0.1, 0.0, 0.1, 0.2], dtype=torch.float64)
    g = m.targets(w)
    assert torch.allclose(g[0, 0], torch.tensor([2e-6, 2e-6, 2e-6, 21e-6, 40e-6], dtype=g.dtype))
    assert torch.allclose(g[1, 0], torch.tensor([40e-6, 21e-6, 2e-6, 2e-6, 2e-6], dtype=g.dtype))
    torch.testing.assert_close(m.weights(g), w)
    # 4-bit cells, 2 slices (paper 004): 255 magnitude steps, digits on the two column pairs
    m2 = Mapping(2e-6, 40e-6, 1.0, 16, 2)
    w2 = torch.linspace(-1, 1, 511, dtype=torch.float64)
    g2 = m2.targets(w2)
    torch.testing.assert_close(m2.weights(g2), torch.round(w2 * 255) / 255)
    levels = (g2 - 2e-6) / (38e-6 / 15)
    assert torch.allclose(levels, levels.round(), atol=1e-9)


def test_fixed_wmax_is_checked_not_clipped():
    net = nn.Sequential(nn.Linear(4, 3))
    with torch.no_grad():
        net[0].weight.fill_(0.5)
    with pytest.raises(ConfigError, match="wmax"):
        convert(net, AnalogConfig.ideal(dm_default(), wmax=0.2)).program(0)


def _reference_linear(layer, x, adc_bits, dac_bits):
    """Loop over tiles and output columns: DAC, per-tile partial sums, per-tile ADC."""
    lay = layer.layout
    g = layer.conductances().double()
    gt = layer.g_target.double()
    f = layer.mapping.slice_factors(dtype=torch.float64)
    S, out, _ = g.shape[1], g.shape[2], g.shape[3]
    k = lay.k
    xr = float(x.abs().max())
    signed = bool((x < 0).any())
    qd = converter_levels(dac_bits, signed)
    lo = -1.0 if signed else 0.0
    xq = torch.round((x.double() / xr).clamp(lo, 1) * qd) / qd * xr
    qa = converter_levels(adc_bits, True)
    s = layer.bias_s
    y = torch.zeros(x.shape[0], out, dtype=torch.float64)
    n_tiles = lay.n_tiles_total
    for t in range(n_tiles):
        rows = [i for i in range(k) if i // lay.stride == t]
        has_b = lay.has_bias and lay.bias_tile == t
        for c in range(lay.n_col_tiles):
            cols = list(range(c * lay.per_col, min(out, (c + 1) * lay.per_col)))
            # ADC full scale: worst case of the target cells in this physical tile
            full = 0.0
            for sl in range(S):
                for j in cols:
                    d = (gt[0, sl, j] - gt[1, sl, j]).abs()
                    v = float(d[rows].sum()) * xr + (float(d[k]) * s if has_b else 0.0)
                    full = max(full, v)
            for sl in range(S):
                for j in cols:
                    dg = g[0, sl, j] - g[1, sl, j]
                    p = xq[:, rows] @ dg[rows]
                    if has_b:
                        p = p + s * dg[k]
                    q = torch.round((p / full).clamp(-1, 1) * qa) / qa * full
                    y[:, j] += q * f[sl]
    return y


@pytest.mark.parametrize("tile,slices,levels", [((16, 8), 1, None), ((10, 8), 2, 4),
                                                ((64, 6), 1, 16)])  # fmt: skip
def test_tiled_adc_linear_matches_reference_loop(tile, slices, levels):
    with torch.random.fork_rng():
        torch.manual_seed(5)
        net = nn.Sequential(nn.Linear(37, 11)).double()
    cfg = AnalogConfig.ideal(dm_default(), tile=tile, adc_bits=5, dac_bits=4, slices=slices,
                             levels=levels, programming_error=True, stuck=True)  # fmt: skip
    anet = convert(net, cfg).program(torch.Generator().manual_seed(2))
    x = torch.randn(6, 37, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    layer = anet.layers["0"]
    torch.testing.assert_close(anet(x), _reference_linear(layer, x, 5, 4), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("c_in,row_tiles", [(5, 3), (1, 1)])  # (1, 1): fewer channels than
def test_tiled_adc_conv_matches_reference_loop(c_in, row_tiles):  # the tile holds
    with torch.random.fork_rng():
        torch.manual_seed(6)
        net = nn.Sequential(nn.Conv2d(c_in, 7, 3, padding=1)).double()
    cfg = AnalogConfig.ideal(dm_default(), tile=(20, 8), adc_bits=6, dac_bits=5,
                             programming_error=True)  # fmt: skip
    anet = convert(net, cfg).program(torch.Generator().manual_seed(2))
    layer = anet.layers["0"]
    lay = layer.layout
    assert lay.stride == 18 and lay.n_row_tiles == row_tiles  # two 3x3 kernels per 20-row tile
    x = torch.randn(3, c_in, 6, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    cols = F.unfold(x, 3, padding=1)  # (N, 45, L), rows in (c, kh, kw) order like the weights
    n, rows, L = cols.shape
    flat = cols.transpose(1, 2).reshape(n * L, rows)
    # same tiles as a Linear with stride-18 row tiles: reuse the linear reference
    layer_ref = _reference_linear(layer, flat, 6, 5)  # DAC range of flat == range of x
    expect = layer_ref.reshape(n, L, 7).transpose(1, 2).reshape(n, 7, 6, 6)
    torch.testing.assert_close(anet(x), expect, rtol=1e-9, atol=1e-9)


def test_layout_counts_arrays_like_paper001():
    # paper 001 Fig. 2: FC 2048 x 128 on 256-row tiles -> 8 row tiles; a differential pair
    # per weight on 64 physical columns -> 32 weights per tile -> 4 column tiles
    lay = make_layout(2048, 128, False, (256, 64), 1)
    assert (lay.n_row_tiles, lay.n_col_tiles, lay.n_arrays) == (8, 4, 32)
    # bias row on an extra tile when the last tile is full, otherwise after the last row
    assert make_layout(512, 10, True, (256, 64), 1).bias_tile == 2
    assert make_layout(500, 10, True, (256, 64), 1).bias_tile == 1
    # conv 3x3 with 64 input channels: 28 channels (252 rows) per tile
    lay = make_layout(64 * 9, 64, False, (256, 64), 1, kernel=9)
    assert (lay.stride, lay.n_row_tiles) == (252, 3)


def test_calibrated_adc_and_dac_ranges():
    net = small_net()
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    cfg = AnalogConfig.ideal(dm_default(), tile=(32, 16), adc_bits=12, dac_bits=12,
                             adc_range="calibrated")  # fmt: skip
    anet = convert(net, cfg).program(0)
    with pytest.raises(RuntimeError, match="calibrate"):
        anet(x)
    anet.calibrate([x])
    first = anet.layers["0"]
    assert first.x_range == pytest.approx(float(x.abs().max()))
    assert anet.layers["6"].x_signed is False  # after ReLU: unipolar DAC
    # with ranges fitted to the data, 12-bit converters are close to ideal
    err = (anet(x) - net(x)).abs().max() / net(x).abs().max()
    assert err < 0.02


def test_program_required_and_selective_injection():
    net = small_net()
    x = torch.randn(2, 3, 8, 8)
    anet = convert(net, AnalogConfig(device=dm_default()), inject=["3"])
    with pytest.raises(RuntimeError, match="program"):
        anet(x)
    anet.program(0)
    assert anet.injected == ["3"]
    with pytest.raises(ConfigError):
        anet.set_injection(["nope"])
    anet.set_injection([])
    torch.testing.assert_close(anet(x), net(x))


@pytest.mark.parametrize("mode", ["weight", "output"])
def test_tiled_read_noise_variance_matches_analytic(monkeypatch, mode):
    """Read noise through the tiled (per-tile ADC) path, whose draws are split over several
    generators for large layers: per-output variance, bias row included, as the device model
    predicts (24-bit converters: quantization negligible), per weight (one draw per cell per
    call) and output-referred (per sample)."""
    import math

    from cimlab.sim import periphery

    with torch.random.fork_rng():
        torch.manual_seed(8)
        net = nn.Sequential(nn.Linear(40, 130)).double()
    dm = dm_default()
    cfg = AnalogConfig.ideal(dm, tile=(16, 16), adc_bits=24, read_noise=mode)
    monkeypatch.setattr(periphery, "NOISE_SPLIT", 1024)  # split this small layer's draws too
    anet = convert(net, cfg).program(3)
    layer = anet.layers["0"]
    assert layer.w_tiles.numel() >= 1024
    g = layer.conductances()
    f = layer.mapping.slice_factors(dtype=torch.float64)[0]
    sr = dm.read_noise.sigma
    v_cells = (sr(g[0, 0]) ** 2 + sr(g[1, 0]) ** 2) * f**2
    x = torch.rand(1, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x_aug = torch.cat([x, torch.full((1, 1), layer.bias_s, dtype=x.dtype)], 1)
    expect = ((x_aug**2) @ v_cells.T)[0]
    n = 800
    with torch.no_grad():
        ys = torch.cat([anet(x) for _ in range(n)])
    ratio = ys.var(dim=0) / expect
    se = math.sqrt(2 / (n - 1))
    assert float(ratio.mean()) == pytest.approx(1.0, abs=4.5 * se / math.sqrt(ratio.numel()))
    assert float((ratio - 1).abs().max()) < 5 * se


@pytest.mark.parametrize("mode", ["weight", "output"])
@pytest.mark.parametrize("adc_bits", [8, None], ids=["tiles-adc", "dense"])
def test_split_noise_draws_do_not_depend_on_thread_count(monkeypatch, mode, adc_bits):
    from cimlab.sim import periphery

    monkeypatch.setattr(periphery, "NOISE_SPLIT", 256)
    with torch.random.fork_rng():
        torch.manual_seed(9)
        net = nn.Sequential(nn.Linear(40, 64)).double()
    cfg = AnalogConfig(device=dm_default(), tile=(16, 16), read_noise=mode, adc_bits=adc_bits)
    x = torch.rand(3, 40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    threads = torch.get_num_threads()
    ys = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            anet = convert(net, cfg).program(5)
            ys.append(torch.cat([anet(x), anet(x[:2])]))  # two calls: the workspace reused
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(ys[0], ys[1], rtol=0.0, atol=0.0)
    assert not torch.equal(ys[0][:2], ys[0][3:])  # fresh draws on every call


def test_program_then_age_derive_the_arrays_once_on_first_read(monkeypatch):
    """program() and age() only mark the derived arrays stale: the first forward after them
    computes them once per layer (the ADC ranges too, since the targets changed), to the same
    values as a refresh after each change; later forwards compute nothing."""
    from cimlab.sim.effective import EffectiveArrays

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 30), nn.ReLU(), nn.Linear(30, 10)).eval()
    cfg = AnalogConfig(device=dm_default(), ir_drop=True, adc_bits=8, read_noise=None)
    x = torch.randn(16, 40)
    eager = convert(net, cfg).program(3).prepare()
    y_eager = eager.age(3600.0, temp_c=85.0).prepare()(x)
    calls = []
    real = EffectiveArrays._refresh

    def counting(self, targets=False):
        calls.append(targets)
        return real(self, targets)

    monkeypatch.setattr(EffectiveArrays, "_refresh", counting)
    lazy = convert(net, cfg).program(3).age(3600.0, temp_c=85.0)
    assert calls == []
    torch.testing.assert_close(lazy(x), y_eager, rtol=0, atol=0)
    assert calls == [True, True]
    lazy(x)
    lazy.age(60.0)
    assert calls == [True, True]
    lazy(x)
    assert calls == [True, True, False, False]


def test_a_refresh_that_fails_leaves_the_layer_stale(monkeypatch):
    """A refresh interrupted by an error (e.g. out of memory, Ctrl-C) is not taken as done:
    the next read computes the arrays again, to the values of an uninterrupted refresh."""
    from cimlab.sim.effective import EffectiveArrays

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(40, 30)).eval()
    cfg = AnalogConfig(device=dm_default(), ir_drop=True, adc_bits=8, read_noise=None)
    x = torch.randn(4, 40)
    y_ref = convert(net, cfg).program(3)(x)
    real = EffectiveArrays._refresh
    failures = [RuntimeError("interrupted")]

    def flaky(self, targets=False):
        if failures:
            raise failures.pop()
        return real(self, targets)

    monkeypatch.setattr(EffectiveArrays, "_refresh", flaky)
    anet = convert(net, cfg).program(3)
    with pytest.raises(RuntimeError, match="interrupted"):
        anet(x)
    torch.testing.assert_close(anet(x), y_ref, rtol=0, atol=0)
