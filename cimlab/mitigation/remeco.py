"""ReMeCo: sensitivity-guided hardware redundancy (paper 004, BanaGozar et al.).

A trained network is mapped onto bit-sliced ReRAM crossbars and evaluated under the three
non-idealities of paper 004 (its "Implementation notes"):

* 8-bit weights, 4-bit cells, 2-column bit slicing (an MSB and an LSB cell per weight) and
  signed weights on a differential pair of columns: 4 cells per weight;
* stuck-at faults: 1 % of cells, 16.2 % of them stuck-off (``g_min``) and 83.8 % stuck-on
  (``g_max``);
* IR drop: wire segment resistance ~ N(2 ohm, sigma^2 = 0.5 ohm^2) per array, first-order
  (linearised) nodal model: word-line and bit-line segment currents are the cumulative cell
  currents, so a cell far from the driver and the sense amplifier sees
  ``v (1 - a_row - a_col)`` (all inputs at the read voltage times ``input_activity``);
* device-to-device programming variation: Gaussian, sigma per cell from the device model
  (``DeviceModel.programming.sigma(g)``) or a fraction of the conductance range.

Redundancy schemes (paper 004, "ReMeCo" steps 1-5), each an independently faulty copy of the
duplicated hardware whose outputs are averaged digitally:

==================  ======================================================================
``base``            one mapping, no redundancy
``committee``       committee machine (Joksas et al., Nat. Commun. 2020): N whole networks,
                    softmax outputs averaged (N = 2: 100 % redundancy, the paper's CM)
``layer_avg``       every layer duplicated, layer outputs averaged before the activation
``sensitive_neuron`` the most sensitive ``fraction`` of neurons duplicated (all their cells)
``msb``             the MSB slice of the most sensitive ``fraction`` of neurons duplicated
``sensitive_layer`` the most sensitive layer duplicated
==================  ======================================================================

Averaging two copies of a linear layer's output is exactly a layer with the mean effective
weights, which is how it is computed here. Overheads are counted from the hardware:
**area** = number of ReRAM cells; **energy** = number of cell reads per inference (cells times
the output positions a convolution slides over), each relative to ``base``.
Sensitivity: :mod:`cimlab.mitigation.sensitivity`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from cimlab.params import check, param

__all__ = [
    "PAPER_TABLE",
    "SCHEMES",
    "CrossbarNonideality",
    "SchemeResult",
    "map_layer",
    "overheads",
    "remeco_table",
]

SCHEMES = ("base", "committee", "layer_avg", "sensitive_neuron", "msb", "sensitive_layer")

#: Paper 004's results table (LeNet/MNIST and AlexNet/CIFAR-10): accuracy [%], area [mm^2],
#: energy [paper's unit: nJ for LeNet, uJ for AlexNet]. Software accuracy 98.8 and 80.1 %.
PAPER_TABLE = {
    "LeNet": {
        "software": 98.8,
        "base": (94.4, 7.23e-3, 897.1),
        "committee": (96.9, 13.63e-3, 1791.2),
        "layer_avg": (97.2, 13.64e-3, 1791.6),
        "sensitive_neuron": (97.2, 12.35e-3, 1612.7),
        "msb": (97.4, 9.79e-3, 1254.9),
        "sensitive_layer": (96.4, 7.53e-3, 1211.1),
    },
    "AlexNet": {
        "software": 80.1,
        "base": (78.11, 1.41, 1.84),
        "committee": (78.5, 2.78, 3.68),
        "layer_avg": (78.7, 2.78, 3.68),
        "sensitive_neuron": (78.8, 2.51, 3.31),
        "msb": (78.9, 1.96, 2.58),
        "sensitive_layer": (78.9, 1.45, 2.54),
    },
}


@dataclass(frozen=True)
class CrossbarNonideality:
    """Non-idealities of paper 004's crossbar model (defaults: its implementation notes)."""

    weight_bits: int = param(8, unit="1", lo=2, hi=16, doc="weight quantization (paper 004: 8)")
    cell_bits: int = param(4, unit="1", lo=1, hi=8, doc="bits per cell (paper 004: 4-bit cells)")
    g_min: float = param(2e-6, unit="S", lo=0.0, doc="off conductance (paper 000 window)")
    g_max: float = param(40e-6, unit="S", lo=0.0, lo_open=True, doc="on conductance")
    p_stuck: float = param(0.01, unit="1", lo=0.0, hi=1.0, doc="stuck cells (paper 004: 1 %)")
    frac_stuck_off: float = param(
        0.162, unit="1", lo=0.0, hi=1.0, doc="stuck cells that are stuck-off (paper 004: 16.2 %)"
    )
    r_wire_mean_ohm: float = param(2.0, unit="ohm", lo=0.0, doc="wire segment R mean (paper 004)")
    r_wire_sigma_ohm: float = param(
        math.sqrt(0.5), unit="ohm", lo=0.0, doc="wire segment R std (paper 004: variance 0.5)"
    )
    sigma_frac: float = param(
        0.0156, unit="1", lo=0.0, doc="programming sigma / (g_max - g_min) (paper 001: 1.56 %)"
    )
    input_activity: float = param(
        1.0, unit="1", lo=0.0, hi=1.0, doc="mean input / read voltage for IR drop (1: worst)"
    )
    rows: int = param(256, unit="1", lo=1, doc="crossbar rows per array (paper 001: 256)")
    cols: int = param(64, unit="1", lo=4, doc="crossbar columns per array (paper 001: 64)")

    def __post_init__(self) -> None:
        check(self)
        if self.weight_bits % self.cell_bits:
            raise ValueError("CrossbarNonideality: weight_bits must be a multiple of cell_bits")
        if self.g_max <= self.g_min:
            raise ValueError("CrossbarNonideality: g_max must exceed g_min")

    @property
    def n_slices(self) -> int:
        return self.weight_bits // self.cell_bits

    @classmethod
    def from_device_model(cls, dm, **overrides) -> CrossbarNonideality:
        """Window, stuck-at fractions, wire resistance and programming sigma from a
        :class:`cimlab.models.DeviceModel` (sigma: mean of ``programming.sigma`` over the
        cell's levels, as a fraction of the range). ``overrides`` replace single fields."""
        import numpy as np

        g_min, g_max = float(dm.window.g_min), float(dm.window.g_max)
        kw = dict(g_min=g_min, g_max=g_max)
        p_on, p_off = float(dm.stuck.p_stuck_on), float(dm.stuck.p_stuck_off)
        kw["p_stuck"] = p_on + p_off
        if p_on + p_off > 0:
            kw["frac_stuck_off"] = p_off / (p_on + p_off)
        kw["r_wire_mean_ohm"] = float(dm.wire.r_segment_ohm)
        kw["r_wire_sigma_ohm"] = float(getattr(dm.wire, "r_sigma_ohm", math.sqrt(0.5)))
        cell_bits = overrides.get("cell_bits", 4)
        levels = np.linspace(g_min, g_max, 2**cell_bits)
        kw["sigma_frac"] = float(np.mean(dm.programming.sigma(levels))) / (g_max - g_min)
        kw.update(overrides)
        return cls(**kw)


