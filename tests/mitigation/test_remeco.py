"""ReMeCo (paper 004): bit-sliced faulty mapping, IR drop, overhead accounting, and the
acceptance check that sensitivity-guided redundancy beats the committee machine on cost."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cimlab.mitigation.remeco import (
    CrossbarNonideality,
    _ir_factor,
    map_layer,
    overheads,
    remeco_table,
)
from cimlab.mitigation.sensitivity import sensitivity

IDEAL = dict(p_stuck=0.0, sigma_frac=0.0, r_wire_mean_ohm=0.0, r_wire_sigma_ohm=0.0)


def test_ideal_mapping_is_8bit_quantization():
    w = torch.randn(20, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    msb, rest = map_layer(w, CrossbarNonideality(**IDEAL), torch.Generator().manual_seed(1))
    scale = float(w.abs().max())
    q = torch.round(w.abs() / scale * 255) * torch.sign(w) * scale / 255
    torch.testing.assert_close(msb + rest, q, rtol=0, atol=1e-5 * scale)
    # the MSB slice carries the 16s, the LSB slice the units
    torch.testing.assert_close(msb, torch.sign(w) * torch.floor(torch.round(w.abs() / scale * 255)
                               / 16) * 16 * scale / 255, rtol=0, atol=1e-5 * scale)  # fmt: skip


def test_stuck_cells_hit_the_expected_fraction_of_weights():
    # every weight 0x35 (MSB 3, LSB 5) on the positive pair: any stuck-on cell changes it
    n = 100
    w = torch.full((n, n), 0x35 / 255)
    w[0, 0] = 1.0  # sets the scale
    p = 0.1
    ni = CrossbarNonideality(**{**IDEAL, "p_stuck": p, "frac_stuck_off": 0.0})
    msb, rest = map_layer(w, ni, torch.Generator().manual_seed(2))
    changed = ((msb + rest - w).abs() > 0.5 / 255).double().mean().item()
    expect = 1 - (1 - p) ** 4  # 4 cells per weight
    tol = 5 * math.sqrt(expect * (1 - expect) / n**2)
    assert abs(changed - expect) < tol


def test_all_stuck_on_cancels_in_the_differential_pair():
    w = torch.randn(8, 8, generator=torch.Generator().manual_seed(3))
    ni = CrossbarNonideality(**{**IDEAL, "p_stuck": 1.0, "frac_stuck_off": 0.0})
    msb, rest = map_layer(w, ni, torch.Generator().manual_seed(4))
    torch.testing.assert_close(msb + rest, torch.zeros_like(w), rtol=0, atol=1e-6)


def test_ir_drop_closed_form_on_a_uniform_array():
    rows, cols, g, r = 6, 5, 1e-5, 2.0
    f = _ir_factor(torch.full((rows, cols), g, dtype=torch.float64), r, 1.0)
    for i in range(rows):
        for j in range(cols):
            a_row = r * g * sum(cols - k for k in range(j + 1))
            a_col = r * g * sum(k + 1 for k in range(i, rows))
            assert f[i, j].item() == pytest.approx(1 - a_row - a_col, rel=1e-12)
    # worst cell: far from the driver (last column) and from the sense amp (first row)
    assert f.argmin().item() == cols - 1


def test_overheads_count_cells_and_reads():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    x = torch.zeros(1, 1, 8, 8)
    base_cells, base_reads = overheads(net, x, "base")
    assert base_cells == 4 * (4 * 9 + 5 * 144)  # 4 cells per weight
    assert base_reads == 4 * (4 * 9 * 36 + 5 * 144)  # conv read at 36 positions
    assert overheads(net, x, "committee") == (2 * base_cells, 2 * base_reads)
    all_on = {"0": torch.ones(4, dtype=torch.bool), "3": torch.ones(5, dtype=torch.bool)}
    assert overheads(net, x, "msb", neuron_mask=all_on)[0] == 1.5 * base_cells
    assert overheads(net, x, "sensitive_layer", layers=["0"])[0] == base_cells + 4 * 4 * 9
    with pytest.raises(ValueError):
        overheads(net, x, "triple")


# Measured over 3 LeNet training seeds x 6 faulty chips (DeviceModel.default(): 1 % stuck,
# 0.07 programming sigma, IR drop): base 0.82-0.89, committee +0.016..+0.045, MSB redundancy
# (80 %) +0.020..+0.053 and always >= committee (+0.003..+0.008) at 40 % vs 100 % area.
def test_redundancy_beats_committee_machine_on_cost(trained, digits16):
    from cimlab.models import DeviceModel

    net = trained("lenet", 16, 12, 0)
    loader, _ = digits16.loaders(64, generator=torch.Generator().manual_seed(0))
    sens = sensitivity(net, loader)
    ni = CrossbarNonideality.from_device_model(DeviceModel.default())
    res = remeco_table(net, digits16.x_test, digits16.y_test, sens.top_neurons(0.8),
                       sens.ranked_layers()[:1], ni=ni, n_instances=6, seed=0)  # fmt: skip
    base, cm, msb = res["base"], res["committee"], res["msb"]
    sn = res["sensitive_neuron"]
    assert cm.mean - base.mean > 0.005
    assert msb.mean - base.mean > 0.01
    assert sn.mean - base.mean > 0.01
    assert msb.mean >= cm.mean - 0.01
    assert msb.cells - base.cells < 0.5 * (cm.cells - base.cells)
    assert sn.cells < cm.cells and res["sensitive_layer"].cells < sn.cells
