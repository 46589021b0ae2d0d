"""aihwkit export: the JSON carries the DeviceModel exactly (in uS), the standalone module's
formulas equal cimlab's, its samplers match cimlab's samplers within sampling error, and (where
aihwkit is installed) an aihwkit network built from the export spreads its outputs as cimlab's
simulation of the same weights does."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from cimlab.cli.main import main
from cimlab.models import DeviceModel
from cimlab.models import aihwkit_noise as an
from cimlab.models.export_aihwkit import aihwkit_config, write_aihwkit_export

ROOT = Path(__file__).resolve().parents[2]
MODELS = {"default": DeviceModel.default(), "techC": DeviceModel.load(ROOT / "models/techC.json")}


@pytest.fixture(params=sorted(MODELS))
def dm(request):
    return MODELS[request.param]


def test_formulas_of_the_export_equal_the_device_model(dm):
    cfg = json.loads(json.dumps(aihwkit_config(dm, temp_k=358.15)))   # through JSON text
    g = np.linspace(0.0, 1.5 * dm.window.g_max, 301)
    g_us = g * 1e6
    np.testing.assert_allclose(an.sigma_us(cfg["programming"], g_us) * 1e-6,
                               dm.programming.sigma(g), rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(an.sigma_us(cfg["read_noise"], g_us) * 1e-6,
                               dm.read_noise.sigma(g), rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(an.rate_us2(cfg["relaxation"], g_us) * 1e-12,
                               dm.relaxation.rate(g), rtol=1e-12, atol=1e-30)
    np.testing.assert_allclose(an.drift_us(cfg["relaxation"], g_us) * 1e-6,
                               dm.relaxation.drift(g), rtol=1e-12, atol=1e-20)
    for t in (1.0, 3600.0, 1e6):
        assert an.equivalent_time_s(cfg, t) == pytest.approx(
            float(dm.retention.equivalent_time(t, 358.15)), rel=1e-12)
        assert an.decades(cfg["relaxation"], t) == pytest.approx(
            float(dm.relaxation.decades(t)), rel=1e-12)
    assert cfg["g_max_us"] == pytest.approx(dm.window.g_max * 1e6, rel=1e-15)
    assert cfg["programming"]["mean_offset_us"] == pytest.approx(
        dm.programming.mean_offset * 1e6, rel=1e-15, abs=0)
    assert cfg["inference"]["acceleration"] == pytest.approx(
        float(dm.retention.acceleration(358.15)), rel=1e-12)
    assert cfg["not_exported"] == ["stuck", "wire", "binary"]


def test_exported_samplers_match_cimlab_samplers(dm):
    """Mean and std of the standalone module's draws (torch) vs DeviceModel's (NumPy), per
    level, 20,000 devices each: within 5 standard errors."""
    torch = pytest.importorskip("torch")
    cfg = aihwkit_config(dm, temp_k=358.15)
    n, t_s = 20_000, 3600.0
    gen_t = torch.Generator().manual_seed(1)
    rng = np.random.default_rng(1)
    for g_target in dm.window.level_conductances()[[0, len(dm.window.level_conductances()) // 2,
                                                     -1]]:
        target = torch.full((n,), g_target * 1e6, dtype=torch.float64)
        ours = an.sample_inference_us(cfg, an.sample_programmed_us(cfg, target, gen_t), t_s,
                                      gen_t).numpy() * 1e-6
        g = dm.sample_programmed(np.full(n, g_target), rng)
        theirs = dm.sample_read(dm.sample_aged(g, t_s, 358.15, rng), rng)
        sd = theirs.std()
        assert abs(ours.mean() - theirs.mean()) < 5 * sd * math.sqrt(2 / n), g_target
        # std of a sample std ~ sd / sqrt(2 n) (normal); 5 sigma on the difference of two
        assert abs(ours.std() - sd) < 5 * sd * math.sqrt(1 / n) + 1e-12, g_target


def test_cli_writes_json_and_standalone_module(tmp_path, capsys):
    out = tmp_path / "aihw"
    assert main(["model-export", str(ROOT / "models/techC.json"), "--to", "aihwkit",
                 "--out", str(out), "--temp-c", "85"]) == 0
    js, py = out / "techC.aihwkit.json", out / "cimlab_aihwkit.py"
    assert js.exists() and py.exists()
    assert "techC.aihwkit.json" in capsys.readouterr().out
    text = py.read_text()
    assert not re.search(r"^\s*(from|import) cimlab[ .]", text, re.M)   # standalone
    spec = importlib.util.spec_from_file_location("cimlab_aihwkit_copy", py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cfg = mod.load_config(js)
    assert cfg["inference"]["temp_k"] == pytest.approx(358.15)
    dm = MODELS["techC"]
    assert cfg["relaxation"]["k_peak_us2"] == pytest.approx(dm.relaxation.k_peak * 1e12,
                                                           rel=1e-15)
    assert cfg["provenance"]["source"] == dm.provenance.source


def test_cli_bad_model_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["model-export", str(bad), "--to", "aihwkit", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.json" in err[0]
    assert not (tmp_path / "bad.aihwkit.json").exists()


def test_write_export_returns_both_files(tmp_path):
    paths = write_aihwkit_export(DeviceModel.default(), tmp_path, "dflt")
    assert [p.name for p in paths] == ["dflt.aihwkit.json", "cimlab_aihwkit.py"]


def _spread_cimlab(dm, weight, x, t_s, temp_c, trials):
    """Std over programmings of each output of cimlab's simulator (ideal periphery, no stuck
    cells: only the effects aihwkit's noise model holds)."""
    import torch

    from cimlab.sim import AnalogConfig, convert

    net = torch.nn.Sequential(torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False))
    net = net.double()
    net[0].weight.data = weight.clone()
    cfg = AnalogConfig(device=dm, tile=None, adc_bits=None, dac_bits=None, levels=None,
                       stuck=False, read_noise="weight", ir_drop=False)
    anet = convert(net, cfg)
    outs = []
    for k in range(trials):
        anet.program(torch.Generator().manual_seed(1000 + k))
        anet.age(t_s, temp_c=temp_c)
        with torch.no_grad():
            outs.append(anet(x).double())
    return torch.stack(outs).std(dim=0)