def _as_matrix(w: torch.Tensor) -> torch.Tensor:
    return w.detach().reshape(w.shape[0], -1).double()


def _ir_factor(g: torch.Tensor, r_seg: torch.Tensor, activity: float) -> torch.Tensor:
    """Voltage fraction across each cell of one array g (rows, cols) [S] (first order).

    Word line: driver at column 0, segment k carries the currents of cells at columns >= k.
    Bit line: sense amplifier (virtual ground) below the last row, segment k carries the
    currents of rows <= k. Returns 1 - a_row - a_col.
    """
    seg_row = torch.flip(torch.cumsum(torch.flip(g, [1]), 1), [1])  # currents per unit V
    a_row = torch.cumsum(seg_row, 1)
    seg_col = torch.cumsum(g, 0)
    a_col = torch.flip(torch.cumsum(torch.flip(seg_col, [0]), 0), [0])
    return 1.0 - activity * r_seg * (a_row + a_col)


def map_layer(
    w: torch.Tensor, ni: CrossbarNonideality, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One faulty mapping of weight ``w`` (out, ...): returns (msb_part, rest) in weight units.

    ``msb_part + rest`` is the effective weight read back; ``msb_part`` is what the most
    significant slice contributes (for MSB redundancy). Arrays of ``rows x cols`` cells hold
    the 4 * in cells of each output neuron's columns (differential pair x slices).
    """
    wm = _as_matrix(w)  # (out, in)
    n_out, n_in = wm.shape
    scale = float(wm.abs().max())
    if scale == 0.0:
        z = torch.zeros_like(w)
        return z, z
    qmax = 2**ni.weight_bits - 1
    lmax = 2**ni.cell_bits - 1
    q = torch.round(wm.abs() / scale * qmax)
    halves = (q * (wm > 0), q * (wm < 0))
    # levels[s, h]: slice s (0 = MSB) of half h (0 = positive), shape (out, in)
    levels = []
    for s in range(ni.n_slices):
        shift = ni.cell_bits * (ni.n_slices - 1 - s)
        levels.append([torch.floor(hq / 2**shift) % 2**ni.cell_bits for hq in halves])
    dg = (ni.g_max - ni.g_min) / lmax
    # physical layout: column index = neuron * n_cols_per_neuron + slot, rows = inputs
    slots = [(s, h) for s in range(ni.n_slices) for h in range(2)]
    g_target = torch.stack([ni.g_min + levels[s][h] * dg for s, h in slots], dim=1)  # (o,k,i)
    g = g_target + torch.randn(g_target.shape, generator=generator, dtype=torch.float64) * (
        ni.sigma_frac * (ni.g_max - ni.g_min)
    )
    u = torch.rand(g.shape, generator=generator, dtype=torch.float64)
    stuck_off = u < ni.p_stuck * ni.frac_stuck_off
    stuck_on = (u >= ni.p_stuck * ni.frac_stuck_off) & (u < ni.p_stuck)
    g = torch.where(stuck_on, torch.full_like(g, ni.g_max), g)
    g = torch.where(stuck_off, torch.full_like(g, ni.g_min), g)
    g = g.clamp_min(0.0)  # a conductance cannot be negative: physical, not a silent limit
    # crossbar layout (rows = inputs, cols = out*slots), split into arrays, IR drop per array
    cross = g.permute(2, 0, 1).reshape(n_in, n_out * len(slots))
    eff = torch.empty_like(cross)
    for r0 in range(0, n_in, ni.rows):
        for c0 in range(0, cross.shape[1], ni.cols):
            blk = cross[r0 : r0 + ni.rows, c0 : c0 + ni.cols]
            r_seg = _wire_r(ni, generator)
            eff[r0 : r0 + ni.rows, c0 : c0 + ni.cols] = blk * _ir_factor(
                blk, r_seg, ni.input_activity
            )
    g_eff = eff.reshape(n_in, n_out, len(slots)).permute(1, 2, 0)  # (o, k, i)
    lev = (g_eff - ni.g_min) / dg  # periphery subtracts the g_min reference column
    parts = []
    for s in range(ni.n_slices):
        shift = ni.cell_bits * (ni.n_slices - 1 - s)
        k_pos, k_neg = slots.index((s, 0)), slots.index((s, 1))
        parts.append((lev[:, k_pos] - lev[:, k_neg]) * 2**shift)
    msb = parts[0] * scale / qmax
    rest = sum(parts[1:], torch.zeros_like(msb)) * scale / qmax
    return msb.reshape(w.shape).to(w.dtype), rest.reshape(w.shape).to(w.dtype)


def _wire_r(ni: CrossbarNonideality, generator: torch.Generator) -> float:
    """One array's wire segment resistance ~ N(mean, sigma), redrawn if <= 0 (truncated)."""
    for _ in range(100):
        r = ni.r_wire_mean_ohm + ni.r_wire_sigma_ohm * float(
            torch.randn((), generator=generator, dtype=torch.float64)
        )
        if r > 0:
            return r
    return ni.r_wire_mean_ohm


def _crossbar_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (n, m)
        for n, m in model.named_modules()
        if n and isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
    ]


