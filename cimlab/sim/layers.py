"""Analog (ReRAM crossbar) replacements of ``nn.Linear`` and ``nn.Conv2d``.

An :class:`AnalogLayer` wraps the trained layer (``layer.base``, left untouched) and holds
the state of its programmed cells. The interface every backend (this simulator, the
chip-in-the-loop backend, mitigations) relies on, docs/architecture.md section 8:

* ``program(generator)``: map the weights onto conductances (mapping.py), draw programming
  error and stuck-at faults once from the device model, reset the retention clock;
* ``age(seconds, temp_k)``: relaxation over ``seconds`` at ``temp_k`` (Arrhenius-equivalent
  room-temperature time), with independent increments, so ``age(a); age(b)`` is distributed
  as ``age(a + b)`` at one temperature;
* ``forward(x)``: the crossbar MVM with DAC, read noise, IR drop, tiles and per-tile ADC;
  the ideal layer (``base``) when ``enabled`` is False (selective injection, paper 000);
* ``effective_weight()``: the weight the programmed array currently represents (no read noise);
* ``conductances()``: the cells (2, slices, out, rows) [S] (G+ and G-, bias row last).

The layer is assembled from parts kept apart the way aihwkit keeps tiles and periphery apart
from its ``nn`` modules:

* :mod:`cimlab.sim.crossbar` (:class:`CrossbarState`): the programmed cells, programming
  error, stuck-at faults, aging;
* :mod:`cimlab.sim.effective` (:class:`EffectiveArrays`): what the forward pass reads,
  derived from the cells once per ``program()``/``age()`` (IR drop, read-noise sigmas, the
  per-tile arrangement, worst-case ADC ranges);
* :mod:`cimlab.sim.periphery` (:class:`Periphery`): DAC, ADC and read-noise draws;
* :mod:`cimlab.sim.geometry` (:class:`LinearGeometry`, :class:`ConvGeometry`): how the layer
  lies on the tiles and how partial sums are laid out;
* this module: the ``nn.Module`` classes and the forward pass. ``forward`` only adds the
  per-call work: DAC rounding, read-noise draws and ADC rounding.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim.config import AnalogConfig
from cimlab.sim.crossbar import CHUNK_CELLS, ZERO_C_K, CrossbarState, temp_c_to_k
from cimlab.sim.effective import DERIVED, EffectiveArrays
from cimlab.sim.geometry import ConvGeometry, LinearGeometry, TileGeometry
from cimlab.sim.periphery import (
    NOISE_SPLIT,
    NOISE_STREAMS,
    Periphery,
    converter_levels,
    quantize,
)

if TYPE_CHECKING:
    from cimlab.models import DeviceModel

__all__ = [
    "CHUNK_CELLS",
    "NOISE_SPLIT",
    "NOISE_STREAMS",
    "PSUM_CHUNK",
    "ZERO_C_K",
    "AnalogConv2d",
    "AnalogLayer",
    "AnalogLinear",
    "converter_levels",
    "quantize",
    "temp_c_to_k",
]

#: Partial sums per chunk of the tiled forward (elements; 4 Mi float32 = 16 MiB).
PSUM_CHUNK = 1 << 22


class AnalogLayer(CrossbarState, EffectiveArrays, Periphery, TileGeometry, nn.Module):
    """Base of :class:`AnalogLinear` / :class:`AnalogConv2d` (module docstring).

    Composed of the crossbar state (``program``, ``age``, ``conductances``), the derived
    arrays (``_refresh``, ``effective_weight``), the periphery (DAC/ADC/read noise) and, in
    the concrete classes, a layer geometry; this class adds the ``nn.Module`` and the forward
    pass that strings them together.
    """

    kind = "linear"

    def __init__(self, base: nn.Module, config: AnalogConfig, name: str = ""):
        super().__init__()
        if config.device is None:
            raise ConfigError(None, "device", "a DeviceModel (convert() fills in the default)")
        self.base = base
        self.config = config
        self.layer_name = name
        self.enabled = True
        self.binary = config.mode == "binary" or _is_binary_layer(base)
        self._noise_seed = 0
        self._noise_gen: torch.Generator | None = None
        self.t_eq_s = 0.0  # equivalent room-temperature time since programming [s]
        self.programmed = False
        self.calibrating = 0  # 0 off, 1 input range, 2 ADC ranges
        self.x_range: float | None = None  # DAC full scale (None: each batch's max |x|)
        self.x_signed: bool | None = None
        self._adc_cal: torch.Tensor | None = None

    def _buf(self, name: str, value: torch.Tensor | None) -> None:
        """Set a non-persistent buffer (moves with ``.to(device)``, not in state_dict)."""
        if name in self._buffers:
            self._buffers[name] = value
        else:
            self.register_buffer(name, value, persistent=False)

    def __getattr__(self, name: str):
        """``nn.Module``'s lookup of parameters, buffers and submodules; a derived array
        (:data:`~cimlab.sim.effective.DERIVED`) read after the cells changed is first
        recomputed (:meth:`_ensure_fresh`)."""
        if name in DERIVED and "_pending_refresh" in self.__dict__:
            self._ensure_fresh()
        return super().__getattr__(name)

    def __getstate__(self):
        """Pickle state without generators and scratch buffers (rebuilt from the seed)."""
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["_noise_gen"] = None  # generators are rebuilt from the seed after unpickling
        state.pop("_noise_streams", None)
        state.pop("_workspace", None)  # scratch buffers of the read-noise draws
        return state

    # ------------------------------------------------------------------ trained layer
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def device_model(self) -> DeviceModel:
        """The device model the cells follow (``config.device``)."""
        return self.config.device

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (the base layer's input) -> output: the base layer when not ``enabled``, the
        binary op, or DAC -> crossbar MVM with read noise -> per-tile ADC (module docstring)."""
        if not self.enabled:
            return self.base(x)
        self._require_programmed()
        if self.binary:
            return self._op(x, self.w_binary, self.bias)
        cfg = self.config
        need_range = cfg.dac_bits is not None or cfg.adc_bits is not None or self.calibrating
        xr, signed = self._input_range(x) if need_range else (1.0, True)
        if cfg.dac_bits is not None:
            q = converter_levels(cfg.dac_bits, signed)
            # in place on one copy: large temporaries cost page faults on CPU
            x = x.mul(q / xr).clamp_(-q if signed else 0.0, q).round_().mul_(xr / q)
        if cfg.adc_bits is None or self.calibrating == 1:  # no ADC while fitting input ranges
            return self._fast_forward(x)
        return self._tiled_forward(x, xr)

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forward without ADCs (or while fitting DAC ranges): one op with the dense
        effective weights plus read noise, on the DAC-quantized ``x``."""
        mode = None if self.calibrating else self.config.read_noise
        w, b = self._dense()
        if mode == "weight":
            gen = self._gen(x.device)
            w = self._noisy(w, self.sd_fast, gen, "w")
            if b is not None:
                b = self._noisy(b, self.sd_b_fast, gen, "b")
        y = self._op(x, w.to(x.dtype), None if b is None else b.to(x.dtype))
        if mode == "output":
            var = self._op(x * x, self.var_fast.to(x.dtype),
                           None if self.var_b_fast is None else self.var_b_fast.to(x.dtype))
            z = self._normals(y.shape, y.dtype, y.device, self._gen(y.device), "out")
            y = y + var.clamp_(min=0.0).sqrt_().mul_(z)
        return y

    def _tiled_forward(self, x: torch.Tensor, xr: float) -> torch.Tensor:
        """Per-tile partial sums -> per-tile ADC -> digital sum (paper 001 Fig. 1a).

        The batch is processed in chunks whose partial-sum tensor stays below
        :data:`PSUM_CHUNK` elements (cache-sized, reused memory); every ADC step is in place.
        """
        cfg, lay = self.config, self.layout
        mode = None if self.calibrating else cfg.read_noise
        gen = self._gen(x.device)
        wt = self.w_tiles
        if mode == "weight":
            wt = self._noisy(wt, self.sd_tiles, gen, "wt")
        wt = wt.to(x.dtype)
        S = self.slice_f.shape[0]
        out = self.g_cells.shape[2]
        pb = None
        if lay.has_bias:
            pb = self.b_slices
            if mode == "weight":  # the bias row's cells fluctuate like any other
                pb = self._noisy(pb, self.sd_b_slices, gen, "b")
            pb = pb.to(x.dtype)
        cal = self.calibrating == 2
        if not cal:
            r = self._adc_ranges(xr).reshape(lay.n_tiles_total, S * out).to(x.dtype)
            q = converter_levels(cfg.adc_bits, True)
            r_main = r[: lay.n_row_tiles]
            inv = self._psum_view(q / r_main, None, tiles=True)
            step = self._psum_view(r_main / q, None, tiles=True)
        n = x.shape[0]
        per_sample = max(1, self._psum_numel(x) // max(n, 1))
        chunk = max(1, PSUM_CHUNK // per_sample)
        y = None  # digital sums of all chunks, written in place (no concatenation)
        bias_in_tile = pb is not None and lay.bias_tile < lay.n_row_tiles
        # the bias row's read-noise sigma (output mode), once per call
        sd_b = (self.var_b_slices.clamp(min=0.0).sqrt_().to(x.dtype)
                if mode == "output" and bias_in_tile else None)
        for i in range(0, n, chunk):
            xc = x[i : i + chunk]
            psum = self._tile_psums(xc, wt)  # (nt, n_c, S*out, ...) tile dim first
            if mode == "output":
                var = self._tile_psums(xc * xc, self.var_tiles.to(x.dtype))
                z = self._normals(psum.shape, psum.dtype, psum.device, gen, "psum")
                sd = var.clamp_(min=0.0).sqrt_()
                psum = psum + sd.mul_(z) if psum.requires_grad else psum.addcmul_(sd, z)
            if bias_in_tile:
                tile = self._tile(psum, lay.bias_tile)
                tile += self._psum_view(pb, tile)
                if sd_b is not None:  # per-sample fluctuation of the bias row's cells
                    zb = self._normals(tile.shape, psum.dtype, psum.device, gen, "bias")
                    tile += zb.mul_(self._psum_view(sd_b, tile))
            if cal:
                self._record_adc(psum, None, S, out)
            else:
                psum.mul_(inv).clamp_(-q, q).round_().mul_(step)
            y = self._tile_sum_into(psum, y, i, n)
        y = self._tile_sum_view(y)
        if pb is not None and lay.bias_tile >= lay.n_row_tiles:  # bias on a tile of its own
            if cal:
                self._record_adc(None, pb, S, out)
                y = y + self._out_view(pb)
            else:
                rb = r[lay.n_row_tiles]
                yb = torch.round((pb / rb).clamp(-1.0, 1.0) * q) * (rb / q)
                y = y + self._out_view(yb)
        return self._finish(y, S, out)

    # ------------------------------------------------------------------ info
    def summary(self) -> dict[str, object]:
        """Mapping facts: cells, arrays, wmax, bias scale, stuck fractions, retention clock."""
        info: dict[str, object] = {"layer": self.layer_name, "kind": self.kind,
                                "binary": self.binary, "enabled": self.enabled}  # fmt: skip
        if not self.programmed:
            return info
        if self.binary:
            info.update(weights=self.w_binary.numel(), ber=self.ber,
                        flipped=int(self.flip_mask.sum()))  # fmt: skip
            return info
        lay = self.layout
        info.update(
            rows=lay.k + lay.has_bias, outputs=self.g_cells.shape[2], arrays=lay.n_arrays,
            cells=self.g_cells.numel(), wmax=self.mapping.wmax, bias_scale=self.bias_s,
            t_eq_s=self.t_eq_s,
        )  # fmt: skip
        if self.stuck_index is not None:
            n_on = int(self.stuck_on.sum())
            info["stuck_on"] = n_on / self.g_cells.numel()
            info["stuck_off"] = (self.stuck_index.numel() - n_on) / self.g_cells.numel()
        return info

    def extra_repr(self) -> str:
        state = "programmed" if self.programmed else "unprogrammed"
        mode = "binary" if self.binary else "analog"
        return f"name={self.layer_name!r}, {mode}, {state}, enabled={self.enabled}"


class AnalogLinear(LinearGeometry, AnalogLayer):
    """``nn.Linear`` on ReRAM tiles: rows = input features (+ bias row), columns = outputs."""

    kind = "linear"

    def _tiled_forward(self, x, xr):
        """Any leading dimensions are flattened into the batch and restored."""
        lead = x.shape[:-1]
        y = super()._tiled_forward(x.reshape(-1, x.shape[-1]), xr)
        return y.reshape(*lead, y.shape[-1])


class AnalogConv2d(ConvGeometry, AnalogLayer):
    """``nn.Conv2d`` on ReRAM tiles: rows = (in-channel, kh, kw), columns = out channels
    (one grouped convolution over the row tiles, :class:`~cimlab.sim.geometry.ConvGeometry`).
    """

    kind = "conv"

    def __init__(self, base: nn.Conv2d, config: AnalogConfig, name: str = ""):
        super().__init__(base, config, name)
        if base.padding_mode != "zeros":
            raise ConfigError(None, name, "a Conv2d with padding_mode='zeros'", base.padding_mode)
        if base.groups != 1 and config.adc_bits is not None:
            raise ConfigError(None, name, "a Conv2d with groups=1 for tiled ADC simulation",
                              base.groups)  # fmt: skip


def _is_binary_layer(m: nn.Module) -> bool:
    from cimlab.sim.binary_layers import BinaryLayerMixin

    return isinstance(m, BinaryLayerMixin)
