"""Paper 000's one-cell-per-weight *offset* mapping beside the differential pair, in weights.

Paper 000 (Lee et al.) maps each weight ``w`` in ``[-0.2, 0.2]`` linearly onto ONE cell of
``2e-6 .. 4e-5 S``: ``G = g_min + (g_max - g_min) (w + wmax) / (2 wmax)``, so ``w = 0`` sits
mid-window and the weight is read back as ``w = (G - g_min) 2 wmax / (g_max - g_min) - wmax``
(the offset subtracted digitally or by a reference column). cimlab's simulator
(:mod:`cimlab.sim.mapping`) uses a differential pair instead: ``G+ = g_min + span |w| / wmax``
on the cell of the weight's sign, ``g_min`` on the other, ``w = (G+ - G-) wmax / span``.

The two differ in what the device errors do to a weight:

* programming error and read noise: the offset cell of a small weight sits mid-window, where
  the device model's programming sigma is that of a mid-level cell; the pair holds small
  weights near ``g_min``. The weight-unit noise of the offset map is ``2 wmax / span`` per
  siemens, twice the pair's ``wmax / span``;
* retention: a drift common to all cells moves every offset-mapped weight by the same amount
  (a shift of the layer's output by ``drift * sum(inputs)``: large for raw, all-positive
  pixels, about zero for standardized ones), while the pair cancels it.

This module injects either mapping's errors into the weights of chosen layers of a plain
PyTorch network (device model draws; programming error, a bake, one read), evaluates, and
restores the weights: :func:`inject`, :func:`layer_study`. Biases stay digital, stuck cells
and ADC/DAC are off (paper 000 studies programming error, read fluctuation and retention).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import pandas as pd
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.units import KELVIN_OFFSET

__all__ = ["SCHEMES", "effective_weight", "inject", "layer_study"]

#: ``offset``: paper 000, one cell per weight, w = 0 mid-window; ``differential``: the
#: simulator's pair (:mod:`cimlab.sim.mapping`).
SCHEMES = ("offset", "differential")


def _targets(w: torch.Tensor, scheme: str, g_min: float, span: float, wmax: float
             ) -> torch.Tensor:
    """Target conductances [S]: shape ``(1,) + w.shape`` (offset) or ``(2,) + w.shape``."""
    u = w / wmax
    if scheme == "offset":
        return (g_min + span * (u + 1.0) / 2.0)[None]
    if scheme == "differential":
        on = g_min + span * u.abs()
        pos = u >= 0
        return torch.stack([torch.where(pos, on, g_min), torch.where(pos, g_min, on)])
    raise ConfigError(None, "scheme", f"one of {', '.join(SCHEMES)}", scheme)


def _weight(g: torch.Tensor, scheme: str, g_min: float, span: float, wmax: float
            ) -> torch.Tensor:
    if scheme == "offset":
        return (g[0] - g_min) * (2.0 * wmax / span) - wmax
    return (g[0] - g[1]) * (wmax / span)


def effective_weight(
    w: torch.Tensor,
    scheme: str,
    device: Any,
    generator: torch.Generator,
    *,
    bake_s: float = 0.0,
    temp_c: float = 150.0,
    read: bool = True,
    wmax: float | None = None,
) -> torch.Tensor:
    """Weight the cells hold for target weights ``w`` under ``scheme``: programmed with the
    device model's programming error, then ``bake_s`` [s] at ``temp_c`` [degC] (relaxation at
    the Arrhenius-equivalent time, evaluated at the programmed conductance), then one read
    (read noise) when ``read``. ``wmax``: weight mapped to the window's edge (default
    ``max|w|``; a weight beyond it raises)."""
    w = w.detach()
    wm = float(w.abs().max()) if wmax is None else float(wmax)
    if wm <= 0:
        return w.clone()
    if float(w.abs().max()) > wm * (1 + 1e-6):
        raise ConfigError(None, "wmax", f">= max|w| = {float(w.abs().max()):.4g}", wm)
    win = device.window
    g_min, span = float(win.g_min), float(win.g_max - win.g_min)
    g = _targets(w.detach().double(), scheme, g_min, span, wm)
    g = torch.as_tensor(device.sample_programmed(g, generator), dtype=torch.float64)
    if bake_s > 0:
        g = torch.as_tensor(device.sample_aged(g, bake_s, temp_c + KELVIN_OFFSET, generator),
                            dtype=torch.float64)  # fmt: skip
    if read:
        g = torch.as_tensor(device.sample_read(g, generator), dtype=torch.float64)
    return _weight(g, scheme, g_min, span, wm).to(w.dtype)


@contextlib.contextmanager
def inject(
    net: nn.Module,
    layers: Sequence[str],
    scheme: str,
    device: Any,
    generator: torch.Generator,
    **kwargs: Any,
) -> Iterator[nn.Module]:
    """Within the block, the weights of ``layers`` (module names of ``net``) are the ones
    :func:`effective_weight` gives (``kwargs`` passed on); restored exactly on exit."""
    mods = dict(net.named_modules())
    missing = [n for n in layers if n not in mods]
    if missing:
        raise ConfigError(None, "layers", "names of modules of the network", missing[0])
    saved = {n: mods[n].weight.detach().clone() for n in layers}
    try:
        with torch.no_grad():
            for n in layers:
                mods[n].weight.copy_(effective_weight(saved[n], scheme, device, generator,
                                                      **kwargs))  # fmt: skip
        yield net
    finally:
        with torch.no_grad():
            for n in layers:
                mods[n].weight.copy_(saved[n])


@torch.no_grad()
def _acc(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return float((net(x).argmax(1) == y).double().mean())


def layer_study(
    net: nn.Module,
    dataset: Any,
    device: Any,
    *,
    schemes: Sequence[str] = SCHEMES,
    targets: Sequence[Sequence[str]] | None = None,
    bake_s: Sequence[float] = (0.0, 3600.0),
    temp_c: float = 150.0,
    n_programs: int = 5,
    calib_x: torch.Tensor | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Paper 000's layer-by-layer injection for each mapping ``scheme``: errors in one group
    of layers at a time (``targets``, default: each ``nn.Conv2d`` alone, then all of them),
    ``n_programs`` programmings, right after programming and after each bake in ``bake_s``
    [s] at ``temp_c``. With ``calib_x`` (training images) the accuracy after a BN
    calibration of every BN layer (:func:`cimlab.mitigation.bn_calibration.calibrate_bn`) is
    added. Columns: ``scheme, injected, bake_s, acc, acc_std`` (+ ``acc_bn_cal,
    acc_bn_cal_std``), ``ideal``. The same seeds for both schemes (paired draws)."""
    from cimlab.mitigation.bn_calibration import calibrate_bn, restore_bn, snapshot_bn

    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    groups = [list(t) for t in targets] if targets is not None else [[c] for c in convs] + [convs]
    x, y = dataset.x_test, dataset.y_test
    ideal = _acc(net, x, y)
    base = snapshot_bn(net)
    rows = []
    for scheme in schemes:
        for grp in groups:
            label = grp[0] if len(grp) == 1 else "all conv" if grp == convs else "+".join(grp)
            for t in bake_s:
                accs, accs_bn = [], []
                for k in range(n_programs):
                    gen = torch.Generator().manual_seed(seed * 1000 + k)
                    with inject(net, grp, scheme, device, gen, bake_s=t, temp_c=temp_c):
                        accs.append(_acc(net, x, y))
                        if calib_x is not None:
                            calibrate_bn(net, calib_x)
                            accs_bn.append(_acc(net, x, y))
                            restore_bn(net, base)
                a = torch.tensor(accs, dtype=torch.float64)
                row = {"scheme": scheme, "injected": label, "bake_s": float(t),
                       "acc": float(a.mean()), "acc_std": float(a.std()) if len(a) > 1 else 0.0}
                if accs_bn:
                    b = torch.tensor(accs_bn, dtype=torch.float64)
                    row["acc_bn_cal"] = float(b.mean())
                    row["acc_bn_cal_std"] = float(b.std()) if len(b) > 1 else 0.0
                row["ideal"] = ideal
                rows.append(row)
    return pd.DataFrame(rows)
