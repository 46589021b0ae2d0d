"""1/f read noise in the simulator (issue 12 item 4): a techA-like fitted spectrum splits into
a per-cell offset frozen during an evaluation (redrawn at every ``age()``) and a part that
varies from forward to forward (white + faster flicker); without a 1/f part the simulator is
exactly what it was.

Expected variances are computed independently of cimlab.sim.flicker's closed form (numerical
quadrature of ``A(g) f^-alpha`` with the model's own ``flicker_amplitude`` / ``white_sigma``).
Tolerances come from the sample sizes (fixed seeds): a variance estimated from n draws has a
relative standard error sqrt(2 / n) (known zero mean) or sqrt(2 / (n - 1)).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate
from torch import nn

import cimlab.sim.flicker as flicker
from cimlab.models import ConductanceWindow, DeviceModel
from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum
from cimlab.sim import AnalogConfig, convert

#: techA (Levy et al.) read-noise spectrum as fitted in docs/physics.md ("The techa profile"):
#: white sqrt((0.142 uS)^2 + (0.229 uS g/253 uS)^2) at 200 Hz, 1/f peak 1.93e-13 S^2/Hz at
#: 126 uS (width 54 uS), one exponent 1.13, fitted over 0.15-160 Hz
TECHA_SPECTRUM = ReadNoiseSpectrum(
    g_ref=253e-6, bandwidth_hz=200.0, s0=0.142e-6, s1=0.229e-6, a_peak=1.93e-13,
    g_peak=126e-6, g_width=54e-6, alpha0=1.13, alpha1=0.0, f_lo_hz=0.15, f_hi_hz=160.0,
    source="techA fit, docs/physics.md")  # fmt: skip
T_EVAL = 1.0  # AnalogConfig's default evaluation duration [s]


def techa_model(spectrum: ReadNoiseSpectrum = TECHA_SPECTRUM) -> DeviceModel:
    """Default model on techA's 7.5-240 uS window with its read-noise spectrum."""
    return DeviceModel.default().replace(
        window=ConductanceWindow(g_min=7.5e-6, g_max=240e-6, levels=32),
        read_noise_spectrum=spectrum)  # fmt: skip


def linear(n_in: int, n_out: int, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(n_in, n_out)).double().eval()


def flicker_var(spec: ReadNoiseSpectrum, g: torch.Tensor, f1: float, f2: float) -> torch.Tensor:
    """``int_f1^f2 A(g) f^-alpha df`` [S^2] by quadrature (constant exponent)."""
    if not f2 > f1:
        return torch.zeros_like(g)
    a = float(spec.alpha0)
    integral, _ = integrate.quad(lambda f: f**-a, f1, f2, epsabs=0.0, epsrel=1e-12)
    amp = torch.as_tensor(spec.flicker_amplitude(g.numpy()), dtype=g.dtype)
    return amp * integral


def pair_parts(layer, spec: ReadNoiseSpectrum, t_eval: float = T_EVAL):
    """Frozen and per-forward variances [weight^2] of every pair (out, rows), the noiseless
    weights (out, rows) from the cells, and the slice factor."""
    g = layer.conductances()  # (2, 1, out, rows)
    f = float(layer.mapping.slice_factors(dtype=torch.float64)[0])
    f_t = 1.0 / t_eval
    f_min = max(spec.f_lo_hz, 1.0 / layer.t_eq_s) if layer.t_eq_s > 0 else math.inf
    frozen = sum(flicker_var(spec, g[i, 0], f_min, f_t) for i in (0, 1)) * f**2
    white = sum(torch.as_tensor(spec.white_sigma(g[i, 0].numpy())) ** 2 for i in (0, 1))
    fast = (white + sum(flicker_var(spec, g[i, 0], f_t, spec.bandwidth_hz) for i in (0, 1))) * f**2
    return frozen, fast, (g[0, 0] - g[1, 0]) * f


def aug(layer, x: torch.Tensor) -> torch.Tensor:
    """Inputs with the bias row's input ``bias_s`` appended."""
    return torch.cat([x, torch.full((x.shape[0], 1), layer.bias_s, dtype=x.dtype)], 1)


