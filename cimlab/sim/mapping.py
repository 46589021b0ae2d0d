"""Weight -> conductance mapping and tile layout of one layer's weight matrix.

A layer's weights are the matrix ``W`` (out, K) (a conv's kernel flattened over (C, kh, kw)),
augmented with the bias as one extra row (paper 002: ``W~ = [W  b/s]``, input ``[x; s]``), the
bias scale ``s = max|b| / max|W|`` so that ``b/s`` spans the same range as the weights.

Differential pair, linear mapping (paper 000: weights in [-0.2, 0.2] onto 2e-6 .. 4e-5 S):
a weight ``w`` in ``[-wmax, wmax]`` becomes ``G+ = g_min + (g_max - g_min) |w| / wmax`` on the
cell of its sign and ``g_min`` on the other, so ``w = (G+ - G-) wmax / (g_max - g_min)``.
``wmax`` is the layer's ``max |W~|`` unless the configuration fixes it (a weight beyond a fixed
``wmax`` raises, it is never clipped). The off conductance ``g_min`` (on/off ratio
``g_max / g_min``) matters through noise, faults and IR drop.

Finite levels and bit slicing (paper 004: 4-bit cells, 2 columns per weight): with ``L``
levels per cell and ``S`` slices, ``|w| / wmax`` is rounded to an integer ``m`` in
``[0, L**S - 1]`` whose base-``L`` digits ``m_k`` (k = 0 least significant) are programmed as
``g_min + (g_max - g_min) m_k / (L - 1)`` on the column pair of slice ``k``; slice ``k``'s
column current is weighted digitally by ``L**k`` after its ADC. ``levels=None`` keeps the
continuous (analog) target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cimlab.errors import ConfigError


@dataclass(frozen=True)
class Mapping:
    """Linear weight <-> conductance map of one layer (all conductances in S)."""

    g_min: float
    g_max: float
    wmax: float
    levels: int | None
    slices: int

    @property
    def span(self) -> float:
        return self.g_max - self.g_min

    @property
    def m_max(self) -> int:
        """Largest magnitude integer (``L**S - 1``); 0 for continuous cells."""
        return 0 if self.levels is None else self.levels**self.slices - 1

    def slice_factors(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """Weight per siemens of differential current for each slice, shape (S,) [1/S]."""
        if self.levels is None:
            return torch.tensor([self.wmax / self.span], device=device, dtype=dtype)
        L = self.levels
        f = [self.wmax * (L - 1) * L**k / (self.m_max * self.span) for k in range(self.slices)]
        return torch.tensor(f, device=device, dtype=dtype)

    def targets(self, w: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Target conductances [S], shape ``(2, S) + w.shape``: index 0 = G+, 1 = G-
        (written into ``out`` when given)."""
        u = w.abs().mul_(1.0 / self.wmax)
        pos = w >= 0
        if self.levels is None:
            mags = [u.mul_(self.span)]
        elif self.slices == 1:
            mags = [torch.round(u.mul_(self.m_max)).mul_(self.span / (self.levels - 1))]
        else:
            m = torch.round(u * self.m_max)
            L = self.levels
            mags = []
            for _ in range(self.slices):
                digit = torch.remainder(m, L)
                mags.append(digit * (self.span / (L - 1)))
                m = torch.div(m - digit, L, rounding_mode="floor")
        # conductance above g_min of the cell on the weight's side, (S, ...)
        on = mags[0][None] if len(mags) == 1 else torch.stack(mags)
        if out is None:
            out = torch.empty((2, *on.shape), dtype=on.dtype, device=on.device)
        torch.mul(on, pos, out=out[0])
        torch.sub(on, out[0], out=out[1])  # on * (not pos), exactly
        return out.add_(self.g_min)

    def weights(self, g: torch.Tensor) -> torch.Tensor:
        """Weight [1] represented by conductances ``g`` of shape ``(2, S, ...)``."""
        f = self.slice_factors(g.device, g.dtype).view((-1,) + (1,) * (g.dim() - 2))
        return ((g[0] - g[1]) * f).sum(0)


def choose_wmax(w_aug: torch.Tensor, fixed: float | None, layer: str) -> float:
    """``max |W~|`` of the layer, or the configured ``fixed`` value (checked, never clipped)."""
    peak = float(w_aug.detach().abs().max()) if w_aug.numel() else 0.0
    if fixed is None:
        return peak if peak > 0 else 1.0
    if peak > fixed * (1 + 1e-6):
        raise ConfigError(
            None, "wmax",
            f"a weight range covering layer '{layer}' (its max |w| is {peak:.4g}; raise wmax or "
            "use wmax=None for a per-layer range)", fixed,
        )  # fmt: skip
    return float(fixed)


def bias_scale(weight: torch.Tensor, bias: torch.Tensor | None) -> float:
    """Paper 002's ``s``: bias row input such that ``b / s`` spans the weights' range."""
    if bias is None:
        return 1.0
    wm = float(weight.detach().abs().max())
    bm = float(bias.detach().abs().max())
    if wm == 0.0 or bm == 0.0:
        return 1.0
    return bm / wm