def _spread_aihwkit(cfg, weight, x, t_s, trials):
    import torch
    from aihwkit.nn import AnalogLinear

    rpu = an.rpu_config(cfg)
    layer = AnalogLinear(weight.shape[1], weight.shape[0], bias=False, rpu_config=rpu)
    layer.set_weights(weight.float())
    layer.eval()
    outs = []
    for k in range(trials):
        torch.manual_seed(2000 + k)     # aihwkit draws from torch's global generator
        layer.program_analog_weights()
        layer.drift_analog_weights(t_s)
        with torch.no_grad():
            outs.append(layer(x.float()).double())
    return torch.stack(outs).std(dim=0)


def test_aihwkit_network_spread_matches_cimlab_simulator():
    """Where aihwkit is installed: one linear layer (64 -> 16), weights in [-1, 1], one input;
    after 1 h at 85 C, the std over 300 programmings of each output, aihwkit (built from the
    export) vs cimlab's simulator (same DeviceModel). The mean ratio over the 16 outputs must
    be 1 within 4 standard errors (std of a sample std: s / sqrt(2 (n - 1)))."""
    pytest.importorskip("aihwkit", reason="aihwkit not installed (pip install aihwkit==1.1.0 "
                        "on Python 3.11; see docs/export.md)")
    torch = pytest.importorskip("torch")
    dm = MODELS["techC"]
    gen = torch.Generator().manual_seed(5)
    weight = torch.rand(16, 64, generator=gen, dtype=torch.float64) * 2 - 1
    x = torch.rand(1, 64, generator=gen, dtype=torch.float64)
    trials, t_s, temp_c = 300, 3600.0, 85.0
    cfg = aihwkit_config(dm, temp_k=temp_c + 273.15)
    ours = _spread_aihwkit(cfg, weight, x, t_s, trials)
    ref = _spread_cimlab(dm, weight, x, t_s, temp_c, trials)
    ratio = (ours / ref).flatten()
    se = math.sqrt(2.0 / (2 * (trials - 1))) / math.sqrt(ratio.numel())
    print(f"aihwkit/cimlab output std ratio: {ratio.mean():.4f} +- {se:.4f} "
          f"(per output {ratio.min():.3f}..{ratio.max():.3f})")
    assert abs(float(ratio.mean()) - 1.0) < 4 * se
