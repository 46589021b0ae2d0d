"""Gradient-based neuron and layer sensitivity (paper 004, ReMeCo, BanaGozar et al.).

ReMeCo ranks where hardware redundancy pays off by back-propagating the loss of the trained
network: the sensitivity of output neuron *i* of a layer is the average over its incoming
weights *j* of the loss gradient,

    Sens_neuron(i) = AVR_j |dE/dw_ij|          (paper 004, "Sensitivity characterization")

and the sensitivity of a layer is the average of the sensitivities of all its output neurons.
The paper plots the *absolute* neuron sensitivity; we average the absolute per-batch gradient
over the data (the dataset-mean gradient of a trained network is ~0, its magnitude is not).
``method="taylor"`` gives the first-order Taylor saliency ``|dE/dw_ij * w_ij|`` instead
(Molchanov et al., ICLR 2017), which weighs a gradient by the weight it would perturb.

A "neuron" is an output feature of a ``nn.Linear`` (a crossbar column pair) or an output
channel of a ``nn.Conv*`` (all its columns). The analysis is device independent: it runs on
the digital network before mapping.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["METHODS", "Sensitivity", "compute_sensitivity", "sensitivity"]

METHODS = ("gradient", "taylor")


@dataclass(frozen=True)
class Sensitivity:
    """Per-neuron and per-layer sensitivity of a network (paper 004).

    ``neuron[layer]``: tensor (out_features or out_channels,); ``layer[layer]``: its mean;
    ``layers``: crossbar layer names in module order; ``method``; ``n_batches`` used.
    """

    layers: tuple[str, ...]
    neuron: dict[str, torch.Tensor]
    layer: dict[str, float]
    method: str
    n_batches: int

    def ranked_layers(self) -> list[str]:
        """Layer names, most sensitive first."""
        return sorted(self.layers, key=lambda n: -self.layer[n])

    def top_neurons(self, fraction: float) -> dict[str, torch.Tensor]:
        """Boolean masks selecting the globally most sensitive ``fraction`` of all neurons.

        Ranking is across the whole network (paper 004 applies redundancy "where it
        contributes most"); ties are broken by order.
        """
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"top_neurons: fraction must be in [0, 1], got {fraction}")
        flat = torch.cat([self.neuron[n] for n in self.layers])
        k = round(fraction * flat.numel())
        chosen = torch.zeros(flat.numel(), dtype=torch.bool)
        if k > 0:
            chosen[torch.argsort(flat, descending=True, stable=True)[:k]] = True
        out, start = {}, 0
        for n in self.layers:
            m = self.neuron[n].numel()
            out[n] = chosen[start : start + m].clone()
            start += m
        return out


def _crossbar_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and n
    ]


def sensitivity(
    model: nn.Module,
    data: Iterable,
    *,
    method: str = "gradient",
    loss_fn: nn.Module | None = None,
    max_batches: int | None = None,
) -> Sensitivity:
    """Neuron and layer sensitivity of ``model`` over ``data`` (iterable of ``(x, y)``).

    ``loss_fn`` defaults to cross-entropy (the training loss E of paper 004). The model is
    evaluated in ``eval`` mode (BN uses its running statistics, dropout is off); its
    parameters' ``.grad`` are left as they were.
    """
    if method not in METHODS:
        raise ValueError(f"sensitivity: method must be one of {METHODS}, got {method!r}")
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    mods = _crossbar_modules(model)
    if not mods:
        raise ValueError("sensitivity: the model has no Conv/Linear layers")
    acc = {n: torch.zeros_like(m.weight, dtype=torch.float64) for n, m in mods}
    saved = {n: (m.weight.grad.clone() if m.weight.grad is not None else None) for n, m in mods}
    was = model.training
    model.eval()
    nb = 0
    try:
        for i, (x, y) in enumerate(data):
            if max_batches is not None and i >= max_batches:
                break
            model.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            for n, m in mods:
                g = m.weight.grad.detach().double()
                if method == "taylor":
                    g = g * m.weight.detach().double()
                acc[n] += g.abs()
            nb += 1
    finally:
        model.train(was)
        for n, m in mods:
            m.weight.grad = saved[n]
    if nb == 0:
        raise ValueError("sensitivity: no batches in data")
    neuron = {n: (acc[n] / nb).flatten(1).mean(dim=1).float() for n, _ in mods}
    layer = {n: float(v.mean()) for n, v in neuron.items()}
    return Sensitivity(tuple(n for n, _ in mods), neuron, layer, method, nb)


#: Alias exported from :mod:`cimlab.mitigation` (where ``sensitivity`` names this module).
compute_sensitivity = sensitivity
