"""Every tensor follows the network's device: meta-device regression (always) and the CUDA
path (when a GPU is present)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cimlab.errors import ConfigError
from cimlab.sim import AnalogConfig, convert
from cimlab.sim.devices import device_of, resolve_device
from cimlab.sim.training import TrainConfig, train

from .sim_helpers import dm_default

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")


def _small_net() -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)
        )


def _loader(n: int = 20, batch: int = 5):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 3, (n,), generator=g)
    return [(x[i : i + batch], y[i : i + batch]) for i in range(0, n, batch)]


def test_train_moves_cpu_batches_to_a_meta_network():
    """Regression: a net on another device failed with "Tensor on device meta is not on the
    expected device cpu" because train() fed it the loader's CPU batches."""
    net = _small_net().to("meta")
    seen = []

    def grad_fn(net, x, y):
        seen.append((x.device.type, y.device.type))
        F.cross_entropy(net(x), y).backward()  # meta tensors: shapes only
        return 0.0  # a meta loss has no value

    hist = train(net, (_loader(), None), TrainConfig(epochs=1), grad_fn=grad_fn, progress=False)
    assert seen == [("meta", "meta")] * 4
    assert len(hist) == 1
    assert all(p.device.type == "meta" for p in net.parameters())


def test_device_of_and_resolve_device():
    assert device_of(nn.Linear(2, 2)).type == "cpu"
    assert device_of(nn.Linear(2, 2).to("meta")).type == "meta"
    assert device_of(nn.ReLU()).type == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="--device"):
        resolve_device("nonsense")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cpu"):
            resolve_device("cuda")


@cuda
def test_train_on_cuda_matches_cpu_loss_path():
    net = _small_net().cuda()
    hist = train(net, (_loader(), _loader()), TrainConfig(epochs=2), progress=False)
    assert all(p.device.type == "cuda" for p in net.parameters())
    assert hist.loss.notna().all() and (hist.test_acc >= 0).all()


@cuda
def test_analog_network_on_cuda_programs_the_same_chip_and_runs():
    """Programmed with one CPU generator seed, the CUDA copy holds the same cells (the draws
    are made on the CPU and moved); the all-switches forward runs on the GPU."""
    net = _small_net().eval()
    cfg = AnalogConfig(device=dm_default(), tile=(16, 8), ir_drop=True)
    cpu = convert(net, cfg).program(torch.Generator().manual_seed(3))
    gpu = convert(net.cuda(), cfg).program(torch.Generator().manual_seed(3))
    for name, layer in cpu.layers.items():
        g_gpu = gpu.layers[name].conductances()
        assert g_gpu.device.type == "cuda"
        torch.testing.assert_close(g_gpu.cpu(), layer.conductances(), rtol=1e-5, atol=1e-12)
        torch.testing.assert_close(gpu.layers[name].effective_weight().cpu(),
                                   layer.effective_weight(), rtol=1e-4, atol=1e-6)  # fmt: skip
    x = _loader()[0][0]
    gpu.age(3600, temp_c=85)
    with torch.no_grad():
        y = gpu(x.cuda())
    assert y.device.type == "cuda" and torch.isfinite(y).all()
