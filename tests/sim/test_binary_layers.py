"""Binary layers: sign + straight-through estimator, bit flips in forward and backward."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from cimlab.errors import ConfigError

# cimlab.sim re-exports the function binary_layers(), which shadows the submodule attribute
bl = importlib.import_module("cimlab.sim.binary_layers")


def test_sign_ste_values_and_gradient():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    y = bl.sign_ste(x)
    assert y.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0]
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 1.0, 1.0, 1.0, 0.0]  # hard-tanh derivative


def test_binary_linear_uses_sign_of_weights():
    torch.manual_seed(0)
    layer = bl.BinaryLinear(6, 3)
    x = torch.randn(4, 6)
    expected = x @ torch.sign(layer.weight).T
    torch.testing.assert_close(layer(x), expected)
    assert set(layer.binary_weight().unique().tolist()) <= {-1.0, 1.0}
    conv = bl.BinaryConv2d(2, 4, 3, padding=1)
    xi = torch.randn(1, 2, 5, 5)
    ref = torch.nn.functional.conv2d(xi, torch.sign(conv.weight), padding=1)
    torch.testing.assert_close(conv(xi), ref)


def test_training_flips_follow_ber_and_reach_backward():
    torch.manual_seed(0)
    layer = bl.BinaryLinear(200, 100, flip_prob=0.1)
    layer.generator = torch.Generator().manual_seed(3)
    wb = layer.binary_weight()
    layer.train()
    w_err = layer.effective_weight().detach()
    frac = float((w_err != wb).float().mean())
    n = wb.numel()
    assert abs(frac - 0.1) < 4 * math.sqrt(0.1 * 0.9 / n)  # binomial 4-sigma bound
    # fresh flips each forward pass while training, none in eval mode
    assert not torch.equal(w_err, layer.effective_weight().detach())
    layer.eval()
    assert torch.equal(layer.effective_weight(), wb)
    # backward through the SAME erroneous weights (paper 003 section IV)
    layer.train()
    layer.generator = torch.Generator().manual_seed(7)
    x = torch.randn(8, 200, requires_grad=True)
    layer(x).sum().backward()
    layer.generator = torch.Generator().manual_seed(7)
    w_same = layer.effective_weight().detach()
    torch.testing.assert_close(x.grad, torch.ones(8, 100) @ w_same)
    flips = (w_same != wb).float()
    # gradient to the latent weights is the chain rule through the flip
    expected = (torch.ones(8, 100).T @ x.detach()) * (1 - 2 * flips)
    torch.testing.assert_close(layer.weight.grad, expected)


def test_fixed_flips_persist_and_count():
    torch.manual_seed(0)
    net = torch.nn.Sequential(bl.BinaryLinear(50, 40), torch.nn.ReLU(), bl.BinaryLinear(40, 10))
    net.eval()
    wb = [m.binary_weight() for m in bl.binary_layers(net)]
    n = bl.inject_bit_errors(net, 0.2, torch.Generator().manual_seed(1))
    flipped = sum(
        int((m.effective_weight() != w).sum())
        for m, w in zip(bl.binary_layers(net), wb, strict=True)
    )
    assert n == flipped
    total = 50 * 40 + 40 * 10
    assert abs(n / total - 0.2) < 4 * math.sqrt(0.2 * 0.8 / total)
    x = torch.randn(3, 50)
    torch.testing.assert_close(net(x), net(x))  # same errors every pass
    bl.clear_bit_errors(net)
    assert all(
        torch.equal(m.effective_weight(), w) for m, w in zip(bl.binary_layers(net), wb, strict=True)
    )


def test_clip_and_validation():
    layer = bl.BinaryLinear(3, 2)
    with torch.no_grad():
        layer.weight.mul_(10)
    bl.clip_latent_weights(layer)
    assert float(layer.weight.detach().abs().max()) <= 1.0
    with pytest.raises(ConfigError, match="flip_prob"):
        bl.BinaryLinear(3, 2, flip_prob=0.7)
    with pytest.raises(ConfigError, match="shape"):
        layer.set_fixed_flips(torch.zeros(3, 3, dtype=torch.bool))
