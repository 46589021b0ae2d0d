"""Whole-network conversion: :func:`convert` and :class:`AnalogNetwork`.

``convert(net, AnalogConfig(...))`` deep-copies ``net`` and replaces its ``nn.Linear`` and
``nn.Conv2d`` layers (binary layers of :mod:`cimlab.sim.binary_layers` included) with
:class:`~cimlab.sim.layers.AnalogLinear` / :class:`~cimlab.sim.layers.AnalogConv2d`; batch
norm, activations, pooling and dropout stay digital, as on a CIM chip (paper 000: "BN, Max
Pooling, Dropout, and ReLU are done by logic computation"). The original network is never
modified.

Selective injection (paper 000 injects errors layer by layer): ``inject=["0"]`` or
:meth:`AnalogNetwork.set_injection` keeps every other converted layer ideal (its ``base``
layer computes), without reprogramming.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim.config import AnalogConfig
from cimlab.sim.devices import device_of, to_device
from cimlab.sim.layer_tree import enable_only, layers_of, replace_submodule
from cimlab.sim.layers import AnalogConv2d, AnalogLayer, AnalogLinear, temp_c_to_k


class AnalogNetwork(nn.Module):
    """A network whose weight layers run on (simulated) ReRAM tiles.

    ``anet.net`` is the converted copy (its BN layers are the ones a BN calibration updates);
    ``anet.layers`` maps qualified names (as in ``net.named_modules()``) to analog layers.
    """

    def __init__(self, net: nn.Module, config: AnalogConfig):
        super().__init__()
        self.net = net
        self.config = config
        self.t_eq_s = 0.0

    # ------------------------------------------------------------------ layers
    @property
    def layers(self) -> dict[str, AnalogLayer]:
        """Analog layers by qualified name, in forward (module) order."""
        return layers_of(self, AnalogLayer)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)

    def set_injection(self, names: Iterable[str] | None) -> None:
        """Non-idealities only in layers ``names`` (None: all); the others compute ideally."""
        enable_only(self.layers, names, "analog layer")

    @property
    def injected(self) -> list[str]:
        return [n for n, m in self.layers.items() if m.enabled]

    # ------------------------------------------------------------------ chip life cycle
    @torch.no_grad()
    def program(self, generator: torch.Generator | int) -> AnalogNetwork:
        """Program every analog layer (draws in layer order from one ``generator``; an int is
        a seed). Resets the retention clock. Returns self."""
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        for layer in self.layers.values():
            layer.program(generator)
        self.t_eq_s = 0.0
        return self

    @torch.no_grad()
    def age(self, seconds: float, temp_c: float = 25.0) -> AnalogNetwork:
        """Let ``seconds`` [s] pass at ``temp_c`` [degC] (bake or storage; device model's
        relaxation + Arrhenius retention). Calls accumulate. Returns self."""
        temp_k = temp_c_to_k(temp_c)
        for layer in self.layers.values():
            layer.age(seconds, temp_k)
        layers = list(self.layers.values())
        self.t_eq_s = layers[0].t_eq_s if layers else 0.0
        return self

    @torch.no_grad()
    def prepare(self) -> AnalogNetwork:
        """Compute what the forward pass reads from the cells now (IR-drop corrected weights,
        read-noise arrays, ADC ranges). ``program()`` and ``age()`` leave it to the first
        forward after them (one computation for any number of changes); call this to time
        it apart or before a latency-sensitive forward. Returns self."""
        for layer in self.layers.values():
            layer._ensure_fresh()
        return self

    @torch.no_grad()
    def calibrate(self, batches: Iterable[Any], max_batches: int | None = None) -> AnalogNetwork:
        """Fix converter ranges from data (after ``program``): each layer's DAC full scale
        becomes the max |input| seen (unipolar if no input was negative); with
        ``adc_range="calibrated"`` each tile's ADC full scale becomes the max |partial sum|
        seen (noise-free). ``batches`` yields tensors or (x, y) pairs."""
        was = self.training
        self.eval()
        layers = list(self.layers.values())
        passes = [1]
        if self.config.adc_bits is not None and self.config.adc_range == "calibrated":
            passes.append(2)
        for p in passes:
            for layer in layers:
                layer.calibrating = p
                if p == 1:
                    layer.x_range, layer.x_signed = None, False
                else:
                    layer._adc_cal = None
            try:
                for i, batch in enumerate(batches):
                    if max_batches is not None and i >= max_batches:
                        break
                    x = batch[0] if isinstance(batch, (tuple, list)) else batch
                    self(to_device(x, device_of(self)))
            finally:
                for layer in layers:
                    layer.calibrating = 0
        self.train(was)
        return self

    def summary(self) -> list[dict[str, Any]]:
        """One dict per analog layer (mapping, arrays, stuck fractions, retention clock)."""
        return [layer.summary() for layer in self.layers.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def convert(
    net: nn.Module,
    config: AnalogConfig | None = None,
    layers: Sequence[str] | None = None,
    inject: Sequence[str] | None = None,
) -> AnalogNetwork:
    """Analog copy of ``net``: its ``nn.Linear``/``nn.Conv2d`` layers (named ones, not the
    top-level module itself) become :class:`~cimlab.sim.layers.AnalogLinear` /
    :class:`~cimlab.sim.layers.AnalogConv2d` on ReRAM tiles, batch norm, activations, pooling
    and dropout stay digital; ``net`` is deep-copied and never modified.

    ``layers``: qualified names of the Linear/Conv2d layers to put on tiles (None: all);
    ``inject``: names of the converted layers that get non-idealities (None: all).
    ``config.device`` None uses ``DeviceModel.default()``. The result is in eval mode and
    must be programmed (``anet.program(generator)``) before use.
    """
    if config is None:
        config = AnalogConfig()
    if config.device is None:
        from cimlab.models import DeviceModel

        config = config.replace(device=DeviceModel.default())
    net = copy.deepcopy(net)
    candidates = {
        n: m for n, m in net.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and n
    }
    chosen = list(candidates) if layers is None else list(layers)
    unknown = [n for n in chosen if n not in candidates]
    if unknown:
        raise ConfigError(
            None, "layers", f"names of Linear/Conv2d layers ({', '.join(candidates)})", unknown
        )
    for name in chosen:
        base = candidates[name]
        cls = AnalogConv2d if isinstance(base, nn.Conv2d) else AnalogLinear
        replace_submodule(net, name, cls(base, config, name))
    anet = AnalogNetwork(net, config)
    if inject is not None:
        anet.set_injection(inject)
    return anet.eval()
