"""Layer geometry of an analog layer: how a Linear or Conv2d lies on the tiles.

A :class:`TileGeometry` says how a layer's flattened weight matrix (``out x k`` rows, plus
a bias row) is cut into row tiles of ``layout.stride`` rows (:class:`cimlab.sim.mapping.
TileLayout`), how the per-slice effective weights are arranged so that one batched op gives
every tile's partial sums, and how those partial sums are laid out, viewed and summed. The
crossbar (:mod:`cimlab.sim.crossbar`), the periphery (:mod:`cimlab.sim.periphery`) and the
forward pass (:mod:`cimlab.sim.layers`) only go through these hooks, so a new layer type
(e.g. a depth-wise or 1-D convolution) is one new geometry class.

Notation: ``S`` slices, ``out`` outputs, ``k`` weight rows, ``nt = layout.n_row_tiles``,
``N`` samples of a batch chunk. "psum" is one chunk's partial sums in the geometry's layout:
``(nt, N, S*out)`` for :class:`LinearGeometry` (tile dimension 0), ``(N, H, W, nt, S*out)``
for :class:`ConvGeometry` (tile dimension 3, NHWC memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from cimlab.sim.mapping import TileLayout


class TileGeometry:
    """Hooks every layer geometry provides (module docstring). Each is called by the forward
    pass or by ``_refresh``; none changes the layer's state."""

    base: nn.Module
    layout: TileLayout
    #: dimension of the row tiles in a psum tensor
    _tile_dim = 0

    def _matrix(self) -> torch.Tensor:
        """The trained weight as an (out, k) matrix (``program`` maps it onto cells)."""
        return self.base.weight.detach().reshape(self.base.weight.shape[0], -1)

    def _kernel(self) -> int:
        """Rows per input channel (kh kw for a convolution, 1 for a Linear): a row tile holds
        whole input channels (``make_layout``)."""
        raise NotImplementedError

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None):
        """The layer's digital operation with weight ``w`` (base shape) and bias ``b``: used
        without ADCs (one op per forward) and for binary layers."""
        raise NotImplementedError

    def _tiles_shape(self, S: int, out: int) -> tuple[int, ...]:
        """Shape of the per-tile weight arrangement (``w_tiles``) for ``S`` slices."""
        raise NotImplementedError

    def _arrange_into(self, dst: torch.Tensor, m: torch.Tensor, o0: int, out: int) -> None:
        """Write per-slice rows ``m`` (S, co, k) of outputs ``o0 .. o0+co`` into the tile
        arrangement ``dst`` (``_tiles_shape``), in place; empty rows of the last tile are 0.
        Called chunk by chunk by ``_refresh``."""
        raise NotImplementedError

    def _from_tiles_layout(self, t: torch.Tensor, S: int) -> torch.Tensor:
        """Inverse of ``_arrange_into``: tile arrangement -> per-slice rows (S, out, k)."""
        raise NotImplementedError

    def _tile_psums(self, x: torch.Tensor, wt: torch.Tensor) -> torch.Tensor:
        """Partial sums of every row tile for the batch chunk ``x`` (DAC-quantized input in
        the base layer's input shape) with the arranged weights ``wt``: one batched op;
        returns a psum tensor (module docstring)."""
        raise NotImplementedError

    def _psum_numel(self, x: torch.Tensor) -> int:
        """Elements of the psum tensor of the whole batch ``x`` (sizes the batch chunks)."""
        raise NotImplementedError

    def _psum_view(self, v: torch.Tensor, like: torch.Tensor | None, tiles: bool = False):
        """``v`` shaped to broadcast against psum tensors: ``(nt, S*out)`` per-tile values
        when ``tiles``, else an ``(S*out,)`` vector to add to one tile (``like``)."""
        raise NotImplementedError

    def _tile(self, psum: torch.Tensor, t: int) -> torch.Tensor:
        """View of row tile ``t``'s partial sums (writable: the bias row is added in place)."""
        raise NotImplementedError

    def _tile_sum_into(self, psum: torch.Tensor, y: torch.Tensor | None, i: int, n: int):
        """Digital sum over the row tiles of a batch chunk (its ADC-quantized ``psum``)
        starting at sample ``i``, written into ``y`` (allocated for the ``n`` samples at the
        first chunk, ``None`` then); returns ``y``."""
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

    def _tile_sum_view(self, y: torch.Tensor) -> torch.Tensor:
        """The summed partial sums as (N, S*out, ...)."""
        return y

    def _out_view(self, v: torch.Tensor) -> torch.Tensor:
        """(S*out,) vector shaped to add to a tile sum (``_tile_sum_view``)."""
        raise NotImplementedError

    def _reduce_abs(self, psum: torch.Tensor) -> torch.Tensor:
        """Max |partial sum| per (tile, S*out) over the samples (ADC calibration)."""
        raise NotImplementedError

    def _finish(self, y: torch.Tensor, S: int, out: int) -> torch.Tensor:
        """Tile sums (N, S*out, ...) -> layer output (N, out, ...): the digital sum over the
        slices (their weights are already in ``slice_f``)."""
        raise NotImplementedError


class LinearGeometry(TileGeometry):
    """``nn.Linear``: rows = input features (+ bias row), columns = outputs; the row tiles
    are one ``bmm`` over a (nt, stride, S*out) arrangement."""

    _tile_dim = 0  # psum (n_tiles, N, S*out)

    def _kernel(self) -> int:
        return 1

    def _op(self, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None):
        return F.linear(x, w, b)

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

    def _out_view(self, v):
        return v

    def _psum_numel(self, x):
        n = x.numel() // x.shape[-1]
        return self.layout.n_row_tiles * n * self.w_tiles.shape[-1]

    def _reduce_abs(self, psum):
        return psum.abs().amax(dim=1)

    def _finish(self, y, S, out):
        return y.reshape(y.shape[0], S, out).sum(1)


class ConvGeometry(TileGeometry):
    """``nn.Conv2d``: rows = (in-channel, kh, kw), columns = out channels. A tile holds whole
    input channels (``rows // (kh kw)`` of them), so all row tiles run as one grouped
    convolution (``groups = n_row_tiles``) whose outputs are the partial sums."""

    base: nn.Conv2d

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
        elif c_pad > x.shape[1]:  # one row tile: its unused rows are 0 S, leave them out
            wt = wt[:, : x.shape[1]]
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