def test_band_integrals_match_quadrature():
    for a in (0.7, 1.0, 1.0 + 1e-14, 1.13, 1.6):
        want, _ = integrate.quad(lambda f, a=a: f**-a, 0.15, 37.0, epsabs=0.0, epsrel=1e-12)
        assert flicker.band_integral(a, 0.15, 37.0) == pytest.approx(want, rel=1e-10)
        got = flicker.band_integral(torch.tensor([a], dtype=torch.float64), 0.15, 37.0)
        assert float(got[0]) == pytest.approx(want, rel=1e-10)
    assert flicker.band_integral(1.1, 2.0, 1.0) == 0.0
    # the bands of an evaluation: frozen from max(f_lo, 1/t) to 1/T, per forward up to B
    s = TECHA_SPECTRUM
    assert flicker.bands(s, 1.0, 3600.0) == ((0.15, 1.0), (1.0, 200.0))
    assert flicker.bands(s, 1.0, 2.0) == ((0.5, 1.0), (1.0, 200.0))
    assert flicker.bands(s, 1.0, 0.0)[0][0] == math.inf  # just programmed: nothing frozen
    assert flicker.bands(s, 100.0, 3600.0) == ((0.15, 0.01), (0.15, 200.0))
    assert flicker.bands(s, 1e-3, 3600.0) == ((0.15, 200.0), (200.0, 200.0))
    # a level-dependent exponent: every cell its own integral
    spec = dataclasses.replace(TECHA_SPECTRUM, alpha0=0.9, alpha1=0.4)
    g = torch.tensor([[9e-6, 85e-6], [134e-6, 240e-6]], dtype=torch.float64)
    gn = torch.flip(g, (1,))
    fast_v, frozen_v = flicker.pair_variances(spec, g, gn, (0.15, 1.0), (1.0, 200.0))
    for idx in ((0, 0), (0, 1), (1, 0), (1, 1)):
        want_fz, want_fa = 0.0, 0.0
        for cell in (float(g[idx]), float(gn[idx])):
            amp, al = float(spec.flicker_amplitude(cell)), float(spec.alpha(cell))
            want_fz += amp * integrate.quad(lambda f, al=al: f**-al, 0.15, 1.0)[0]
            want_fa += amp * integrate.quad(lambda f, al=al: f**-al, 1.0, 200.0)[0]
            want_fa += float(spec.white_sigma(cell)) ** 2
        assert float(frozen_v[idx]) == pytest.approx(want_fz, rel=1e-9)
        assert float(fast_v[idx]) == pytest.approx(want_fa, rel=1e-9)


def test_frozen_offset_variance_and_redraw_at_every_age():
    """(2) The slow flicker is a per-cell offset of the effective weights with the frozen
    band's variance; none right after programming (nothing slower than 1/t has moved), a new
    independent draw at every age()."""
    net = linear(48, 256, seed=1)
    anet = convert(net, AnalogConfig.ideal(techa_model(), read_noise="weight"))
    anet.program(torch.Generator().manual_seed(7))
    layer = anet.layers["0"]

    def offsets():
        frozen, _fast, w_true = pair_parts(layer, TECHA_SPECTRUM)
        w_eff = torch.cat([layer.effective_weight(),
                           (layer.effective_bias() / layer.bias_s)[:, None]], 1)  # fmt: skip
        return w_eff - w_true, frozen

    d0, frozen0 = offsets()
    assert float(frozen0.abs().max()) == 0.0
    torch.testing.assert_close(d0, torch.zeros_like(d0), rtol=0.0, atol=1e-12)
    zs = []
    for _ in range(2):
        anet.age(60.0, temp_c=25.0)
        d, frozen = offsets()
        z = (d / frozen.sqrt()).flatten()
        n = z.numel()
        assert abs(float(z.mean())) < 4.5 / math.sqrt(n)
        assert float((z * z).mean()) == pytest.approx(1.0, abs=4.5 * math.sqrt(2 / n))
        zs.append(z)
    # a new time point, a new offset: uncorrelated with the previous one
    r = float(torch.corrcoef(torch.stack(zs))[0, 1])
    assert abs(r) < 4.5 / math.sqrt(zs[0].numel())


