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

Everything expensive happens in ``program()``/``age()`` (``_refresh``): the effective weights,
their per-tile arrangement for one batched matmul (``bmm``) or one grouped convolution, the
read-noise variances and the first-order IR-drop correction. ``forward`` only adds the
per-call work: DAC rounding, read-noise draws and ADC rounding.

Read noise (docs/simulator.md): ``"weight"`` draws one conductance fluctuation per cell per
forward call, shared by the samples of the batch. The measured read fluctuation of ReRAM is
dominated by random telegraph and 1/f noise with correlation times from microseconds to
seconds (it is measured between reads milliseconds apart), while a batch of MVMs on a chip
takes microseconds: within a batch the cells' conductances are effectively frozen. Thermal
and shot noise of the column current at the sense bandwidth are orders of magnitude smaller.
``"output"`` adds, per sample, the exact second moment of independent per-cell noise,
``var(y_j) = sum_i x_i^2 (sigma(G+_ij)^2 + sigma(G-_ij)^2) f^2``, for noise faster than one MVM.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from cimlab.errors import ConfigError
from cimlab.sim.config import AnalogConfig
from cimlab.sim.irdrop import cell_drop_factors
from cimlab.sim.mapping import Mapping, bias_scale, choose_wmax, make_layout

ZERO_C_K = 273.15  # 0 degC in K
#: Partial sums per chunk of the tiled forward (elements; 4 Mi float32 = 16 MiB).
PSUM_CHUNK = 1 << 22
#: Cells per chunk in program/age/refresh (512 Ki float32 = 2 MiB temporaries).
CHUNK_CELLS = 1 << 19
#: Read-noise draws of at least this many elements are split over NOISE_STREAMS generators
#: (fixed, seeded from the layer's noise seed), which run in parallel on the intra-op threads.
NOISE_SPLIT = 1 << 20
NOISE_STREAMS = 4


def quantize(x: torch.Tensor, levels: int, signed: bool) -> torch.Tensor:
    """Round ``x`` (full scale 1) to a converter with ``levels`` steps per polarity.

    Signed: ``[-1, 1]`` in ``2 levels + 1`` codes; unsigned: ``[0, 1]`` in ``levels + 1``.
    Values beyond full scale saturate, as a converter does.
    """
    lo = -1.0 if signed else 0.0
    return torch.round(x.clamp(lo, 1.0) * levels) / levels


def converter_levels(bits: int, signed: bool) -> int:
    """Steps per polarity of a ``bits`` converter: ``2**(bits-1) - 1`` signed, ``2**bits - 1``."""
    return 2 ** (bits - 1) - 1 if signed else 2**bits - 1


