"""Global drift compensation: exact on a pure gain drift, hooks removable, analog layers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimlab.mitigation.drift_compensation import DriftCompensation, crossbar_layers


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)).eval()


@pytest.mark.parametrize("mode", ["scale", "affine"])
def test_pure_gain_drift_is_undone_exactly(mode):
    net = _net()
    x = torch.rand(32, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        y0 = net(x)
    dc = DriftCompensation.capture(net, x, mode=mode)
    with torch.no_grad():  # every conductance decays by a layer-wide factor
        net[0].weight.mul_(0.7)
        net[2].weight.mul_(0.4)
        drifted = net(x)
    ab = dc.apply(net)
    assert ab["0"][0] == pytest.approx(1 / 0.7, rel=1e-5)
    assert ab["2"][0] == pytest.approx(1 / 0.4, rel=1e-5)
    assert abs(ab["0"][1]) < 1e-6
    with torch.no_grad():
        torch.testing.assert_close(net(x), y0, rtol=1e-5, atol=1e-6)
    dc.remove()
    with torch.no_grad():
        torch.testing.assert_close(net(x), drifted)


def test_affine_mode_removes_an_offset():
    net = _net()
    x = torch.rand(16, 6, generator=torch.Generator().manual_seed(2))
    dc = DriftCompensation.capture(net, x, layers=["2"], mode="affine")
    with torch.no_grad():
        y0 = net(x)
    hook = net[2].register_forward_hook(lambda _m, _i, y: 0.5 * y + 0.3)  # gain + offset drift
    dc.apply(net)
    with torch.no_grad():
        torch.testing.assert_close(net(x), y0, rtol=1e-5, atol=1e-5)
    hook.remove()
    dc.remove()


def test_finds_analog_layers_not_their_digital_base(trained):
    from cimlab.sim.config import AnalogConfig
    from cimlab.sim.convert import convert

    anet = convert(trained("paper000-cnn", None, 6, 0), AnalogConfig.ideal())
    names = crossbar_layers(anet)
    assert names == ["net." + n for n in anet.layer_names]
    with pytest.raises(ValueError, match="mode"):
        DriftCompensation({}, "gain")