def _output_positions(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """Output positions per input for each crossbar layer (1 for linear, H*W for conv)."""
    pos: dict[str, int] = {}
    hooks = []
    for n, m in _crossbar_modules(model):

        def hook(_m, _i, y, _n=n):
            pos[_n] = int(y[0].numel() // y.shape[1])

        hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    with torch.no_grad():
        model(example[:1])
    model.train(was)
    for h in hooks:
        h.remove()
    return pos


def overheads(
    model: nn.Module,
    example: torch.Tensor,
    scheme: str,
    *,
    neuron_mask: dict[str, torch.Tensor] | None = None,
    layers: Sequence[str] = (),
    n_slices: int = 2,
) -> tuple[float, float]:
    """(cells, cell reads per inference) of ``scheme`` (see module docstring)."""
    pos = _output_positions(model, example)
    cells = reads = 0.0
    for n, m in _crossbar_modules(model):
        fan_in = m.weight[0].numel()
        per_neuron = 2 * n_slices * fan_in  # differential pair x slices
        n_out = m.weight.shape[0]
        base_c = per_neuron * n_out
        if scheme in ("base",):
            extra = 0.0
        elif scheme in ("committee", "layer_avg"):
            extra = base_c
        elif scheme == "sensitive_layer":
            extra = base_c if n in layers else 0.0
        elif scheme == "sensitive_neuron":
            extra = per_neuron * float(neuron_mask[n].sum())
        elif scheme == "msb":
            extra = 2 * fan_in * float(neuron_mask[n].sum())  # one slice, both halves
        else:
            raise ValueError(f"overheads: unknown scheme {scheme!r}; one of {SCHEMES}")
        cells += base_c + extra
        reads += (base_c + extra) * pos[n]
    return cells, reads


@dataclass(frozen=True)
class SchemeResult:
    """Accuracy over chip instances and hardware cost of one redundancy scheme."""

    scheme: str
    accuracy: tuple[float, ...]
    cells: float
    cell_reads: float

    @property
    def mean(self) -> float:
        return float(sum(self.accuracy) / len(self.accuracy))

    @property
    def std(self) -> float:
        a = torch.tensor(self.accuracy, dtype=torch.float64)
        return float(a.std()) if len(a) > 1 else 0.0


def _apply(model: nn.Module, weights: dict[str, torch.Tensor]) -> nn.Module:
    net = copy.deepcopy(model).eval()
    mods = dict(net.named_modules())
    with torch.no_grad():
        for n, w in weights.items():
            mods[n].weight.copy_(w)
    return net


@torch.no_grad()
def _accuracy_probs(nets: Sequence[nn.Module], x: torch.Tensor, y: torch.Tensor) -> float:
    p = sum(torch.softmax(net(x), dim=1) for net in nets)
    return float((p.argmax(1) == y).double().mean())


def remeco_table(
    model: nn.Module,
    x_test: torch.Tensor,
    y_test: torch.Tensor,
    neuron_mask: dict[str, torch.Tensor],
    sensitive_layers: Sequence[str],
    *,
    ni: CrossbarNonideality | None = None,
    n_instances: int = 10,
    seed: int = 0,
    schemes: Sequence[str] = SCHEMES,
) -> dict[str, SchemeResult]:
    """Evaluate every scheme on ``n_instances`` faulty chips (common random numbers).

    Each instance draws two independent mappings of every layer (copy A and copy B, seeded
    from ``seed`` and the instance index); every scheme of that instance uses copy A as its
    primary hardware and copy B as the redundant one, so differences between schemes are
    not masked by chip-to-chip spread. ``neuron_mask`` (from
    :meth:`Sensitivity.top_neurons`) selects the neurons for ``sensitive_neuron`` and
    ``msb``; ``sensitive_layers`` for ``sensitive_layer``.
    """
    ni = ni or CrossbarNonideality()
    unknown = [s for s in schemes if s not in SCHEMES]
    if unknown:
        raise ValueError(f"remeco_table: unknown schemes {unknown}; choose from {SCHEMES}")
    mods = _crossbar_modules(model)
    acc: dict[str, list[float]] = {s: [] for s in schemes}
    for k in range(n_instances):
        gen = torch.Generator().manual_seed(seed * 100_003 + k)
        a = {n: map_layer(m.weight, ni, gen) for n, m in mods}
        b = {n: map_layer(m.weight, ni, gen) for n, m in mods}
        wa = {n: a[n][0] + a[n][1] for n in a}
        wb = {n: b[n][0] + b[n][1] for n in b}
        for s in schemes:
            if s == "committee":
                acc[s].append(_accuracy_probs([_apply(model, wa), _apply(model, wb)],
                                              x_test, y_test))  # fmt: skip
                continue
            w = {}
            for n, _m in mods:
                avg = (wa[n] + wb[n]) / 2
                if s == "base":
                    w[n] = wa[n]
                elif s == "layer_avg":
                    w[n] = avg
                elif s == "sensitive_layer":
                    w[n] = avg if n in sensitive_layers else wa[n]
                else:
                    mask = neuron_mask[n].view(-1, *([1] * (wa[n].ndim - 1)))
                    alt = avg if s == "sensitive_neuron" else (a[n][0] + b[n][0]) / 2 + a[n][1]
                    w[n] = torch.where(mask, alt, wa[n])
            acc[s].append(_accuracy_probs([_apply(model, w)], x_test, y_test))
    out = {}
    for s in schemes:
        cells, reads = overheads(
            model, x_test, s, neuron_mask=neuron_mask, layers=sensitive_layers,
            n_slices=ni.n_slices,
        )  # fmt: skip
        out[s] = SchemeResult(s, tuple(acc[s]), cells, reads)
    return out
