"""Chip-in-the-loop backend: a network whose matrix-vector products run on the ReRAM chip.

:class:`ChipNetwork` is the chip's counterpart of :class:`cimlab.sim.AnalogNetwork`: a copy of
the trained network whose ``nn.Linear``/``nn.Conv2d`` layers are :class:`ChipLayer` s placed
on the chip by :func:`cimlab.sim.placement.place_network` and programmed by
:func:`cimlab.sim.program_net.program_network`. Batch norm, activations, pooling and dropout
stay digital on the host, as on a CIM chip (paper 000: "BN, Max Pooling, Dropout, and ReLU are
done by logic computation"), so :func:`cimlab.sim.evaluate` and
:func:`cimlab.mitigation.bn_calibration.calibrate_bn` run on it unchanged.

A layer's forward (the same signal chain as the simulator's tiled forward, paper 001 Fig. 1a):

1. DAC on the host: the input is scaled by its full scale ``xr`` (each batch's max |x|, or a
   range fixed by :meth:`ChipNetwork.calibrate`) and rounded to ``dac_bits`` (signed converter:
   ``2**(bits-1) - 1`` steps per polarity, unsigned ``2**bits - 1``), exactly as
   :class:`cimlab.sim.layers.AnalogLayer`; code ``u`` in [-1, 1] becomes ``u * v_fs`` volts.
   Convolutions are unrolled into patches (``F.unfold``: one input vector per output pixel).
2. Per chip tile, ONE MVM round trip per forward batch: the vectors of every logical
   tile (row group) of this layer on that chip tile are stacked in one batch, each driving only
   its group's ``rows_per_mvm`` rows (all other rows at 0 V); with ``ARR:MVM:ROWS?``
   (protocol 1.3, ``ChipConfig.row_windows``) only those rows' voltages travel, else
   full-width ``ARR:MVM?`` vectors. Negative inputs: ``two_phase``
   (default) applies the positive parts and the magnitudes of the negative parts as two
   vectors of non-negative voltages in the same batch (unipolar row drivers, as most 1T1R
   macros); the column integrator accumulates the first and subtracts the second before one
   conversion (so quantisation equals the simulator's). ``bipolar`` drives negative voltages
   directly (the protocol allows ``|v| <= v_mvm_max``). The bias row (paper 002: input ``s``)
   is driven at ``v_fs * s / xr`` when ``s <= xr``; beyond the DAC's full scale it is measured
   at ``v_fs`` in one extra vector of the same command and scaled by ``s / xr`` digitally
   (nothing is clamped); a bias-only logical tile is measured with one vector per batch.
3. ADC on the host, per logical tile and differential column pair: ``I+ - I-`` is converted
   to weight units (``wmax / (g_max - g_min) * xr / v_fs``) and rounded to ``adc_bits`` over the
   worst-case full scale of the tile computed from the *target* conductances (the simulator's
   ``adc_range="max"``); partial sums are added digitally.

What differs from the simulator's ideal output is physics, not bookkeeping: read noise (fresh
per MVM vector, the simulator's ``read_noise="output"``), exact IR drop of the tile's wires
(the simulator uses a first-order model with the mean segment resistance), relaxation between
the conductance read-back and the MVM, stuck cells and parked cells (~1 uS instead of 0 S).
tests/sim/test_chip_backend.py checks equality with an ideal chip profile.

``effective_weight()`` / ``conductances()`` come from a read-back of the programmed cells
(:meth:`ChipNetwork.read_back`: one ``ARR:READ?`` for every cell of the network).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cimlab.errors import ConfigError
from cimlab.params import check, param
from cimlab.procedures.protocols import CellArray, RowWindowMVM
from cimlab.sim.layer_tree import enable_only, layers_of, replace_submodule
from cimlab.sim.layers import converter_levels
from cimlab.sim.placement import LayerPlacement, NetworkPlacement

INPUT_MODES = ("two_phase", "bipolar")


@dataclass(frozen=True)
class ChipConfig:
    """Host-side converters and MVM drive of the chip-in-the-loop backend."""

    v_fs: float = param(0.1, unit="V", lo=0.0, lo_open=True, hi=10.0,
                        doc="row voltage of a full-scale DAC code (below the read voltage)")
    dac_bits: int | None = param(8, unit="1", lo=1, hi=24, doc="DAC resolution; None: none")
    adc_bits: int | None = param(8, unit="1", lo=1, hi=24, doc="ADC resolution; None: none")
    input_mode: str = param("two_phase", choices=INPUT_MODES,
                            doc="negative inputs: two non-negative phases, or bipolar rows")
    max_vectors: int = param(1 << 17, unit="1", lo=1,
                             doc="largest MVM batch per command (bigger batches are split)")
    row_windows: bool = param(True, doc="send only the driven rows of each logical tile "
                              "(ARR:MVM:ROWS?, protocol 1.3) when the array supports it; "
                              "False: full-width vectors (ARR:MVM?)")

    def __post_init__(self) -> None:
        check(self)


class ChipBackend:
    """The station's array driver plus round-trip accounting shared by all chip layers."""

    def __init__(self, array: CellArray, config: ChipConfig | None = None):
        self.array = array
        self.config = config or ChipConfig()
        self.round_trips = 0
        self.vectors = 0
        #: (layer name, chip tile, vectors) of every MVM command, for tests and reports
        self.log: list[tuple[str, int, int]] = []
        self.keep_log = False

    def mvm(self, tile: int, v: np.ndarray, layer: str = "") -> np.ndarray:
        """Column currents [A] of chip ``tile`` for row voltages ``v`` (batch, rows) [V]."""
        out = []
        step = self.config.max_vectors
        for i in range(0, v.shape[0], step):
            out.append(np.asarray(self.array.mvm(int(tile), v[i:i + step]), dtype=np.float64))
            self.round_trips += 1
            self.vectors += min(step, v.shape[0] - i)
            if self.keep_log:
                self.log.append((layer, int(tile), min(step, v.shape[0] - i)))
        return np.concatenate(out, axis=0) if len(out) > 1 else out[0]

    @property
    def windows(self) -> bool:
        """The array drives row windows (``ARR:MVM:ROWS?``) and the config allows it."""
        return self.config.row_windows and isinstance(self.array, RowWindowMVM)

    def mvm_windows(self, tile: int, windows: list[tuple[int, np.ndarray]], rows: int,
                    layer: str = "") -> list[np.ndarray]:
        """Column currents [A] of chip ``tile`` (``rows`` rows) per row window
        ``(first_row, v (vectors, n))`` [V], every other row at 0 V. With :attr:`windows` only
        the driven rows travel (``ARR:MVM:ROWS?``, protocol 1.3; one round trip per
        message-sized part); otherwise the windows go out as full-width vectors in one
        :meth:`mvm` (``ARR:MVM?``)."""
        n = [v.shape[0] for _, v in windows]
        if not self.windows:
            full = np.zeros((sum(n), int(rows)))
            pos = 0
            for (first, v), k in zip(windows, n, strict=True):
                full[pos:pos + k, first:first + v.shape[1]] = v
                pos += k
            return np.split(self.mvm(tile, full, layer), np.cumsum(n)[:-1])
        assert isinstance(self.array, RowWindowMVM)
        out = self.array.mvm_windows(int(tile), windows)
        self.round_trips += int(self.array.last_round_trips)
        self.vectors += sum(n)
        if self.keep_log:
            self.log.append((layer, int(tile), sum(n)))
        return [np.asarray(o, dtype=np.float64) for o in out]


