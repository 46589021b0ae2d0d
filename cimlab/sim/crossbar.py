"""Crossbar state of an analog layer: the programmed cells and their life cycle.

:class:`CrossbarState` is the part of :class:`cimlab.sim.layers.AnalogLayer` that owns the
array itself, apart from the periphery (:mod:`cimlab.sim.periphery`), the derived arrays the
forward pass reads (:mod:`cimlab.sim.effective`) and the layer geometry
(:mod:`cimlab.sim.geometry`), the way aihwkit keeps its tiles apart from its ``nn`` modules:

* ``program(generator)``: targets from the weights (:mod:`cimlab.sim.mapping`), programming
  error and stuck-at faults drawn once from the device model, retention clock reset;
* ``age(seconds, temp_k)``: relaxation with independent increments at an Arrhenius-equivalent
  room-temperature time (``age(a); age(b)`` is distributed as ``age(a + b)``);
* ``conductances()``, ``stuck_mask``: the state, cells layout ``(2, slices, out, rows)`` [S]
  (G+ and G-, the bias row last).

State (non-persistent buffers, they follow ``.to(device)``): ``g_target`` (design targets),
``g_programmed`` (after programming error, stuck cells pinned), ``g_cells`` (now: aged, stuck
pinned), ``stuck_index`` / ``stuck_on`` (flat cell indices and polarity of the stuck cells);
binary layers hold ``w_binary`` and ``flip_mask`` instead. Every change of ``g_cells`` ends
with ``self._invalidate()`` (provided by :class:`~cimlab.sim.effective.EffectiveArrays`: the
derived arrays are recomputed when next read).

The mixin expects from its host: ``base`` (the trained layer), ``config``
(:class:`~cimlab.sim.config.AnalogConfig`), ``layer_name``, ``binary``, ``_buf`` (set a
non-persistent buffer), ``_gen`` (the per-layer noise generator), ``_matrix``/``_kernel``
(geometry hooks) and ``_invalidate``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from cimlab.errors import ConfigError
from cimlab.sim import periphery
from cimlab.sim.inplace import add_drift
from cimlab.sim.mapping import Mapping, bias_scale, choose_wmax, make_layout
from cimlab.sim.periphery import NOISE_STREAMS, fill_standard_normal, stream_generators
from cimlab.units import KELVIN_OFFSET

if TYPE_CHECKING:
    from cimlab.sim.config import AnalogConfig

ZERO_C_K = KELVIN_OFFSET  # 0 degC in K
#: Cells per chunk in program/age/refresh (512 Ki float32 = 2 MiB temporaries).
CHUNK_CELLS = 1 << 19


class CrossbarState:
    """Programmed cells of one layer and their life cycle (module docstring)."""

    config: AnalogConfig
    layer_name: str
    binary: bool
    programmed: bool
    t_eq_s: float

    @torch.no_grad()
    def program(self, generator: torch.Generator) -> None:
        """Program the weights: targets, programming error, stuck-at faults (device model).

        Receives the chip's ``generator`` (it may live on any device: draws are made on its
        device and moved to the layer's, so a CPU generator programs the same chip on CPU and
        CUDA). Sets ``mapping``, ``layout``, ``bias_s``, the cell buffers and the layer's noise
        seed, resets the retention clock, then marks the derived arrays stale
        (``_invalidate(targets=True)``: recomputed when next read).
        """
        dev = self.base.weight.device
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        self._noise_seed = seed
        self._noise_gen = None
        self.__dict__.pop("_noise_streams", None)
        self.t_eq_s = 0.0
        if self.binary:
            self._program_binary(generator)
            self.programmed = True
            return
        cfg, dm = self.config, self.config.device
        w = self._matrix()
        b = self.bias.detach().to(w.dtype) if self.bias is not None else None
        s = bias_scale(w, b)
        w_aug = torch.cat([w, (b / s)[:, None]], dim=1) if b is not None else w
        levels = dm.window.levels if cfg.levels == "device" else cfg.levels
        wmax = choose_wmax(w_aug, cfg.wmax, self.layer_name)
        self.mapping = Mapping(dm.window.g_min, dm.window.g_max, wmax, levels, cfg.slices)
        self.bias_s = s
        self.layout = make_layout(
            w.shape[1], w.shape[0], b is not None, cfg.tile, cfg.slices, self._kernel()
        )
        shape = (2, cfg.slices, w_aug.shape[0], w_aug.shape[1])
        g_t = torch.empty(shape, dtype=w.dtype, device=dev)
        g_p = torch.empty_like(g_t) if cfg.programming_error else g_t
        pe = dm.programming
        sigma = _constant(pe, "form", "s0")  # a float for the constant form: no pass per cell
        on_gen = generator.device == torch.device(dev)
        # a large layer of a CPU chip draws all its programming errors at once, split over
        # fixed streams seeded from the chip's generator (parallel; independent of the
        # thread count); smaller ones draw chunk by chunk from the generator itself
        drawn = (cfg.programming_error and generator.device.type == "cpu" and on_gen
                 and g_p.numel() >= periphery.NOISE_SPLIT)  # fmt: skip
        if drawn:
            streams = stream_generators(seed, NOISE_STREAMS)
            fill_standard_normal(g_p, streams[0], lambda: streams)
        for o0, o1 in self._chunks(shape[2]):
            gt = g_t[:, :, o0:o1]
            self.mapping.targets(w_aug[o0:o1], out=gt)
            if cfg.programming_error:
                if drawn:
                    z = g_p[:, :, o0:o1]
                else:  # drawn on the generator's device: the same chip on CPU and CUDA
                    z = torch.randn(gt.shape, generator=generator, device=generator.device,
                                    dtype=gt.dtype)  # fmt: skip
                    z = z if on_gen else z.to(dev)
                z.mul_(pe.sigma(gt) if sigma is None else sigma)
                if pe.mean_offset:
                    z.add_(pe.mean_offset)
                torch.add(gt, z, out=g_p[:, :, o0:o1]).clamp_(min=0.0)  # never negative
        self._buf("g_target", g_t)
        self._draw_stuck(g_t.numel(), generator, dev)
        # stuck cells are pinned in the programmed state itself (relaxation never moves them)
        g_c = g_p if (g_p is not g_t or self.stuck_index is None) else g_t.clone()
        self._pin(g_c)
        self._buf("g_programmed", g_c)
        self._adc_cal = None
        self.programmed = True
        self._buf("g_cells", g_c)
        self._invalidate(targets=True)

    def _draw_stuck(self, n: int, generator: torch.Generator, dev) -> None:
        """Stuck-at faults of ``n`` cells (flat indices and on/off), exactly i.i.d. Bernoulli.

        Each cell is stuck with probability ``p = p_on + p_off``, then stuck-on with
        ``p_on / p``. For small ``p`` the positions are drawn as a Bernoulli process, i.e. with
        i.i.d. geometric gaps ``floor(ln V / ln(1 - p)) + 1`` (``V`` uniform on (0, 1]): about
        ``n p`` draws instead of ``n``, the same distribution.
        """
        st = self.config.device.stuck
        p_on, p = float(st.p_stuck_on), float(st.p_stuck_on) + float(st.p_stuck_off)
        if not self.config.stuck or p <= 0.0 or n == 0:
            self._buf("stuck_index", None)
            self._buf("stuck_on", None)
            return
        gd = generator.device
        if p >= 0.25:  # dense: one uniform per cell
            u = torch.rand(n, generator=generator, device=gd, dtype=torch.float64)
            idx = torch.nonzero(u < p).flatten()
            on = u[idx] < p_on
        else:
            log_q = math.log1p(-p)
            parts, last = [], -1
            while last < n - 1:
                m = (n - 1 - last) * p
                m = int(m + 6.0 * math.sqrt(m) + 16)
                u = torch.rand(m, generator=generator, device=gd, dtype=torch.float64)
                pos = torch.floor(torch.log1p(-u) / log_q).add_(1.0).cumsum_(0).add_(last)
                parts.append(pos[pos < n])
                last = int(pos[-1])
            idx = torch.cat(parts).to(torch.int64)
            on = torch.rand(idx.numel(), generator=generator, device=gd,
                            dtype=torch.float64) < p_on / p  # fmt: skip
        self._buf("stuck_index", idx.to(dev))
        self._buf("stuck_on", on.to(dev))

    def _pin(self, g: torch.Tensor) -> torch.Tensor:
        """Stuck cells of ``g`` (cells layout) set to their stuck conductance, in place."""
        idx = self.stuck_index
        if idx is not None and idx.numel():
            st = self.config.device.stuck
            vals = torch.full(idx.shape, st.g_off_siemens, dtype=g.dtype, device=g.device)
            vals.masked_fill_(self.stuck_on, st.g_on_siemens)
            g.view(-1).index_put_((idx,), vals)
        return g

    @property
    def stuck_mask(self) -> torch.Tensor | None:
        """Stuck-at faults per cell (int8, cells layout): +1 stuck on, -1 stuck off, 0 free."""
        if getattr(self, "stuck_index", None) is None or not self.programmed or self.binary:
            return None
        m = torch.zeros(self.g_target.shape, dtype=torch.int8, device=self.g_target.device)
        m.view(-1)[self.stuck_index] = torch.where(self.stuck_on, 1, -1).to(torch.int8)
        return m

    def _chunks(self, out: int) -> list[tuple[int, int]]:
        """Hook: output ranges ``[(o0, o1), ...]`` covering ``out`` outputs, processed
        together in program/age/refresh (cache-sized, and whole column tiles so that the
        IR-drop correction sees complete tiles). Needs ``layout`` (set by ``program``)."""
        cells_per_out = 2 * self.config.slices * (self.layout.k + 1)
        co = max(1, CHUNK_CELLS // cells_per_out)
        per_col = self.layout.per_col
        co = max(per_col, (co // per_col) * per_col)
        return [(o0, min(out, o0 + co)) for o0 in range(0, out, co)]

    @torch.no_grad()
    def _program_binary(self, generator: torch.Generator) -> None:
        """Hook of ``program`` for binary layers: the sign bits of the weights, flipped with
        the bit error rate of the configured programming condition (``w_binary``,
        ``flip_mask``, ``ber``)."""
        cfg = self.config
        dev = self.base.weight.device
        wb = torch.where(self.base.weight.detach() >= 0, 1.0, -1.0).to(self.base.weight.dtype)
        cond = cfg.device.binary.condition(cfg.binary_condition)
        self.ber = float(cond.ber(cfg.binary_structure))
        flips = _rand(wb.shape, generator, dev) < self.ber
        self._buf("flip_mask", flips)
        self._buf("w_binary", wb * (1.0 - 2.0 * flips.to(wb.dtype)))

    @torch.no_grad()
    def age(self, seconds: float, temp_k: float) -> None:
        """Relax the programmed cells for ``seconds`` [s] at ``temp_k`` [K] (device model).

        The equivalent room-temperature time grows by ``seconds * AF(temp_k)`` (Arrhenius,
        ``dm.retention.acceleration``); each cell's conductance moves by the increments of the
        relaxation model's mean shift and variance between the old and new equivalent times,
        evaluated at its programmed conductance. Stuck cells stay stuck. Binary layers keep
        their bits (retention-induced bit errors are part of the condition's BER model).
        """
        self._require_programmed()
        if seconds < 0:
            raise ConfigError(None, "seconds", "a duration >= 0 s", seconds)
        if not temp_k > 0:
            raise ConfigError(None, "temp_k", "an absolute temperature > 0 K", temp_k)
        if self.binary or seconds == 0:
            return
        dm = self.config.device
        t1 = self.t_eq_s
        t2 = t1 + float(seconds) * float(dm.retention.acceleration(float(temp_k)))
        g0 = self.g_programmed
        rel = dm.relaxation
        gen = self._gen(g0.device)
        old = self.g_cells
        new = torch.empty_like(g0)
        drawn = g0.device.type == "cpu" and g0.numel() >= periphery.NOISE_SPLIT
        if drawn:  # a large layer: all increments at once, over the parallel streams
            fill_standard_normal(new, gen, self._streams)
        # the model's mean shift and variance are drift(g) L(t) and rate(g) L(t): increments
        # between the old and new equivalent times are drift(g) dL and rate(g) dL
        d_l = float(rel.decades(t2)) - float(rel.decades(t1))
        rate = _constant(rel, "form", "k0")
        sd_c = math.sqrt(max(rate * d_l, 0.0)) if rate is not None else None
        for o0, o1 in self._chunks(g0.shape[2]):
            g0c = g0[:, :, o0:o1]
            if drawn:
                z = new[:, :, o0:o1]
            else:
                z = torch.randn(g0c.shape, generator=gen, device=g0.device, dtype=g0.dtype)
            if sd_c is None:
                z.mul_(rel.rate(g0c).mul_(d_l).clamp_(min=0.0).sqrt_())
            else:
                z.mul_(sd_c)
            add_drift(rel, g0c, z, d_l)
            torch.add(old[:, :, o0:o1], z, out=new[:, :, o0:o1]).clamp_(min=0.0)
        self.t_eq_s = t2
        self._buf("g_cells", self._pin(new))
        self._invalidate()

    def set_cells(self, g_unpinned: torch.Tensor) -> None:
        """Install cells (2, S, out, rows) [S] (stuck cells are pinned on a copy); the derived
        arrays follow when next read.

        For conductances measured elsewhere (e.g. a chip's read-back installed in the
        simulator to compare the two); the targets and the programmed state stay."""
        g = g_unpinned.clone() if self.stuck_index is not None else g_unpinned
        self._buf("g_cells", self._pin(g))
        self._invalidate()

    def _require_programmed(self) -> None:
        """Raise a RuntimeError saying how to program the layer if it is not programmed."""
        if not self.programmed:
            raise RuntimeError(
                f"analog layer '{self.layer_name}' is not programmed: call "
                "anet.program(generator=torch.Generator().manual_seed(SEED)) first"
            )

    def conductances(self) -> torch.Tensor:
        """Cells (2, slices, out, rows) [S]: G+ / G-, the bias row last (stuck, aged)."""
        self._require_programmed()
        return self.g_cells


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    """Uniforms on [0, 1) drawn on ``generator``'s device, moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _constant(effect: object, form_field: str, const_field: str) -> float | None:
    """The value of a device-model function whose ``form`` is ``"constant"`` (only its
    constant coefficient is free, docs of cimlab.models.effects), else None."""
    if getattr(effect, form_field, None) == "constant":
        return float(getattr(effect, const_field))
    return None


def temp_c_to_k(temp_c: float) -> float:
    """Celsius -> kelvin."""
    if not math.isfinite(temp_c) or temp_c < -ZERO_C_K:
        raise ConfigError(None, "temp_c", "a temperature above -273.15 degC", temp_c)
    return float(temp_c) + ZERO_C_K
