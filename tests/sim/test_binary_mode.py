"""Binarized mode (paper 003): bit errors at the condition's BER, XNOR/popcount semantics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimlab.sim import AnalogConfig, BinaryActivation, BinaryLinear, convert, xnor_popcount_linear
from tests.sim.sim_helpers import binomial_tol, dm_default


@pytest.mark.parametrize("condition,structure", [("weak", "1T1R"), ("weak", "2T2R"),
                                                 ("strong", "1T1R")])  # fmt: skip
def test_flip_rate_matches_condition_ber(condition, structure):
    dm = dm_default()
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(BinaryLinear(1024, 1024))
    cfg = AnalogConfig(device=dm, binary_condition=condition, binary_structure=structure)
    anet = convert(net, cfg).program(torch.Generator().manual_seed(11))
    layer = anet.layers["0"]
    ber = dm.binary.condition(condition).ber(structure)
    n = layer.flip_mask.numel()
    rate = float(layer.flip_mask.double().mean())
    assert rate == pytest.approx(ber, abs=binomial_tol(ber, n))
    # programmed bits: sign of the latent weight, flipped where the mask says
    wb = torch.where(net[0].weight >= 0, 1.0, -1.0)
    torch.testing.assert_close(layer.effective_weight(),
                               torch.where(layer.flip_mask, -wb, wb))  # fmt: skip


def test_xnor_popcount_equals_pm1_matmul_through_the_layer():
    dm = dm_default()
    with torch.random.fork_rng():
        torch.manual_seed(1)
        net = nn.Sequential(BinaryActivation(), BinaryLinear(300, 40))
    anet = convert(net, AnalogConfig(device=dm, binary_condition="weak")).program(3)
    x = torch.randn(9, 300, generator=torch.Generator().manual_seed(2))
    y = anet(x)
    xb = torch.where(x >= 0, 1.0, -1.0)
    ref = xnor_popcount_linear(xb, anet.layers["1"].effective_weight())
    torch.testing.assert_close(y, ref.to(y.dtype))


def test_plain_layers_binarized_in_binary_mode_and_injection():
    dm = dm_default()
    with torch.random.fork_rng():
        torch.manual_seed(2)
        net = nn.Sequential(nn.Linear(64, 8, bias=False))
    cfg = AnalogConfig(device=dm, mode="binary", binary_condition="very_strong")
    anet = convert(net, cfg).program(0)
    x = torch.randn(4, 64)
    wb = torch.where(net[0].weight >= 0, 1.0, -1.0)
    flips = anet.layers["0"].flip_mask
    torch.testing.assert_close(anet(x), x @ torch.where(flips, -wb, wb).T)
    anet.set_injection([])
    torch.testing.assert_close(anet(x), net(x))