class ChipLayer(nn.Module):
    """A Linear/Conv2d layer whose matrix-vector products run on the chip: the input is
    DAC-quantized on the host, each chip tile gets one ``ARR:MVM?`` round trip per batch, the
    column currents are digitized (ADC) and the partial sums added digitally."""

    def __init__(self, base: nn.Module, placement: LayerPlacement, backend: ChipBackend,
                 chip_rows: int):
        super().__init__()
        self.chip_rows = int(chip_rows)
        self.base = base
        self.placement = placement
        self.backend = backend
        self.layer_name = placement.name
        self.kind = placement.kind
        self.enabled = True
        self.programmed = True
        self.calibrating = 0
        self.x_range: float | None = None
        self.x_signed: bool | None = None
        lp = placement
        lay = lp.layout
        self._row_index = lay.row_index().numpy()  # (nt, rl): W~ row, k = bias, k+1 = empty
        self._groups: dict[int, list[tuple[int, int, int]]] = {}
        for rt, ct, tile, row0 in lp.tiles:
            self._groups.setdefault(tile, []).append((rt, ct, row0))
        g_t = torch.as_tensor(lp.g_target, dtype=torch.float64)
        self.register_buffer("g_target", g_t, persistent=False)
        self.register_buffer("g_cells", g_t.clone(), persistent=False)
        self._adc_a, self._adc_b = _adc_terms(g_t, lay, lp.bias_scale)

    # ------------------------------------------------------------------ state
    @property
    def mapping(self):
        return self.placement.mapping

    @property
    def layout(self):
        return self.placement.layout

    @property
    def bias_s(self) -> float:
        return self.placement.bias_scale

    def set_conductances(self, g: torch.Tensor | np.ndarray) -> None:
        """Install read-back conductances [S], shape ``(2, S, out, k + has_bias)``."""
        g = torch.as_tensor(np.asarray(g, dtype=np.float64)).reshape(self.g_target.shape)
        self.g_cells = g

    def conductances(self) -> torch.Tensor:
        """Read-back conductances [S] (2, S, out, rows) (G+ and G-, bias row last)."""
        return self.g_cells

    def effective_weight(self) -> torch.Tensor:
        """Weight the read-back cells represent (no IR drop, no converters)."""
        w = self.mapping.weights(self.g_cells)
        k = self.layout.k
        return w[:, :k].reshape(self.base.weight.shape).to(self.base.weight.dtype)

    def effective_bias(self) -> torch.Tensor | None:
        if not self.layout.has_bias:
            return None
        w = self.mapping.weights(self.g_cells)
        return (w[:, self.layout.k] * self.bias_s).to(self.base.weight.dtype)

    def summary(self) -> dict[str, Any]:
        lp = self.placement
        return {"layer": self.layer_name, "kind": self.kind, "enabled": self.enabled,
                "cells": int(lp.cells.size), "logical_tiles": len(lp.tiles),
                "chip_tiles": sorted(self._groups), "wmax": lp.mapping.wmax,
                "bias_scale": lp.bias_scale}

    def extra_repr(self) -> str:
        return (f"name={self.layer_name!r}, chip tiles {sorted(self._groups)}, "
                f"enabled={self.enabled}")

    # ------------------------------------------------------------------ forward
    def _input_range(self, x: torch.Tensor) -> tuple[float, bool]:
        """Same rule as the simulator: calibrated range, or this batch's max |x|."""
        if self.calibrating == 1:
            amax = float(x.detach().abs().max())
            self.x_range = max(self.x_range or 0.0, amax)
            self.x_signed = bool(self.x_signed) or bool((x < 0).any())
        if self.x_range is not None and self.calibrating != 1:
            return (self.x_range if self.x_range > 0 else 1.0), bool(self.x_signed)
        amax = float(x.detach().abs().max())
        return (amax if amax > 0 else 1.0), bool((x < 0).any())

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.enabled:
            return self.base(x)
        cfg = self.backend.config
        xr, signed = self._input_range(x)
        u = x.detach().double() / xr
        if cfg.dac_bits is not None:
            q = converter_levels(cfg.dac_bits, signed)
            u = torch.round(u.clamp(-1.0 if signed else 0.0, 1.0) * q) / q
        if self.kind == "conv":
            b = self.base
            cols = F.unfold(u, b.kernel_size, b.dilation, b.padding, b.stride)  # (N, K, L)
            n, _, n_pix = cols.shape
            h_out, w_out = _conv_out_hw(x.shape[-2:], b)
            mat = cols.transpose(1, 2).reshape(n * n_pix, -1)
        else:
            lead = x.shape[:-1]
            mat = u.reshape(-1, u.shape[-1])
        y = self._mvm(mat, xr, signed)  # (M, out) weight units, float64
        if self.kind == "conv":
            y = y.reshape(n, n_pix, -1).transpose(1, 2).reshape(n, -1, h_out, w_out)
        else:
            y = y.reshape(*lead, y.shape[-1])
        return y.to(x.dtype)

    def _mvm(self, u: torch.Tensor, xr: float, signed: bool) -> torch.Tensor:
        """Chip partial sums for codes ``u`` (M, k) -> digitally added outputs (M, out)."""
        cfg = self.backend.config
        lp, lay = self.placement, self.layout
        m_vec = u.shape[0]
        k = lay.k
        s_n, out = lp.slices, lp.out
        per_col = lay.per_col
        n_rows_chip = self.chip_rows
        bias_u = self.bias_s / xr if lay.has_bias else 0.0
        # The bias row (input s, paper 002) is driven at v_fs * s / xr when that lies within
        # the DAC's full scale; otherwise it is measured once per batch at full scale in an
        # extra vector of the same command and scaled by s / xr digitally (never clamped).
        bias_extra = bias_u > 1.0
        # augmented input: [u, bias, empty]
        aug = np.zeros((m_vec, k + 2))
        aug[:, :k] = u.numpy()
        aug[:, k] = 0.0 if bias_extra else bias_u
        unit_bias = np.zeros((1, k + 2))
        unit_bias[0, k] = 1.0
        two = signed and cfg.input_mode == "two_phase"
        f = self.mapping.slice_factors(dtype=torch.float64).numpy()  # (S,) weight per S
        to_w = xr / cfg.v_fs
        nt = lay.n_tiles_total
        psum = np.zeros((nt, m_vec, s_n, lay.n_col_tiles * per_col))
        used = 2 * s_n * per_col

        for tile, groups in self._groups.items():
            wins: list[tuple[int, np.ndarray]] = []
            spans = []
            for rt, ct, row0 in groups:
                idx = self._row_index[rt]
                with_bias = lay.has_bias and rt == lay.bias_tile
                only_bias = with_bias and rt >= lay.n_row_tiles
                if only_bias:  # a bias-only logical tile: one vector per batch
                    src = unit_bias if bias_extra else aug[:1]
                else:
                    src = aug
                # the rows this logical tile uses (not its empty tail); all others at 0 V
                rows_used = idx[:int(np.flatnonzero(idx != k + 1).max(initial=-1)) + 1]
                v = src[:, rows_used] * cfg.v_fs
                group = ([np.maximum(v, 0.0), np.maximum(-v, 0.0)] if two and not only_bias
                         else [v])
                extra = with_bias and bias_extra and not only_bias
                if extra:
                    group.append(unit_bias[:, rows_used] * cfg.v_fs)
                wins.append((row0, np.concatenate(group, axis=0)))
                spans.append((rt, ct, src.shape[0], two and not only_bias, extra,
                              bias_u if (bias_extra and only_bias) else 1.0))
            cur = np.concatenate(self.backend.mvm_windows(tile, wins, n_rows_chip,
                                                          self.layer_name))
            pos = 0
            for rt, ct, nv, is_two, extra, scale in spans:
                i_t = cur[pos:pos + nv] * scale
                pos += nv
                if is_two:
                    i_t = i_t - cur[pos:pos + nv]
                    pos += nv
                if extra:
                    i_t = i_t + bias_u * cur[pos:pos + 1]
                    pos += 1
                d = i_t[:, :used].reshape(nv, per_col, s_n, 2)
                diff = (d[..., 0] - d[..., 1]) * f[None, None, :] * to_w  # (nv, per_col, S)
                psum[rt, :, :, ct * per_col:(ct + 1) * per_col] = diff.transpose(0, 2, 1)
        psum = psum[..., :out]
        if cfg.adc_bits is not None and self.calibrating != 1:
            q = converter_levels(cfg.adc_bits, True)
            r = self.adc_ranges(xr, f)  # (nt, S, out)
            psum = np.round(np.clip(psum / r[:, None], -1.0, 1.0) * q) * (r[:, None] / q)
        return torch.from_numpy(psum.sum(axis=(0, 2)))

    def adc_ranges(self, xr: float, f: np.ndarray) -> np.ndarray:
        """Per (row tile, slice, out) ADC full scale in weight units (simulator's "max") for
        input range ``xr`` and slice factors ``f`` (``mapping.slice_factors``), shape
        (row tiles, slices, out); one LSB is this over the ADC's positive levels."""
        lay = self.layout
        full = self._adc_a * xr + self._adc_b  # (nt, S, out) [S]
        nt, s_n, out = full.shape
        pad = lay.n_col_tiles * lay.per_col - out
        if pad:
            full = np.concatenate([full, np.zeros((nt, s_n, pad))], axis=-1)
        per_tile = full.reshape(nt, s_n, lay.n_col_tiles, lay.per_col).max(axis=(1, 3))
        r = np.repeat(per_tile, lay.per_col, axis=1)[:, :out]
        r = r[:, None, :] * f[None, :, None]
        return np.maximum(r, np.finfo(float).tiny)


