"""Periphery of an analog layer: DAC and ADC quantization, converter ranges, read noise.

:class:`Periphery` is the part of :class:`cimlab.sim.layers.AnalogLayer` that models the
circuits around the array (paper 001 Fig. 1a): the DAC that turns activations into row
voltages (``_input_range`` and :func:`quantize`), the per-tile ADC that digitises each
tile's partial sums (``_adc_ranges``, ``_record_adc`` for calibration) and the read
fluctuation of the cells seen at every forward call (``_gen``, ``_noisy``). It holds no
cell state; the crossbar (:mod:`cimlab.sim.crossbar`) and the derived arrays
(:mod:`cimlab.sim.effective`) do.

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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from cimlab.sim.config import AnalogConfig
    from cimlab.sim.mapping import TileLayout

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


class Periphery:
    """DAC, ADC and read noise of one layer (module docstring).

    Expects from its host: ``config``, ``layout``, ``layer_name``, ``calibrating`` (0 off,
    1 fitting the DAC range, 2 fitting the ADC ranges), ``x_range``/``x_signed`` (calibrated
    DAC full scale), ``_adc_cal``, ``adc_a``/``adc_b``/``slice_f``/``g_cells`` (from
    ``_refresh``), ``_noise_seed`` (drawn by ``program``) and ``_reduce_abs`` (geometry).
    """

    config: AnalogConfig
    layout: TileLayout
    layer_name: str
    calibrating: int
    x_range: float | None
    x_signed: bool | None
    _adc_cal: torch.Tensor | None
    _noise_seed: int
    _noise_gen: torch.Generator | None

    def _gen(self, device: torch.device) -> torch.Generator:
        """The layer's noise generator on ``device`` (seeded from the noise seed drawn at
        program time; rebuilt when the device changes). Used by every forward draw and by
        ``age``."""
        g = self._noise_gen
        if g is None or g.device != device:
            g = torch.Generator(device=device).manual_seed(self._noise_seed)
            self._noise_gen = g
        return g

    def _input_range(self, x: torch.Tensor) -> tuple[float, bool]:
        """DAC full scale and polarity for input ``x``: calibrated, else this batch's max |x|
        (one pass). Called by ``forward`` when a converter is on or while calibrating; in
        calibration pass 1 it also widens ``x_range``/``x_signed``."""
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
        buf = self._normals(w.shape, w.dtype, w.device, gen, key)
        return torch.addcmul(w, buf, sd, out=buf)

    def _normals(self, shape, dtype: torch.dtype, device: torch.device,
                 gen: torch.Generator, key: str) -> torch.Tensor:
        """Fresh standard normals of ``shape`` in a workspace reused between calls (keyed by
        ``key``; a flat buffer that grows to the largest shape asked for, so the last, smaller
        chunk of a batch does not reallocate), drawn as :func:`fill_standard_normal` draws.
        The tensor is overwritten by the next call with the same key."""
        ws = self.__dict__.setdefault("_workspace", {})
        n = math.prod(shape)
        buf = ws.get(key)
        if buf is None or buf.numel() < n or buf.device != device or buf.dtype != dtype:
            buf = torch.empty(n, dtype=dtype, device=device)
            ws[key] = buf
        return fill_standard_normal(buf[:n].view(shape), gen, self._streams)

    def _streams(self) -> list[torch.Generator]:
        """The CPU noise streams of large draws (seeded at program time)."""
        gens = self.__dict__.get("_noise_streams")
        if gens is None:
            gens = self._noise_streams = stream_generators(self._noise_seed)
        return gens

    def _adc_ranges(self, xr: float) -> torch.Tensor:
        """ADC full scale per (tile, slice, out) in weight units, for input full scale ``xr``:
        calibrated (``calibrate()``) or the worst case of the target cells (``adc_a xr +
        adc_b``), the max over the columns of each physical tile. Called by every tiled
        forward; returns (n_tiles_total, S, out)."""
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

    @torch.no_grad()
    def _record_adc(self, psum, extra, S, out):
        """Calibration pass 2: accumulate max |partial sum| per physical tile (conductance
        units) in ``_adc_cal``. ``psum``: this chunk's partial sums (geometry layout) or None;
        ``extra``: the bias tile's (S*out,) sums when the bias has a tile of its own."""
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


def fill_standard_normal(
    buf: torch.Tensor, gen: torch.Generator, streams: Callable[[], list[torch.Generator]]
) -> torch.Tensor:
    """Fill ``buf`` with standard normals, in place. Small or non-CPU tensors draw from
    ``gen``; CPU tensors of at least :data:`NOISE_SPLIT` elements are cut into
    :data:`NOISE_STREAMS` fixed parts, each drawn from its own generator of ``streams()``
    on the shared worker threads: the numbers depend on the seeds, never on the thread
    count."""
    n = buf.numel()
    if buf.device.type != "cpu" or n < NOISE_SPLIT or not buf.is_contiguous():
        return torch.randn(buf.shape, generator=gen, out=buf)
    flat = buf.view(-1)
    parts = [flat[i * n // NOISE_STREAMS : (i + 1) * n // NOISE_STREAMS]
             for i in range(NOISE_STREAMS)]  # fmt: skip
    jobs = list(zip(parts, streams(), strict=True))
    threads = min(torch.get_num_threads(), NOISE_STREAMS)
    if threads > 1:
        list(_pool(threads).map(_randn_into, jobs))
    else:
        for job in jobs:
            _randn_into(job)
    return buf


def stream_generators(seed: int, first: int = 0) -> list[torch.Generator]:
    """:data:`NOISE_STREAMS` CPU generators seeded from ``seed`` (streams ``first`` ..)."""
    return [torch.Generator().manual_seed(_mix_seed(seed, first + i))
            for i in range(NOISE_STREAMS)]  # fmt: skip


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
