"""Reference networks: shapes, paper sizes, bias placement, rebuild from spec."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim import nets
from cimlab.sim.binary_layers import BinaryConv2d, BinaryLinear


@pytest.mark.parametrize("name", nets.NETWORKS)
def test_forward_on_digits_shapes(name):
    shape = (1, 16, 16) if name == "lenet" else (1, 8, 8)
    torch.manual_seed(0)
    net = nets.build(name, shape, 10)
    out = net(torch.randn(5, *shape))
    assert out.shape == (5, 10)
    again = nets.rebuild(net.spec)
    assert [type(m) for m in again] == [type(m) for m in net]
    assert nets.count_parameters(again) == nets.count_parameters(net)


def test_paper000_table1_structure_at_paper_size():
    net = nets.build("paper000-cnn")
    convs = [m for m in net if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [128, 128, 256, 256, 512, 512]
    assert [f.out_features for f in fcs] == [1024, 1024, 10]
    assert fcs[0].in_features == 512 * 4 * 4  # three 2x2 pools on 32x32
    # BN after every conv and hidden FC (Table 1), so those layers carry no bias
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net) == 6
    assert sum(isinstance(m, nn.BatchNorm1d) for m in net) == 2
    assert all(c.bias is None for c in convs) and fcs[-1].bias is not None
    assert sum(isinstance(m, nn.MaxPool2d) for m in net) == 3


def test_paper001_sizes_match_paper():
    vgg = nets.build("paper001-vgg")
    fcs = [m for m in vgg if isinstance(m, nn.Linear)]
    assert fcs[0].in_features == 2048 and fcs[0].out_features == 128  # Fig. 2: FC1 2048x128
    assert all(m.bias is not None for m in vgg if isinstance(m, (nn.Conv2d, nn.Linear)))
    toy = nets.build("paper001-mnist")
    convs = [m for m in toy if isinstance(m, nn.Conv2d)]
    assert [tuple(c.weight.shape) for c in convs] == [(22, 1, 3, 3), (27, 22, 3, 3), (64, 27, 3, 3)]
    assert convs[2].stride == (2, 2)
    assert toy(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_bnn_sizes_and_binary_layers():
    mlp = nets.build("paper003-bnn-mlp")
    lin = [m for m in mlp if isinstance(m, BinaryLinear)]
    assert [m.out_features for m in lin] == [4096, 4096, 10] and lin[0].in_features == 784
    assert nets.is_binary(mlp)
    small = nets.build("paper003-bnn-mlp", (1, 8, 8), hidden=64, n_hidden=3)
    assert [m.out_features for m in small if isinstance(m, BinaryLinear)] == [64, 64, 64, 10]
    cnn = nets.build("paper003-bnn-cnn")
    assert [m.out_channels for m in cnn if isinstance(m, BinaryConv2d)] == [
        128,
        128,
        256,
        256,
        512,
        512,
    ]
    assert not nets.is_binary(nets.build("lenet"))


def test_default_width_depends_on_input():
    paper = nets.build("paper000-cnn")
    small = nets.build("paper000-cnn", (1, 8, 8))
    assert paper.spec["kwargs"]["width"] == 1.0
    assert small.spec["kwargs"]["width"] == nets.SMALL_WIDTH["paper000-cnn"]
    assert nets.build("paper003-bnn-mlp", (1, 8, 8)).spec["kwargs"]["hidden"] == nets.SMALL_HIDDEN


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="image_size=16"):
        nets.build("lenet", (1, 8, 8))
    with pytest.raises(ConfigError, match="lenet"):
        nets.build("resnet")
    with pytest.raises(ConfigError, match="width"):
        nets.build("lenet", width=0)
