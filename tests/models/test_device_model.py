"""DeviceModel API: defaults, samplers (NumPy and torch), statistics of the samplers."""

import math
import subprocess
import sys

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.models import DeviceModel, ProgrammingError, ReadNoise, Relaxation, StuckAt


def test_import_does_not_import_torch():
    code = (
        "import sys, cimlab.models; cimlab.models.DeviceModel.default(); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_defaults_cite_literature_values():
    dm = DeviceModel.default()
    assert (dm.window.g_min, dm.window.g_max) == (2e-6, 40e-6)  # paper 000
    assert dm.programming.sigma(20e-6) == pytest.approx(0.07 * 38e-6)  # paper 000
    rel = dm.read_noise.sigma(np.array([2e-6, 40e-6])) / np.array([2e-6, 40e-6])
    assert rel == pytest.approx([0.04, 0.01], rel=1e-3)  # paper 000, 0.01-0.04
    # DESIGN.md: 0.35 uS after verify -> ~2.3 uS at 1 s, ~3.8 uS at 1e5 s
    for t, want in ((1.0, 2.3e-6), (1e5, 3.8e-6)):
        s = math.sqrt(0.35e-6**2 + float(dm.relaxation.variance(20e-6, t)))
        assert s == pytest.approx(want, rel=0.03)
    assert dm.stuck.p_stuck_on + dm.stuck.p_stuck_off == pytest.approx(0.01)  # paper 004
    assert dm.stuck.p_stuck_off / 0.01 == pytest.approx(0.162)
    assert dm.wire.r_segment_ohm == 2.0 and dm.wire.r_sigma_ohm**2 == pytest.approx(0.5)
    table = {"very_strong": 1e-6, "strong": 9.7e-5, "weak": 3.3e-2}  # paper 003 Table I
    for c in dm.binary.conditions:
        assert c.model_ber_1t1r() == pytest.approx(table[c.name], rel=1e-3)
        assert c.model_ber_2t2r() < c.model_ber_1t1r()
    assert dm.retention.acceleration(298.15) == pytest.approx(1.0)
    # 1.1 eV: 150 C accelerates room temperature by exp(1.1/kB (1/298.15 - 1/423.15))
    assert dm.retention.acceleration(423.15) == pytest.approx(
        math.exp(1.1 / 8.617333262e-5 * (1 / 298.15 - 1 / 423.15))
    )


def test_numpy_samplers_match_their_moments():
    dm = DeviceModel.default()
    rng = np.random.default_rng(1)
    n = 200_000
    g = np.full(n, 20e-6)
    for sample, sigma in (
        (dm.sample_programmed(g, rng), dm.programming.sigma(20e-6)),
        (dm.sample_read(g, rng), dm.read_noise.sigma(20e-6)),
    ):
        # std of a sample std ~ sigma / sqrt(2n); 5 of them
        assert sample.std() == pytest.approx(sigma, abs=5 * sigma / math.sqrt(2 * n))
        assert abs(sample.mean() - 20e-6) < 5 * sigma / math.sqrt(n)
    aged = dm.sample_aged(g, 3600.0, 358.15, rng)
    t_eq = dm.retention.equivalent_time(3600.0, 358.15)
    sig = float(dm.relaxation.sigma(20e-6, t_eq))
    assert aged.std() == pytest.approx(sig, abs=5 * sig / math.sqrt(2 * n))
    shift = float(dm.relaxation.mean_shift(20e-6, t_eq))
    assert abs(aged.mean() - 20e-6 - shift) < 5 * sig / math.sqrt(n)


def test_stuck_mask_fractions():
    dm = DeviceModel.default()
    m = dm.sample_stuck((1000, 1000), np.random.default_rng(2))
    assert m.dtype == np.int8
    n = m.size
    for value, p in ((1, dm.stuck.p_stuck_on), (-1, dm.stuck.p_stuck_off)):
        k = np.count_nonzero(m == value)
        assert abs(k - n * p) < 5 * math.sqrt(n * p * (1 - p))


def test_torch_samplers_use_torch_generator():
    torch = pytest.importorskip("torch")
    dm = DeviceModel.default()
    g = torch.full((50_000,), 20e-6, dtype=torch.float64)
    a = dm.sample_programmed(g, torch.Generator().manual_seed(3))
    b = dm.sample_programmed(g, torch.Generator().manual_seed(3))
    assert isinstance(a, torch.Tensor) and torch.equal(a, b)
    assert float(a.std()) == pytest.approx(2.66e-6, rel=0.03)
    assert dm.sample_read(g, torch.Generator().manual_seed(4)).dtype == torch.float64
    aged = dm.sample_aged(g, 10.0, 300.0, torch.Generator().manual_seed(5))
    assert aged.shape == g.shape
    m = dm.sample_stuck((10, 10), torch.Generator().manual_seed(6))
    assert m.dtype == torch.int8
    mask = dm.binary.sample_bit_errors("weak", (1000,), torch.Generator().manual_seed(7))
    assert mask.dtype == torch.bool
    with pytest.raises(TypeError, match=r"torch\.Generator"):
        dm.sample_read(g, np.random.default_rng(0))


def test_numpy_input_needs_numpy_generator():
    dm = DeviceModel.default()
    with pytest.raises(TypeError, match=r"numpy\.random\.Generator"):
        dm.sample_read(np.ones(3) * 1e-5, 42)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (ProgrammingError, {"form": "constant", "s1": 1e-7}, "s1"),
        (ReadNoise, {"form": "polynomial", "s0": 0.0, "s1": 1e-6, "s2": -2e-6}, "s0"),
        (Relaxation, {"t0_s": -1.0}, "t0_s"),
        (StuckAt, {"p_stuck_on": 0.7, "p_stuck_off": 0.5}, "p_stuck_off"),
    ],
)
def test_effects_validate(cls, kwargs, field):
    with pytest.raises(ConfigError) as exc:
        cls(**kwargs)
    assert exc.value.field == field