def _conv_out_hw(hw: Sequence[int], b: nn.Conv2d) -> tuple[int, int]:
    out = []
    for i, size in enumerate(hw):
        k, p, d, s = b.kernel_size[i], b.padding[i], b.dilation[i], b.stride[i]
        out.append((int(size) + 2 * p - d * (k - 1) - 1) // s + 1)
    return out[0], out[1]


def _adc_terms(g_t: torch.Tensor, lay: Any, bias_s: float) -> tuple[np.ndarray, np.ndarray]:
    """``adc_a`` (sum |dG| of each row tile's weight rows) and ``adc_b`` (bias row x s), both
    (n_tiles_total, S, out) [S], computed as the simulator does (from the targets)."""
    dt = (g_t[0] - g_t[1]).abs().numpy()  # (S, out, rows)
    s_n, out = dt.shape[0], dt.shape[1]
    k = lay.k
    nt = lay.n_tiles_total
    rows_main = np.zeros((s_n, out, nt * lay.stride))
    rows_main[..., :k] = dt[..., :k]
    a = rows_main.reshape(s_n, out, nt, lay.stride).sum(-1).transpose(2, 0, 1)
    b = np.zeros_like(a)
    if lay.has_bias:
        b[lay.bias_tile] = dt[..., k] * bias_s
    return np.ascontiguousarray(a), b


class ChipNetwork(nn.Module):
    """A network whose ``nn.Linear``/``nn.Conv2d`` layers run on the ReRAM chip
    (:class:`ChipLayer`), placed by :func:`cimlab.sim.placement.place_network`; batch norm,
    activations, pooling and dropout stay digital on the host (the chip's counterpart of
    :class:`cimlab.sim.AnalogNetwork`).

    ``chipnet.net`` is the converted copy (its BN layers are the ones BN calibration updates);
    ``chipnet.layers`` maps qualified names to :class:`ChipLayer` s.
    """

    def __init__(self, net: nn.Module, placement: NetworkPlacement, array: CellArray,
                 config: ChipConfig | None = None):
        super().__init__()
        net = copy.deepcopy(net).eval()
        self.placement = placement
        self.backend = ChipBackend(array, config)
        self.config = self.backend.config
        mods = dict(net.named_modules())
        for name, lp in placement.layers.items():
            base = mods.get(name)
            if not isinstance(base, (nn.Linear, nn.Conv2d)):
                raise ConfigError(None, f"placement layer {name}",
                                  "a Linear/Conv2d layer of the network", type(base).__name__)
            if tuple(base.weight.shape) != tuple(lp.weight_shape):
                raise ConfigError(None, f"placement layer {name}",
                                  f"weight shape {tuple(lp.weight_shape)}",
                                  tuple(base.weight.shape))
            replace_submodule(net, name, ChipLayer(base, lp, self.backend, placement.geometry[1]))
        self.net = net

    @property
    def layers(self) -> dict[str, ChipLayer]:
        return layers_of(self, ChipLayer)

    @property
    def layer_names(self) -> list[str]:
        return list(self.layers)

    def set_injection(self, names: Iterable[str] | None) -> None:
        """Run only layers ``names`` on the chip (None: all); the others compute digitally."""
        enable_only(self.layers, names, "chip layer")

    @property
    def round_trips(self) -> int:
        return self.backend.round_trips

    @torch.no_grad()
    def read_back(self, array: CellArray | None = None) -> np.ndarray:
        """Read every network cell once (one ``ARR:READ?``) and install the conductances in
        the layers; returns them [S] in the order of ``placement.all_cells()``."""
        arr = array if array is not None else self.backend.array
        g = np.asarray(arr.read(self.placement.all_cells()), dtype=np.float64)
        self.set_conductances(g)
        return g

    def set_conductances(self, g: np.ndarray) -> None:
        """Install conductances [S] given in the order of ``placement.all_cells()``."""
        pos = 0
        layers = self.layers
        for name, lp in self.placement.layers.items():
            n = lp.cells.size
            layers[name].set_conductances(g[pos:pos + n])
            pos += n

    @torch.no_grad()
    def calibrate(self, batches: Iterable[Any], max_batches: int | None = None) -> ChipNetwork:
        """Fix every layer's DAC full scale to the max |input| seen on ``batches`` (as
        :meth:`cimlab.sim.AnalogNetwork.calibrate`; the chip computes without ADC meanwhile)."""
        layers = list(self.layers.values())
        for layer in layers:
            layer.calibrating, layer.x_range, layer.x_signed = 1, None, False
        try:
            for i, batch in enumerate(batches):
                if max_batches is not None and i >= max_batches:
                    break
                self(batch[0] if isinstance(batch, (tuple, list)) else batch)
        finally:
            for layer in layers:
                layer.calibrating = 0
        return self

    def summary(self) -> list[dict[str, Any]]:
        return [layer.summary() for layer in self.layers.values()]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


__all__ = ["INPUT_MODES", "ChipBackend", "ChipConfig", "ChipLayer", "ChipNetwork"]