class AnalogLayer(nn.Module):
    """Base of :class:`AnalogLinear` / :class:`AnalogConv2d` (module docstring)."""

    kind = "linear"
    _tile_dim = 0  # dimension of the row tiles in the partial sums (hooks below)

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

    def _gen(self, device: torch.device) -> torch.Generator:
        """Per-forward noise generator on ``device`` (seeded at program time)."""
        g = self._noise_gen
        if g is None or g.device != device:
            g = torch.Generator(device=device).manual_seed(self._noise_seed)
            self._noise_gen = g
        return g

    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__
        state = dict(state)
        state["_noise_gen"] = None  # generators are rebuilt from the seed after unpickling
        state.pop("_noise_streams", None)
        state.pop("_workspace", None)  # scratch buffers of the read-noise draws
        return state

    # ------------------------------------------------------------------ geometry
    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    @property
    def bias(self) -> torch.Tensor | None:
        return self.base.bias

    @property
    def device_model(self):
        return self.config.device

    def _matrix(self) -> torch.Tensor:
        return self.base.weight.detach().reshape(self.base.weight.shape[0], -1)

    def _kernel(self) -> int:
        return 1

    # ------------------------------------------------------------------ programming
    @torch.no_grad()
    def program(self, generator: torch.Generator) -> None:
        """Program the weights: targets, programming error, stuck-at faults (device model).

        ``generator`` may live on any device; draws are made on its device and moved to the
        layer's, so a CPU generator programs the same chip on CPU and CUDA.
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
        for o0, o1 in self._chunks(shape[2]):
            gt = g_t[:, :, o0:o1]
            self.mapping.targets(w_aug[o0:o1], out=gt)
            if cfg.programming_error:
                # drawn on the generator's device: the same chip on CPU and CUDA
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
        self._refresh(targets=True)

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
            vals = torch.full(idx.shape, st.g_off_s, dtype=g.dtype, device=g.device)
            vals.masked_fill_(self.stuck_on, st.g_on_s)
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
        """Output ranges processed together in program/age/refresh (cache-sized, and whole
        column tiles so that the IR-drop correction sees complete tiles)."""
        cells_per_out = 2 * self.config.slices * (self.layout.k + 1)
        co = max(1, CHUNK_CELLS // cells_per_out)
        per_col = self.layout.per_col
        co = max(per_col, (co // per_col) * per_col)
        return [(o0, min(out, o0 + co)) for o0 in range(0, out, co)]

    @torch.no_grad()
    def _program_binary(self, generator: torch.Generator) -> None:
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
        # the model's mean shift and variance are drift(g) L(t) and rate(g) L(t): increments
        # between the old and new equivalent times are drift(g) dL and rate(g) dL
        d_l = float(rel.decades(t2)) - float(rel.decades(t1))
        rate = _constant(rel, "form", "k0")
        sd_c = math.sqrt(max(rate * d_l, 0.0)) if rate is not None else None
        for o0, o1 in self._chunks(g0.shape[2]):
            g0c = g0[:, :, o0:o1]
            z = torch.randn(g0c.shape, generator=gen, device=g0.device, dtype=g0.dtype)
            if sd_c is None:
                z.mul_(rel.rate(g0c).mul_(d_l).clamp_(min=0.0).sqrt_())
            else:
                z.mul_(sd_c)
            z.add_(rel.drift(g0c), alpha=d_l)
            torch.add(old[:, :, o0:o1], z, out=new[:, :, o0:o1]).clamp_(min=0.0)
        self.t_eq_s = t2
        self._buf("g_cells", self._pin(new))
        self._refresh()

    def _set_cells(self, g_unpinned: torch.Tensor) -> None:
        """Install cells (2, S, out, rows) [S] (stuck cells are pinned on a copy) and refresh."""
        g = g_unpinned.clone() if self.stuck_index is not None else g_unpinned
        self._buf("g_cells", self._pin(g))
        self._refresh()

    def _require_programmed(self) -> None:
        if not self.programmed:
            raise RuntimeError(
                f"analog layer '{self.layer_name}' is not programmed: call "
                "anet.program(generator=torch.Generator().manual_seed(SEED)) first"
            )

    # ------------------------------------------------------------------ derived tensors
    @torch.no_grad()
    def _refresh(self, targets: bool = False) -> None:
        """Precompute what forward needs from the current cells (module docstring), chunk by
        chunk of outputs (cache-sized temporaries). ``targets``: the target cells changed
        (program), so the worst-case ADC ranges are recomputed too.

        With ADCs the forward pass reads only the per-tile arrangement; the dense weights
        (``effective_weight``) are then derived from it on demand. Tile buffers are reused in
        place when their shape allows (fresh pages cost more than the arithmetic)."""
        cfg, dm, lay = self.config, self.config.device, self.layout
        g_all, gt_all = self.g_cells, self.g_target
        S, out = g_all.shape[1], g_all.shape[2]
        k = lay.k
        has_b = lay.has_bias
        s_b = self.bias_s
        dev, dt = g_all.device, g_all.dtype
        f = self.mapping.slice_factors(dev, dt)
        fs = f.view(-1, 1, 1)
        f_list = [float(v) for v in f]
        rn = cfg.read_noise
        ir = cfg.ir_drop and dm.wire.r_segment_ohm > 0
        r_seg = float(dm.wire.r_segment_ohm)
        adc = cfg.adc_bits is not None
        sr = dm.read_noise.sigma
        nt = lay.n_tiles_total
        if adc:
            w_t = self._reuse("w_tiles", self._tiles_shape(S, out), dev, dt)
            v_t = self._reuse("sd_tiles" if rn == "weight" else "var_tiles",
                              w_t.shape, dev, dt) if rn else None  # fmt: skip
            b_sl = torch.empty(S, out, device=dev, dtype=dt) if has_b else None
            v_bsl = torch.empty(S, out, device=dev, dtype=dt) if (has_b and rn) else None
            if targets:
                adc_a = torch.empty(nt, S, out, device=dev, dtype=dt)
                adc_b = torch.zeros(nt, S, out, device=dev, dtype=dt)
        else:
            w_fast = torch.empty(out, k, device=dev, dtype=dt)
            b_fast = torch.empty(out, device=dev, dtype=dt) if has_b else None
            v_fast = torch.empty(out, k, device=dev, dtype=dt) if rn else None
            v_b = torch.empty(out, device=dev, dtype=dt) if (rn and has_b) else None
        for o0, o1 in self._chunks(out):
            g = g_all[:, :, o0:o1]
            if ir:
                g_eff = cell_drop_factors(g, lay).mul_(r_seg).add_(1.0)
                g_eff = torch.div(g, g_eff, out=g_eff)
            else:
                g_eff = g
            w_s = torch.sub(g_eff[0], g_eff[1])  # (S, co, rows) [S]
            w_s = w_s.mul_(f_list[0]) if S == 1 else w_s.mul_(fs)  # weight units
            var_s = None
            if rn:
                var_s = sr(g[0]).square_().add_(sr(g[1]).square_())
                var_s = var_s.mul_(f_list[0] ** 2) if S == 1 else var_s.mul_(fs**2)
                if rn == "weight" and adc:
                    var_s.sqrt_()  # the forward pass needs the standard deviation
            if not adc:
                w_fast[o0:o1] = w_s[..., :k].sum(0)
                if has_b:
                    b_fast[o0:o1] = w_s[..., k].sum(0) * s_b
                if rn:
                    v_fast[o0:o1] = var_s[..., :k].sum(0)
                    if has_b:
                        v_b[o0:o1] = var_s[..., k].sum(0) * s_b**2
                continue
            self._arrange_into(w_t, w_s[..., :k], o0, out)
            if rn:
                self._arrange_into(v_t, var_s[..., :k], o0, out)
            if has_b:
                torch.mul(w_s[..., k], s_b, out=b_sl[:, o0:o1])
                if rn:
                    torch.mul(var_s[..., k], s_b if rn == "weight" else s_b**2,
                              out=v_bsl[:, o0:o1])  # fmt: skip
            if targets:  # worst-case ADC ranges from the *target* cells (design time)
                d = (gt_all[0, :, o0:o1] - gt_all[1, :, o0:o1]).abs_()  # (S, co, rows) [S]
                self._tile_row_sums(d[..., :k], adc_a[:, :, o0:o1])
                if has_b:
                    adc_b[lay.bias_tile, :, o0:o1] = d[..., k] * s_b
        buf = self._buf
        buf("slice_f", f)
        if not adc:
            out_mode = rn == "output"
            buf("w_fast", w_fast.reshape(self.base.weight.shape))
            buf("b_fast", b_fast)
            buf("var_fast", v_fast.reshape(self.base.weight.shape) if out_mode else None)
            buf("var_b_fast", v_b if out_mode else None)
            buf("sd_fast",
                v_fast.sqrt_().reshape(self.base.weight.shape) if rn == "weight" else None)
            buf("sd_b_fast", v_b.sqrt_() if (rn == "weight" and has_b) else None)
            for name in ("w_tiles", "var_tiles", "sd_tiles", "b_slices", "var_b_slices",
                         "sd_b_slices", "adc_a", "adc_b"):  # fmt: skip
                buf(name, None)
            return
        for name in ("w_fast", "b_fast", "var_fast", "var_b_fast", "sd_fast", "sd_b_fast"):
            buf(name, None)  # derived from the tiles on demand (_dense)
        buf("w_tiles", w_t)
        buf("var_tiles", v_t if rn == "output" else None)
        buf("sd_tiles", v_t if rn == "weight" else None)
        buf("b_slices", b_sl.reshape(-1) if has_b else None)
        buf("var_b_slices", v_bsl.reshape(-1) if (has_b and rn == "output") else None)
        buf("sd_b_slices", v_bsl.reshape(-1) if (has_b and rn == "weight") else None)
        if targets:
            buf("adc_a", adc_a)
            buf("adc_b", adc_b)

    def _reuse(self, name: str, shape, dev, dt) -> torch.Tensor:
        """The buffer ``name`` if it has this shape (overwritten in place), else a new one."""
        old = self._buffers.get(name)
        if old is not None and old.shape == torch.Size(shape) and old.device == dev \
                and old.dtype == dt:  # fmt: skip
            return old
        return torch.empty(shape, device=dev, dtype=dt)

    def _tile_row_sums(self, d: torch.Tensor, dst: torch.Tensor) -> None:
        """Sum of ``d`` (S, co, k) over the weight rows of each row tile -> ``dst`` (nt, S, co)."""
        lay = self.layout
        S, co, k = d.shape
        n_full = k // lay.stride
        if n_full:
            dst[:n_full] = d[..., : n_full * lay.stride].reshape(S, co, n_full, lay.stride).sum(
                -1).permute(2, 0, 1)  # fmt: skip
        if n_full < lay.n_row_tiles:
            dst[n_full] = d[..., n_full * lay.stride :].sum(-1)
        if dst.shape[0] > lay.n_row_tiles:
            dst[lay.n_row_tiles :] = 0.0

    def _dense(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Effective weight and bias (no read noise): computed by ``_refresh`` without ADCs,
        derived from the tile arrangement (and cached until the next refresh) with them."""
        if self.w_fast is None:
            S = self.slice_f.shape[0]
            w = self._from_tiles_layout(self.w_tiles, S).sum(0)
            self._buf("w_fast", w.reshape(self.base.weight.shape))
            bs = self.b_slices
            self._buf("b_fast", None if bs is None else bs.view(S, -1).sum(0))
        return self.w_fast, self.b_fast

    def _tiles_shape(self, S: int, out: int) -> tuple[int, ...]:
        lay = self.layout
        return (lay.n_row_tiles, lay.stride, S * out)

    def _arrange_into(self, dst: torch.Tensor, m: torch.Tensor, o0: int, out: int) -> None:
        """Write per-slice rows ``m`` (S, co, k) of outputs o0.. into the bmm layout
        ``dst`` (n_row_tiles, stride, S*out)."""
        lay = self.layout
        S, co, k = m.shape
        st = lay.stride
        view = dst.view(lay.n_row_tiles * st, S, out)[:, :, o0 : o0 + co]
        view[:k] = m.permute(2, 0, 1)
        if k < lay.n_row_tiles * st:  # empty rows of the last tile
            view[k:] = 0.0

    def _from_tiles_layout(self, t: torch.Tensor, S: int) -> torch.Tensor:
        """Inverse of ``_arrange_into``: tile arrangement -> per-slice rows (S, out, k)."""
        lay = self.layout
        out = t.shape[-1] // S
        return t.reshape(lay.n_row_tiles * lay.stride, S, out)[: lay.k].permute(1, 2, 0)

    def effective_weight(self) -> torch.Tensor:
        """Weight the array represents now (programming, faults, retention, IR drop; no read
        noise, no converters), in the base layer's weight shape."""
        self._require_programmed()
        if self.binary:
            return self.w_binary
        return self._dense()[0]

    def effective_bias(self) -> torch.Tensor | None:
        """Bias the array represents now (bias row x s), or the digital bias (binary)."""
        self._require_programmed()
        if self.binary:
            return self.bias
        return self._dense()[1]

    def conductances(self) -> torch.Tensor:
        """Cells (2, slices, out, rows) [S]: G+ / G-, the bias row last (stuck, aged)."""
        self._require_programmed()
        return self.g_cells

    # ------------------------------------------------------------------ forward
    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None):
        return F.linear(x, w, b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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

    def _input_range(self, x: torch.Tensor) -> tuple[float, bool]:
        """DAC full scale and polarity: calibrated, else this batch's max |x| (one pass)."""
        if self.x_range is not None and self.calibrating != 1:
            return (self.x_range if self.x_range > 0 else 1.0), bool(self.x_signed)
        lo, hi = (float(v) for v in torch.aminmax(x.detach()))
        amax, signed = max(-lo, hi), lo < 0
        if self.calibrating == 1:
            self.x_range = max(self.x_range or 0.0, amax)
            self.x_signed = bool(self.x_signed) or signed
        return (amax if amax > 0 else 1.0), signed

    def _noisy(self, w: torch.Tensor, sd: torch.Tensor, gen: torch.Generator, key: str):
        """``w + sd * z`` for fresh standard normals ``z``, in a reused workspace (one fused
        multiply-add). Large CPU draws are split over :data:`NOISE_STREAMS` fixed generators
        (seeded from the layer's noise seed) that run on the intra-op threads: the numbers
        depend only on the seed, never on the thread count."""
        ws = self.__dict__.setdefault("_workspace", {})
        buf = ws.get(key)
        if buf is None or buf.shape != w.shape or buf.device != w.device or buf.dtype != w.dtype:
            buf = torch.empty(w.shape, dtype=w.dtype, device=w.device)
            ws[key] = buf
        n = buf.numel()
        if buf.device.type != "cpu" or n < NOISE_SPLIT:
            torch.randn(w.shape, generator=gen, out=buf)
        else:
            flat = buf.view(-1)
            parts = [flat[i * n // NOISE_STREAMS : (i + 1) * n // NOISE_STREAMS]
                     for i in range(NOISE_STREAMS)]  # fmt: skip
            jobs = list(zip(parts, self._streams(), strict=True))
            threads = min(torch.get_num_threads(), NOISE_STREAMS)
            if threads > 1:
                list(_pool(threads).map(_randn_into, jobs))
            else:
                for job in jobs:
                    _randn_into(job)
        return torch.addcmul(w, buf, sd, out=buf)

    def _streams(self) -> list[torch.Generator]:
        """The CPU noise streams of large draws (seeded at program time)."""
        gens = self.__dict__.get("_noise_streams")
        if gens is None:
            gens = [torch.Generator().manual_seed(_mix_seed(self._noise_seed, i))
                    for i in range(NOISE_STREAMS)]  # fmt: skip
            self._noise_streams = gens
        return gens

    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
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
            z = torch.randn(y.shape, generator=self._gen(y.device), device=y.device,
                            dtype=y.dtype)  # fmt: skip
            y = y + var.clamp_(min=0.0).sqrt_().mul_(z)
        return y

    def _adc_ranges(self, xr: float) -> torch.Tensor:
        """Full scale per (row tile, slice, out) in weight units, for input full scale xr."""
        lay = self.layout
        if self.config.adc_range == "calibrated" and self.calibrating != 2:
            if self._adc_cal is None:
                raise RuntimeError(
                    f"layer '{self.layer_name}': adc_range='calibrated' needs "
                    "anet.calibrate(batches) after program()"
                )
            per_tile = self._adc_cal.to(self.adc_a.device)
        else:
            full = self.adc_a * xr + self.adc_b  # (nt, S, out) [S x input]
            per_tile = self._per_tile_max(full)
        nt, S = per_tile.shape[0], self.slice_f.shape[0]
        r = per_tile.repeat_interleave(lay.per_col, dim=1)[:, : self.g_cells.shape[2]]
        r = r[:, None, :].expand(nt, S, -1) * self.slice_f.view(1, -1, 1)
        return r.clamp_min(torch.finfo(r.dtype).tiny)

    def _per_tile_max(self, v: torch.Tensor) -> torch.Tensor:
        """(nt, S, out) -> (nt, n_col_tiles): max over the columns of each physical tile."""
        lay = self.layout
        nt, S, out = v.shape
        pad = lay.n_col_tiles * lay.per_col - out
        if pad:
            v = torch.cat([v, v.new_zeros(nt, S, pad)], dim=-1)
        return v.reshape(nt, S, lay.n_col_tiles, lay.per_col).amax(dim=(1, 3))

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
        for i in range(0, n, chunk):
            xc = x[i : i + chunk]
            psum = self._tile_psums(xc, wt)  # (nt, n_c, S*out, ...) tile dim first
            if mode == "output":
                var = self._tile_psums(xc * xc, self.var_tiles.to(x.dtype))
                z = torch.randn(psum.shape, generator=gen, device=psum.device, dtype=psum.dtype)
                psum = psum + var.clamp_(min=0.0).sqrt_().mul_(z)
            if pb is not None and lay.bias_tile < lay.n_row_tiles:
                tile = self._tile(psum, lay.bias_tile)
                tile += self._psum_view(pb, tile)
                if mode == "output":  # per-sample fluctuation of the bias row's cells
                    zb = torch.randn(tile.shape, generator=gen, device=psum.device,
                                     dtype=psum.dtype)  # fmt: skip
                    tile += zb.mul_(self._psum_view(self.sd_b_slices, tile))
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

    @torch.no_grad()
    def _record_adc(self, psum, extra, S, out):
        """Accumulate max |partial sum| per physical tile (conductance units) in _adc_cal."""
        f = self.slice_f.view(1, S, 1)
        lay = self.layout
        a = torch.zeros(lay.n_tiles_total, S * out, device=f.device, dtype=f.dtype)
        if psum is not None:
            a[: lay.n_row_tiles] = self._reduce_abs(psum).to(f.dtype)
        if extra is not None:
            a[lay.n_row_tiles] = extra.reshape(-1).abs().to(f.dtype)
        per_tile = self._per_tile_max(a.reshape(-1, S, out) / f)
        old = self._adc_cal
        self._adc_cal = per_tile if old is None else torch.maximum(old, per_tile)

    # hooks specialised by Linear / Conv2d
    def _tile_psums(self, x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _psum_numel(self, x: torch.Tensor) -> int:
        raise NotImplementedError

    def _psum_view(self, v: torch.Tensor, like: torch.Tensor, tiles: bool = False):
        raise NotImplementedError

    def _tile(self, psum: torch.Tensor, t: int) -> torch.Tensor:
        """View of row tile ``t``'s partial sums."""
        raise NotImplementedError

    def _tile_sum_into(self, psum: torch.Tensor, y: torch.Tensor | None, i: int, n: int):
        """Digital sum over the row tiles of a batch chunk starting at sample ``i``, written
        into ``y`` (allocated for the ``n`` samples at the first chunk); returns ``y``."""
        d = self._tile_dim
        if psum.requires_grad:  # autograd: no out= (concatenate the chunks instead)
            part = psum.sum(d)
            return part if y is None else torch.cat([y, part])
        shape = psum.shape[:d] + psum.shape[d + 1 :]
        if y is None:
            y = psum.new_empty((n, *shape[1:]))
        torch.sum(psum, d, out=y[i : i + shape[0]])
        return y

    def _tile_sum_view(self, y: torch.Tensor) -> torch.Tensor:
        """The summed partial sums as (N, S*out, ...)."""
        return y

    def _out_view(self, v: torch.Tensor) -> torch.Tensor:
        """(S*out,) vector shaped to add to a tile sum."""
        raise NotImplementedError

    def _reduce_abs(self, psum: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _finish(self, y: torch.Tensor, S: int, out: int) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------------ info
    def summary(self) -> dict[str, Any]:
        """Mapping facts: cells, arrays, wmax, bias scale, stuck fractions, retention clock."""
        info: dict[str, Any] = {"layer": self.layer_name, "kind": self.kind,
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


class AnalogLinear(AnalogLayer):
    """``nn.Linear`` on ReRAM tiles: rows = input features (+ bias row), columns = outputs."""

    kind = "linear"

    def _tiled_forward(self, x, xr):
        lead = x.shape[:-1]
        y = super()._tiled_forward(x.reshape(-1, x.shape[-1]), xr)
        return y.reshape(*lead, y.shape[-1])

    def _tile_psums(self, x, wt):
        lay = self.layout
        x2 = x
        n = lay.n_row_tiles * lay.stride
        if n > x2.shape[1]:
            x2 = F.pad(x2, (0, n - x2.shape[1]))
        xt = x2.reshape(x2.shape[0], lay.n_row_tiles, lay.stride).transpose(0, 1)
        return torch.bmm(xt, wt)  # (nt, N, S*out)

    def _psum_view(self, v, like, tiles=False):
        return v[:, None, :] if tiles else v

    def _tile(self, psum, t):
        return psum[t]

    _tile_dim = 0  # psum (n_tiles, N, S*out)

    def _out_view(self, v):
        return v

    def _psum_numel(self, x):
        n = x.numel() // x.shape[-1]
        return self.layout.n_row_tiles * n * self.w_tiles.shape[-1]

    def _reduce_abs(self, psum):
        return psum.abs().amax(dim=1)

    def _finish(self, y, S, out):
        return y.reshape(y.shape[0], S, out).sum(1)


class AnalogConv2d(AnalogLayer):
    """``nn.Conv2d`` on ReRAM tiles: rows = (in-channel, kh, kw), columns = out channels.

    A tile holds whole input channels (``rows // (kh kw)`` of them), so all row tiles run as
    one grouped convolution (``groups = n_row_tiles``) whose outputs are the partial sums.
    """

    kind = "conv"

    def __init__(self, base: nn.Conv2d, config: AnalogConfig, name: str = ""):
        super().__init__(base, config, name)
        if base.padding_mode != "zeros":
            raise ConfigError(None, name, "a Conv2d with padding_mode='zeros'", base.padding_mode)
        if base.groups != 1 and config.adc_bits is not None:
            raise ConfigError(None, name, "a Conv2d with groups=1 for tiled ADC simulation",
                              base.groups)  # fmt: skip

    def _kernel(self) -> int:
        kh, kw = self.base.kernel_size
        return kh * kw

    def _op(self, x, w, bias=None):
        b = self.base
        return F.conv2d(x, w, bias, b.stride, b.padding, b.dilation, b.groups)

    def _tiles_shape(self, S, out):
        lay = self.layout
        kh, kw = self.base.kernel_size
        return (lay.n_row_tiles * S * out, lay.stride // (kh * kw), kh, kw)

    def _arrange_into(self, dst, m, o0, out):
        """(S, co, C*kh*kw) rows of outputs o0.. -> grouped-conv weight
        (n_row_tiles*S*out, cpt, kh, kw), group t = row tile t (its rows are ``stride``
        consecutive rows of the flattened kernel: whole input channels)."""
        lay = self.layout
        S, co, k = m.shape
        st, nrt = lay.stride, lay.n_row_tiles
        view = dst.view(nrt, S, out, st)[:, :, o0 : o0 + co]
        n_full = k // st
        if n_full:
            view[:n_full] = m[..., : n_full * st].reshape(S, co, n_full, st).permute(2, 0, 1, 3)
        if n_full < nrt:  # the last tile's channels, then its empty rows
            rest = k - n_full * st
            view[n_full, ..., :rest] = m[..., n_full * st :]
            view[n_full, ..., rest:] = 0.0

    def _from_tiles_layout(self, t, S):
        lay = self.layout
        nrt, st = lay.n_row_tiles, lay.stride
        out = t.shape[0] // (nrt * S)
        return t.reshape(nrt, S, out, st).permute(1, 2, 0, 3).reshape(S, out, nrt * st)[
            ..., : lay.k]  # fmt: skip

    def _tile_psums(self, x, wt):
        lay, b = self.layout, self.base
        kh, kw = b.kernel_size
        cpt = lay.stride // (kh * kw)
        c_pad = lay.n_row_tiles * cpt
        if lay.n_row_tiles > 1:  # oneDNN's grouped convolution is much faster in NHWC
            xp = torch.empty((x.shape[0], c_pad, *x.shape[2:]), dtype=x.dtype, device=x.device,
                             memory_format=torch.channels_last)  # fmt: skip
            xp[:, : x.shape[1]] = x
            xp[:, x.shape[1] :] = 0.0
            x = xp
        elif c_pad > x.shape[1]:
            x = F.pad(x, (0, 0, 0, 0, 0, c_pad - x.shape[1]))
        y = F.conv2d(x, wt, None, b.stride, b.padding, b.dilation, lay.n_row_tiles)
        # partial sums as (N, H, W, n_tiles, S*out): contiguous for NHWC output, so the ADC
        # steps and the sum over tiles run along memory
        yp = y.permute(0, 2, 3, 1)
        return yp.reshape(*yp.shape[:3], lay.n_row_tiles, -1)

    def _psum_view(self, v, like, tiles=False):
        return v  # (n_tiles, S*out) or (S*out,): broadcast over the trailing dimensions

    def _tile(self, psum, t):
        return psum[..., t, :]

    _tile_dim = 3  # psum (N, H, W, n_tiles, S*out)

    def _tile_sum_view(self, y):
        return y.permute(0, 3, 1, 2)  # (N, S*out, H, W), NHWC memory

    def _out_view(self, v):
        return v[:, None, None]

    def _psum_numel(self, x):
        b = self.base
        hw = 1
        if isinstance(b.padding, str):  # 'same' / 'valid': the input size bounds the output
            return x.shape[0] * x.shape[-1] * x.shape[-2] * self.w_tiles.shape[0]
        for i, size in enumerate(x.shape[-2:]):
            k, p, d, st = b.kernel_size[i], b.padding[i], b.dilation[i], b.stride[i]
            hw *= max(1, (size + 2 * p - d * (k - 1) - 1) // st + 1)
        return x.shape[0] * hw * self.w_tiles.shape[0]

    def _reduce_abs(self, psum):
        return psum.abs().amax(dim=(0, 1, 2))

    def _finish(self, y, S, out):
        if S == 1:
            return y
        n, _, h, w = y.shape
        return y.reshape(n, S, out, h, w).sum(1)


def _is_binary_layer(m: nn.Module) -> bool:
    from cimlab.sim.binary_layers import BinaryLayerMixin

    return isinstance(m, BinaryLayerMixin)


def _rand(shape, generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _randn_into(job: tuple[torch.Tensor, torch.Generator]) -> None:
    out, gen = job
    torch.randn(out.shape, generator=gen, out=out)


_POOLS: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    """Shared worker threads for the split noise draws (torch releases the GIL)."""
    pool = _POOLS.get(threads)
    if pool is None:
        pool = _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="cimlab-noise")
    return pool


def _mix_seed(seed: int, stream: int) -> int:
    """63-bit seed of noise stream ``stream`` of a layer seeded ``seed`` (splitmix64)."""
    z = (seed + 0x9E3779B97F4A7C15 * (stream + 1)) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) >> 1


def _constant(effect: Any, form_field: str, const_field: str) -> float | None:
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