def test_tabulated_relaxation_rate_numpy_and_torch():
    """Form "table": k(g) piecewise linear through kt0..kt8 at g/g_ref = 0, 0.1875, .., 1.5,
    flat beyond; the same numbers from NumPy and torch; other forms must leave kt* at 0."""
    import torch

    from cimlab.errors import ConfigError
    from cimlab.models.effects import TABLE_X, Relaxation

    kt = {f"kt{i}": (i + 1) * 1e-13 for i in range(9)}
    r = Relaxation(form="table", k0=0.0, **kt)
    g = np.array([0.0, 0.5 * TABLE_X[1] * 40e-6, 40e-6, 60e-6, 90e-6])
    want = np.array([1e-13, 1.5e-13, np.interp(1.0, TABLE_X, np.arange(1, 10) * 1e-13),
                     9e-13, 9e-13])
    assert np.allclose(r.rate(g), want)
    assert np.allclose(r.rate(torch.tensor(g)).numpy(), want)
    with pytest.raises(ConfigError, match="kt3"):
        Relaxation(form="peaked", k0=0.0, k_peak=1e-12, kt3=1e-13)
    with pytest.raises(ConfigError, match="k0"):
        Relaxation(form="table", k0=1e-12, **kt)


def test_read_noise_not_counted_twice():
    """A programming sigma fitted without a read-noise measurement already holds one read's
    noise (read_noise="included"): predicted_moments then adds no read noise on top."""
    dm = DeviceModel.default()
    g = np.array([5e-6, 20e-6])
    _, s_ex = dm.predicted_moments(g, 0.0)
    _, s_no_read = dm.predicted_moments(g, 0.0, include_read=False)
    inc = dm.replace(programming=ProgrammingError(read_noise="included"))
    _, s_in = inc.predicted_moments(g, 0.0)
    assert np.all(s_ex > s_no_read)
    assert np.allclose(s_in, s_no_read)
    assert DeviceModel.load(__import__("pathlib").Path(__file__).parents[2] / "models"
                            / "techC.json").programming.read_noise == "included"
