"""In-field, on-demand batch-norm calibration (paper 000, Lee et al., Fig. 9).

The weights of a compute-in-memory network live in the ReRAM array and are *not* touched.
After programming (programming error, read fluctuation) and again after a bake (retention
loss), training data is pushed through the error-bearing network and the running mean and
variance of every ``nn.BatchNorm*`` layer are re-estimated from the MAC outputs the chip
actually produces. The new statistics are stored digitally (they are a few numbers per
channel in the digital periphery), the affine ``weight``/``bias`` of BN stay as trained.

Layer by layer (paper 000, Fig. 9/10): BN layer *k* is calibrated with all BN layers before
it already calibrated, so each layer sees the corrected distribution of its inputs. BN
layers are visited in the order the forward pass reaches them (found with hooks, so any
topology works). The forward pass of layer *k* is cut short right after BN *k* has seen its
input (a hook raises an internal signal), so calibrating *L* layers costs about the same as
*L/2* full passes.

Interface: anything callable as ``model(x)`` whose BN layers are ``torch.nn`` BatchNorm
modules: the simulator's analog layers, a chip-in-the-loop backend's layers, or plain
digital layers. Nothing else is assumed. The statistics use the exact (two-pass free,
Welford/Chan merge) population mean and the unbiased variance, like PyTorch's training mode.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "BNCalibrationReport",
    "BNState",
    "batchnorm_layers",
    "calibrate_bn",
    "restore_bn",
    "snapshot_bn",
]

_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class _StopForward(Exception):
    """Internal signal: the BN layer being calibrated has seen its input."""


@dataclass(frozen=True)
class BNState:
    """Digitally stored statistics of one BN layer (mean, variance per channel)."""

    name: str
    running_mean: torch.Tensor
    running_var: torch.Tensor


@dataclass(frozen=True)
class BNCalibrationReport:
    """What :func:`calibrate_bn` changed.

    ``before``/``after``: per BN layer (forward order) the stored statistics;
    ``n_samples``: calibration samples used; ``shift``: per layer, the mean absolute change of
    the running mean in units of the old running standard deviation (how far the chip's MAC
    distribution had moved).
    """

    layers: tuple[str, ...]
    before: tuple[BNState, ...]
    after: tuple[BNState, ...]
    n_samples: int
    shift: dict[str, float] = field(default_factory=dict)


def batchnorm_layers(model: nn.Module, example: torch.Tensor | None = None) -> list[str]:
    """Names of the model's BN layers, in forward order when ``example`` is given.

    Without ``example`` the registration order is returned (equal to the forward order for
    ``nn.Sequential``-style networks).
    """
    named = [(n, m) for n, m in model.named_modules() if isinstance(m, _BN_TYPES)]
    if example is None:
        return [n for n, _ in named]
    was_training = model.training
    model.eval()
    try:
        order = _forward_order(model, model, example)
    finally:
        model.train(was_training)
    return order + [n for n, _ in named if n not in order]


def snapshot_bn(model: nn.Module) -> dict[str, BNState]:
    """Copies of every BN layer's running statistics (to restore or compare later)."""
    return {
        n: BNState(n, m.running_mean.detach().clone(), m.running_var.detach().clone())
        for n, m in model.named_modules()
        if isinstance(m, _BN_TYPES)
    }


def restore_bn(model: nn.Module, state: dict[str, BNState]) -> None:
    """Write statistics from :func:`snapshot_bn` back (e.g. the server-trained ones)."""
    mods = dict(model.named_modules())
    for name, s in state.items():
        mods[name].running_mean.copy_(s.running_mean)
        mods[name].running_var.copy_(s.running_var)


def _batches(data, batch_size: int) -> Iterable[torch.Tensor]:
    """Inputs from a tensor, a (x, y) tuple or an iterable of batches ((x, y) or x)."""
    if isinstance(data, torch.Tensor):
        for i in range(0, len(data), batch_size):
            yield data[i : i + batch_size]
        return
    if (
        isinstance(data, (tuple, list)) and len(data) == 2
        and isinstance(data[0], torch.Tensor) and isinstance(data[1], torch.Tensor)
        and data[1].ndim == 1 and data[0].ndim > 1 and len(data[0]) == len(data[1])
    ):  # fmt: skip
        yield from _batches(data[0], batch_size)  # an (inputs, labels) pair
        return
    for b in data:
        yield b[0] if isinstance(b, (tuple, list)) else b


