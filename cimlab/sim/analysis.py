"""Where the error goes: per-layer NRMSE and neuron (sum-of-product) distributions.

Paper 000 (Lee et al.) injects ReRAM weight errors into one layer at a time, shows that the
first conv layer matters most, plots the neuron (sum-of-product) distribution of the ideal and
the error-bearing network (Fig. 6) and the normalized RMSE of every layer's output (Fig. 7).

* :func:`layer_outputs`: forward hooks capture the outputs of chosen modules;
* :func:`layer_nrmse`: ``NRMSE_l = RMS(y_l - y_l^ideal) / std(y_l^ideal)`` of every analog
  layer's output (its sums of products, before BN) in the error-bearing network, against the
  same network with every layer ideal; errors injected upstream propagate into it;
* :func:`neuron_distributions` + :func:`plot_distributions`: histograms, ideal vs analog;
* :func:`injection_study`: layer-by-layer injection, accuracy and NRMSE per injected layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from cimlab.sim import figures
from cimlab.sim.devices import device_of, to_device

if TYPE_CHECKING:
    from cimlab.sim.convert import AnalogNetwork


@torch.no_grad()
def layer_outputs(net: nn.Module, x: torch.Tensor, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Outputs of modules ``names`` (qualified names in ``net``) for input ``x`` (eval mode,
    on the net's device)."""
    modules = dict(net.named_modules())
    captured: dict[str, torch.Tensor] = {}
    handles = []
    for n in names:
        def hook(_m, _inp, out, n=n):
            captured[n] = out.detach().clone()

        handles.append(modules[n].register_forward_hook(hook))
    was = net.training
    net.eval()
    try:
        net(to_device(x, device_of(net)))
    finally:
        net.train(was)
        for h in handles:
            h.remove()
    return captured


@contextmanager
def all_ideal(anet: AnalogNetwork):
    """Temporarily run every analog layer ideally (restores the injection afterwards)."""
    before = {n: m.enabled for n, m in anet.layers.items()}
    try:
        anet.set_injection([])
        yield anet
    finally:
        for n, m in anet.layers.items():
            m.enabled = before[n]


def _module_names(anet: AnalogNetwork) -> dict[str, str]:
    return {n: "net." + n for n in anet.layers}


def paired_outputs(anet: AnalogNetwork, x: torch.Tensor) -> tuple[dict, dict]:
    """(ideal, analog) outputs of every analog layer for the same input."""
    names = _module_names(anet)
    with all_ideal(anet):
        ideal = layer_outputs(anet, x, list(names.values()))
    analog = layer_outputs(anet, x, list(names.values()))
    back = {v: k for k, v in names.items()}
    return ({back[k]: v for k, v in ideal.items()}, {back[k]: v for k, v in analog.items()})


def nrmse(y: torch.Tensor, y_ideal: torch.Tensor) -> float:
    """``RMS(y - y_ideal) / std(y_ideal)`` (dimensionless)."""
    err = (y.double() - y_ideal.double()).pow(2).mean().sqrt()
    ref = y_ideal.double().std()
    return float(err / ref) if ref > 0 else float("inf")


def layer_nrmse(anet: AnalogNetwork, x: torch.Tensor) -> dict[str, float]:
    """NRMSE of every analog layer's output on input ``x``, in forward order:
    ``RMS(y - y_ideal) / std(y_ideal)`` of the layer's sums of products (before BN) in the
    error-bearing network against the same network with every layer ideal (paper 000, Fig. 7);
    errors injected upstream propagate into it."""
    ideal, analog = paired_outputs(anet, x)
    return {n: nrmse(analog[n], ideal[n]) for n in anet.layers}


def neuron_distributions(
    anet: AnalogNetwork, x: torch.Tensor, names: Sequence[str] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Flattened sum-of-product values ``(ideal, analog)`` of layers ``names`` (default all)."""
    ideal, analog = paired_outputs(anet, x)
    names = list(anet.layers) if names is None else list(names)
    return {n: (ideal[n].flatten().cpu().numpy(), analog[n].flatten().cpu().numpy())
            for n in names}  # fmt: skip


def plot_distributions(
    dists: dict[str, tuple[np.ndarray, np.ndarray]], path: str | Path, bins: int = 80,
    title: str = "Neuron (sum-of-product) distributions",
) -> Path:  # fmt: skip
    """PNG of ideal vs analog histograms, one panel per layer (paper 000 Fig. 6 style)."""
    n = max(1, len(dists))
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = figures.pyplot().subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows),
                                          squeeze=False)
    for ax, (name, (ideal, analog)) in zip(axes.flat, dists.items(), strict=False):
        lo = float(min(ideal.min(), analog.min()))
        hi = float(max(ideal.max(), analog.max()))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, bins + 1)
        ax.hist(ideal, edges, histtype="step", density=True, label="ideal", color="k")
        ax.hist(analog, edges, histtype="stepfilled", density=True, alpha=0.45,
                label="analog", color="tab:red")  # fmt: skip
        ax.set_title(f"layer {name}")
        ax.set_xlabel("sum of products")
        ax.legend(fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return figures.save(fig, path, dpi=110)


def injection_study(
    anet: AnalogNetwork, loader: Iterable[Any], names: Sequence[str] | None = None,
    seeds: Sequence[int] = (0,), probe: torch.Tensor | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Paper 000's layer-by-layer injection: for each layer in ``names`` (default all), only
    that layer carries non-idealities; accuracy averaged over programmings ``seeds`` and the
    NRMSE of every layer's output on ``probe`` (default: the first batch of ``loader``)."""
    from cimlab.sim.evaluate import evaluate

    names = list(anet.layers) if names is None else list(names)
    if probe is None:
        first = next(iter(loader))
        probe = first[0] if isinstance(first, (tuple, list)) else first
    before = anet.injected
    rows = []
    try:
        for n in names:
            anet.set_injection([n])
            accs, errs = [], []
            for s in seeds:
                anet.program(torch.Generator().manual_seed(int(s)))
                accs.append(evaluate(anet, loader))
                errs.append(layer_nrmse(anet, probe))
            rows.append({
                "injected": n,
                "accuracy": float(np.mean(accs)),
                "accuracy_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
                "nrmse": {k: float(np.mean([e[k] for e in errs])) for k in errs[0]},
            })  # fmt: skip
    finally:
        anet.set_injection(before)
    return rows
