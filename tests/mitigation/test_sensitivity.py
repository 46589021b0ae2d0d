"""ReMeCo sensitivity (paper 004): gradient averages checked against a closed form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimlab.mitigation.sensitivity import sensitivity


def _data(n_batches: int = 3, batch: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, generator=g), torch.zeros(batch, dtype=torch.long))
            for _ in range(n_batches)]  # fmt: skip


def test_neuron_and_layer_sensitivity_closed_form():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2, bias=False)
    net = nn.Sequential(lin)
    data = _data()
    # E = sum of outputs -> dE/dw_ij = sum_b x_bj for every neuron i
    s = sensitivity(net, data, loss_fn=lambda out, _y: out.sum())
    per_batch = torch.stack([x.sum(0).abs() for x, _ in data])  # (batches, inputs)
    expect = per_batch.mean(0).mean()  # AVR_j of mean |dE/dw_ij|
    torch.testing.assert_close(s.neuron["0"], torch.full((2,), float(expect)))
    assert s.layer["0"] == pytest.approx(float(expect), rel=1e-6)
    t = sensitivity(net, data, method="taylor", loss_fn=lambda out, _y: out.sum())
    w = lin.weight.detach().abs()
    expect_t = (per_batch.mean(0)[None, :] * w).mean(1)
    torch.testing.assert_close(t.neuron["0"], expect_t)
    assert lin.weight.grad is None  # gradients left as they were


def test_top_neurons_ranks_globally():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    s = sensitivity(net, _data(), max_batches=2)
    assert s.n_batches == 2
    masks = s.top_neurons(0.5)
    assert sum(int(m.sum()) for m in masks.values()) == 3
    chosen = torch.cat([s.neuron[n][masks[n]] for n in s.layers])
    rest = torch.cat([s.neuron[n][~masks[n]] for n in s.layers])
    assert chosen.min() >= rest.max()
    assert s.ranked_layers()[0] == max(s.layers, key=lambda n: s.layer[n])
    with pytest.raises(ValueError):
        s.top_neurons(1.5)
    with pytest.raises(ValueError):
        sensitivity(net, _data(), method="hessian")