@dataclass(frozen=True)
class TileLayout:
    """Where the rows of ``W~`` (K weight rows + optional bias row) sit on tiles.

    Row tile ``t`` holds the contiguous weight rows ``[t * stride, (t + 1) * stride)`` (a
    conv's stride is a whole number of kernels, ``(rows // (kh kw)) kh kw``, so a tile holds
    whole input channels and the tiles map onto a grouped convolution). The bias row sits
    after the last tile's rows if there is room (``bias_tile = n_row_tiles - 1``), else on an
    extra tile of its own (``bias_tile = n_row_tiles``). Output weight ``o`` uses physical
    columns ``2 S (o mod per_col) ...`` of column tile ``o // per_col``, ``per_col =
    cols // (2 S)`` (a G+/G- pair per slice).
    """

    k: int
    rows: int
    cols: int
    stride: int
    n_row_tiles: int
    has_bias: bool
    bias_tile: int
    bias_pos: int
    per_col: int
    n_col_tiles: int

    @property
    def n_tiles_total(self) -> int:
        """Row tiles including an extra bias-only tile."""
        return max(self.n_row_tiles, self.bias_tile + 1) if self.has_bias else self.n_row_tiles

    @property
    def n_arrays(self) -> int:
        """Physical arrays used (row tiles x column tiles)."""
        return self.n_tiles_total * self.n_col_tiles

    def row_index(self, device=None) -> torch.Tensor:
        """(n_tiles_total, rows) index into ``W~``'s rows; ``k + 1`` marks an empty row."""
        empty = self.k + 1
        idx = torch.full((self.n_tiles_total, self.rows), empty, dtype=torch.long, device=device)
        ar = torch.arange(self.k, device=device)
        idx[ar // self.stride, ar % self.stride] = ar
        if self.has_bias:
            idx[self.bias_tile, self.bias_pos] = self.k
        return idx


def make_layout(
    k: int, out: int, has_bias: bool, tile: tuple[int, int] | None, slices: int, kernel: int = 1
) -> TileLayout:
    """Tile layout of a (out, k) matrix (``kernel`` = kh*kw for convs, 1 for linear)."""
    if tile is None:
        rows = k + (1 if has_bias else 0)
        cols = 2 * slices * out
    else:
        rows, cols = int(tile[0]), int(tile[1])
    if kernel > rows:
        raise ConfigError(
            None, "tile", f"at least {kernel} rows (one whole {kernel}-cell kernel per tile)", tile
        )
    stride = (rows // kernel) * kernel
    n_rt = max(1, -(-k // stride))
    used_last = k - (n_rt - 1) * stride
    if has_bias and used_last < rows:
        bias_tile, bias_pos = n_rt - 1, used_last
    else:
        bias_tile, bias_pos = n_rt, 0
    per_col = cols // (2 * slices)
    n_ct = -(-out // per_col)
    return TileLayout(k, rows, cols, stride, n_rt, has_bias, bias_tile, bias_pos, per_col, n_ct)


def to_tiles(g: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """Cells ``g`` (2, S, out, k+1) -> physical tiles (n_tiles, n_col_tiles, rows, cols).

    Column order inside a tile: weight, then slice, then +/- (G+ and G- adjacent). Empty
    cells are 0 S (not connected).
    """
    two, S, out, kk = g.shape
    pad_rows = torch.zeros(two, S, out, 1, dtype=g.dtype, device=g.device)
    if kk == layout.k:  # no bias row: add a dummy one so that index k+1 is the empty row
        g = torch.cat([g, pad_rows], dim=-1)
    g = torch.cat([g, pad_rows], dim=-1)
    idx = layout.row_index(g.device)
    t = g[..., idx]  # (2, S, out, n_tiles, rows)
    n_out = layout.n_col_tiles * layout.per_col
    if n_out > out:
        t = torch.cat([t, t.new_zeros(two, S, n_out - out, *t.shape[3:])], dim=2)
    t = t.view(two, S, layout.n_col_tiles, layout.per_col, layout.n_tiles_total, layout.rows)
    t = t.permute(4, 2, 5, 3, 1, 0)  # (n_tiles, n_ct, rows, per_col, S, 2)
    t = t.reshape(layout.n_tiles_total, layout.n_col_tiles, layout.rows, -1)
    used = 2 * S * layout.per_col
    if used < layout.cols:
        t = torch.cat([t, t.new_zeros(*t.shape[:3], layout.cols - used)], dim=-1)
    return t


def from_tiles(t: torch.Tensor, layout: TileLayout, S: int, out: int) -> torch.Tensor:
    """Inverse of :func:`to_tiles`: tiles -> cells (2, S, out, k + has_bias)."""
    used = 2 * S * layout.per_col
    t = t[..., :used].reshape(
        layout.n_tiles_total, layout.n_col_tiles, layout.rows, layout.per_col, S, 2
    )
    t = t.permute(5, 4, 1, 3, 0, 2).reshape(2, S, layout.n_col_tiles * layout.per_col, -1)
    t = t[:, :, :out]
    idx = layout.row_index(t.device).reshape(-1)
    n = layout.k + (1 if layout.has_bias else 0)
    g = t.new_zeros(2, S, out, layout.k + 2)
    g[..., idx] = t
    return g[..., :n]