def test_mean_of_repeated_forwards_levels_off_at_the_frozen_part():
    """(1) Within one evaluation the mean of n forwards has variance frozen + fast / n: it
    levels off at the frozen part instead of falling as 1/n. Samples: 256 independent
    outputs x 8 evaluations (age() between them)."""
    net = linear(48, 256, seed=2)
    anet = convert(net, AnalogConfig.ideal(techa_model(), read_noise="weight"))
    anet.program(torch.Generator().manual_seed(3))
    layer = anet.layers["0"]
    x = torch.rand(1, 48, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    xa2 = aug(layer, x) ** 2
    ns, n_eval, n_max = (1, 16, 256), 8, 256
    z2 = {n: [] for n in ns}
    white_only = []
    for _ in range(n_eval):
        anet.age(60.0, temp_c=25.0)
        frozen, fast, w_true = pair_parts(layer, TECHA_SPECTRUM)
        y0 = aug(layer, x) @ w_true.T  # (1, out): no read noise at all
        with torch.no_grad():
            ys = torch.cat([anet(x) for _ in range(n_max)])  # (n_max, out)
        v_frozen, v_fast = (xa2 @ frozen.T)[0], (xa2 @ fast.T)[0]
        for n in ns:
            d = ys[:n].mean(0) - y0[0]
            z2[n].append(d**2 / (v_frozen + v_fast / n))
            if n == n_max:  # what a variance falling as 1/n would predict
                white_only.append(d**2 / ((v_frozen + v_fast) / n))
    for n in ns:
        r = torch.cat(z2[n])
        tol = 4.5 * math.sqrt(2 / r.numel())
        assert float(r.mean()) == pytest.approx(1.0, abs=tol), n
    # the 1/n law underestimates the variance of the 256-read mean by a factor ~90 here
    assert float(torch.cat(white_only).mean()) > 20.0


@pytest.mark.parametrize("tiled", [False, True], ids=["dense", "tiles-adc"])
@pytest.mark.parametrize("mode", ["weight", "output"])
def test_per_forward_variance_is_white_plus_fast_flicker(mode, tiled):
    """(4) From forward to forward within one evaluation the outputs vary by the white part
    plus the flicker faster than 1 / eval_duration_s (not dm.read_noise: counted once); their
    mean is the frozen-offset output. Dense and through per-tile 24-bit ADCs."""
    net = linear(40, 128, seed=4)
    tiles = {"tile": (16, 16), "adc_bits": 24} if tiled else {}
    t_eval = 0.25
    cfg = AnalogConfig.ideal(techa_model(), read_noise=mode, eval_duration_s=t_eval, **tiles)
    anet = convert(net, cfg).program(torch.Generator().manual_seed(5))
    anet.age(30.0, temp_c=25.0)
    layer = anet.layers["0"]
    frozen, fast, _ = pair_parts(layer, TECHA_SPECTRUM, t_eval)
    x = torch.randn(1, 40, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expect = ((aug(layer, x) ** 2) @ fast.T)[0]
    with torch.no_grad():
        if mode == "output":  # independent per sample: one batch of n copies
            n = 1200
            ys = anet(x.repeat(n, 1))
        else:  # one draw per forward call
            n = 400 if tiled else 1200
            ys = torch.cat([anet(x) for _ in range(n)])
    ratio = ys.var(dim=0) / expect
    se = math.sqrt(2 / (n - 1))
    assert float(ratio.mean()) == pytest.approx(1.0, abs=4.5 * se / math.sqrt(ratio.numel()))
    assert float((ratio - 1).abs().max()) < 5.5 * se
    # the mean over forwards is the output of the frozen-offset weights
    y_eff = x @ layer.effective_weight().T + layer.effective_bias()
    tol = 4.5 * (expect / n).sqrt()
    assert bool(((ys.mean(0) - y_eff[0]).abs() < tol).all())
    # and that differs from the noiseless output by the frozen part (a 1 s .. 4 s band here)
    _, _, w_true = pair_parts(layer, TECHA_SPECTRUM, t_eval)
    v_frozen = ((aug(layer, x) ** 2) @ frozen.T)[0]
    dz = ((y_eff[0] - (aug(layer, x) @ w_true.T)[0]) ** 2 / v_frozen)
    assert float(dz.mean()) == pytest.approx(1.0, abs=4.5 * math.sqrt(2 / dz.numel()))


@pytest.mark.parametrize("mode", ["weight", "output"])
def test_no_flicker_part_is_todays_read_noise_bit_for_bit(mode):
    """(3) a_peak = 0: the spectrum (whatever its white part) and eval_duration_s are ignored,
    the read noise is dm.read_noise's, the outputs of a seed are equal bit for bit."""
    net = linear(70, 30, seed=6)
    x = torch.randn(8, 70, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    default = DeviceModel.default()
    assert default.read_noise_spectrum.a_peak == 0.0
    white_only = default.replace(
        read_noise_spectrum=dataclasses.replace(TECHA_SPECTRUM, a_peak=0.0))
    outs = []
    for dm, t_eval in ((default, 1.0), (white_only, 1e-3)):
        cfg = AnalogConfig(device=dm, read_noise=mode, tile=(32, 16), eval_duration_s=t_eval)
        anet = convert(net, cfg).program(torch.Generator().manual_seed(9))
        with torch.no_grad():
            got = [anet(x), anet(x)]
            anet.age(3600.0, temp_c=85.0)
            got += [anet(x), anet.layers["0"].effective_weight()]
        outs.append(got)
        layer = anet.layers["0"]
        g = layer.conductances()
        f = layer.mapping.slice_factors(dtype=torch.float64)[0]
        sr = dm.read_noise.sigma
        var = (sr(g[0, 0]) ** 2 + sr(g[1, 0]) ** 2) * f**2  # (out, rows): dm.read_noise's
        if mode == "weight":
            got_sd = layer._from_tiles_layout(layer.sd_tiles, 1)[0].reshape(30, 70)
            torch.testing.assert_close(got_sd, var[:, :70].sqrt(), rtol=1e-12, atol=0.0)
        else:
            got_var = layer._from_tiles_layout(layer.var_tiles, 1)[0].reshape(30, 70)
            torch.testing.assert_close(got_var, var[:, :70], rtol=1e-12, atol=0.0)
    for a, b in zip(*outs, strict=True):
        assert torch.equal(a, b)


def test_eval_duration_validated():
    from cimlab.errors import ConfigError

    with pytest.raises(ConfigError, match="eval_duration_s"):
        AnalogConfig(eval_duration_s=0.0)
    assert np.isclose(AnalogConfig().eval_duration_s, 1.0)


def test_one_read_variance_is_white_plus_the_whole_band():
    """One read at a random instant sees the white part and the whole fitted 1/f band
    (numerical integral of the PSD over f_lo .. B)."""
    spec = TECHA_SPECTRUM
    g = torch.tensor([20e-6, 126e-6, 230e-6], dtype=torch.float64)
    got = flicker.one_read_variance(spec, g)
    for gi, v in zip(g.tolist(), got.tolist(), strict=True):
        a = spec.a_peak * math.exp(-0.5 * ((gi - spec.g_peak) / spec.g_width) ** 2)
        band, _ = integrate.quad(lambda f, a=a: a * f ** -spec.alpha0, spec.f_lo_hz,
                                 spec.bandwidth_hz)
        white = spec.s0**2 + (spec.s1 * gi / spec.g_ref) ** 2
        assert v == pytest.approx(white + band, rel=1e-9)


def test_hasgd_read_noise_uses_the_spectrum():
    """HA-SGD's read=True adds one read's variance from the spectrum when it has a 1/f part
    (techA at its peak: ~1.1 uS of flicker against 0.2 uS white); without one, dm.read_noise
    as before."""
    from cimlab.mitigation.hasgd import DeviceNoise

    g = torch.tensor([126e-6], dtype=torch.float64)
    dm = techa_model()
    prog = torch.as_tensor(dm.programming.sigma(g)) ** 2
    with_spec = DeviceNoise(dm, read=True).cell_sigma(g) ** 2
    assert with_spec.item() == pytest.approx(
        (prog + flicker.one_read_variance(TECHA_SPECTRUM, g)).item(), rel=1e-12)
    white_only = techa_model(dataclasses.replace(TECHA_SPECTRUM, a_peak=0.0))
    plain = DeviceNoise(white_only, read=True).cell_sigma(g) ** 2
    assert plain.item() == pytest.approx(
        (prog + torch.as_tensor(white_only.read_noise.sigma(g)) ** 2).item(), rel=1e-12)
    # the 1/f band dominates the spectrum's white part at the peak level
    assert with_spec.item() - prog.item() > 10 * flicker.white_variance(TECHA_SPECTRUM, g).item()