def _channel_stats(x: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """(count, mean, M2) per channel of a BN input (N, C, ...)."""
    c = x.shape[1]
    flat = x.detach().transpose(0, 1).reshape(c, -1).double()
    n = flat.shape[1]
    mean = flat.mean(dim=1)
    m2 = ((flat - mean[:, None]) ** 2).sum(dim=1)
    return n, mean, m2


def calibrate_bn(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    data,
    *,
    n_samples: int | None = None,
    batch_size: int = 256,
    layers: Sequence[str] | None = None,
    layer_by_layer: bool = True,
    bn_modules: nn.Module | None = None,
) -> BNCalibrationReport:
    """Re-estimate BN running mean/variance from the error-bearing network's MAC outputs.

    Parameters
    ----------
    model: the network as deployed (its forward runs the chip or the simulator). It is put in
        ``eval`` mode; only BN ``running_mean``/``running_var`` change.
    data: calibration inputs: a tensor ``(N, ...)``, an ``(x, y)`` tensor pair, or an iterable
        of batches (DataLoader). Paper 000 uses training data.
    n_samples: use only the first ``n_samples`` inputs (None: all).
    layers: names of the BN layers to calibrate (default all; paper 000 Fig. 11 calibrates the
        first layer only). Others keep their statistics.
    layer_by_layer: True (paper 000): layer k is estimated after layers < k are calibrated,
        one pass per layer, each stopped at that layer. False: one pass, all layers at once
        from the old upstream statistics (cheaper, less accurate).
    bn_modules: where to look for BN layers if ``model`` is not an ``nn.Module`` itself.

    Stochastic forwards (read noise each call) are fine: the estimate averages over them.
    """
    owner = bn_modules if bn_modules is not None else model
    if not isinstance(owner, nn.Module):
        raise TypeError("calibrate_bn: pass bn_modules= (an nn.Module) for a non-Module model")
    mods = dict(owner.named_modules())
    xs: list[torch.Tensor] = []
    count = 0
    for xb in _batches(data, batch_size):
        if n_samples is not None and count >= n_samples:
            break
        if n_samples is not None and count + len(xb) > n_samples:
            xb = xb[: n_samples - count]
        xs.append(xb)
        count += len(xb)
    if count == 0:
        raise ValueError("calibrate_bn: no calibration samples (empty data or n_samples=0)")
    was_training = owner.training
    owner.eval()
    all_bn = [n for n, m in owner.named_modules() if isinstance(m, _BN_TYPES)]
    order = _forward_order(model, owner, xs[0][:2])
    order += [n for n in all_bn if n not in order]
    if layers is not None:
        unknown = [n for n in layers if n not in order]
        if unknown:
            owner.train(was_training)
            raise ValueError(f"calibrate_bn: no BatchNorm layer named {unknown}; have {order}")
        order = [n for n in order if n in set(layers)]
    if not order:
        owner.train(was_training)
        raise ValueError("calibrate_bn: the model has no nn.BatchNorm layers to calibrate")
    before = tuple(
        BNState(n, mods[n].running_mean.detach().clone(), mods[n].running_var.detach().clone())
        for n in order
    )
    try:
        groups = [[n] for n in order] if layer_by_layer else [list(order)]
        for group in groups:
            _calibrate_group(model, mods, group, xs, stop_early=layer_by_layer)
    finally:
        owner.train(was_training)
    after = tuple(
        BNState(n, mods[n].running_mean.detach().clone(), mods[n].running_var.detach().clone())
        for n in order
    )
    shift = {
        b.name: float(((a.running_mean - b.running_mean).abs() / b.running_var.sqrt()).mean())
        for b, a in zip(before, after, strict=True)
    }
    return BNCalibrationReport(tuple(order), before, after, count, shift)


def _record(order: list[str], name: str, _m, _i) -> None:
    if name not in order:
        order.append(name)


def _forward_order(model, owner: nn.Module, example: torch.Tensor) -> list[str]:
    """Names of ``owner``'s BN layers in the order one forward of ``model`` on ``example``
    reaches them (layers it does not reach are left out); ``model``'s mode is untouched."""
    named = [(n, m) for n, m in owner.named_modules() if isinstance(m, _BN_TYPES)]
    order: list[str] = []
    hooks = [
        m.register_forward_pre_hook(functools.partial(_record, order, n)) for n, m in named
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in hooks:
            h.remove()
    return order


def _calibrate_group(model, mods: dict, group: list[str], xs, *, stop_early: bool) -> None:
    acc: dict[str, list] = {n: [0, None, None] for n in group}  # count, mean, M2 (Chan merge)
    hooks = []
    for name in group:

        def hook(_m, inputs, _name=name):
            n_b, mean_b, m2_b = _channel_stats(inputs[0])
            a = acc[_name]
            if a[1] is None:
                a[0], a[1], a[2] = n_b, mean_b, m2_b
            else:
                n_a = a[0]
                delta = mean_b - a[1]
                tot = n_a + n_b
                a[1] = a[1] + delta * (n_b / tot)
                a[2] = a[2] + m2_b + delta**2 * (n_a * n_b / tot)
                a[0] = tot
            if stop_early:
                raise _StopForward

        hooks.append(mods[name].register_forward_pre_hook(hook))
    try:
        with torch.no_grad():
            for xb in xs:
                try:
                    model(xb)
                except _StopForward:
                    pass
    finally:
        for h in hooks:
            h.remove()
    for name in group:
        n, mean, m2 = acc[name]
        if mean is None:
            raise RuntimeError(f"calibrate_bn: BN layer {name!r} was not reached by the forward")
        bn = mods[name]
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_((m2 / max(n - 1, 1)).to(bn.running_var.dtype))
