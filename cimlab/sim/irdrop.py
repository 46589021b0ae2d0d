"""First-order IR-drop correction of a crossbar tile (wire resistance of word and bit lines).

Geometry (the one :mod:`cimlab.physics` solves exactly; docs/simulator.md, "IR drop"): a tile
of ``R x P`` cells; row ``i`` is driven with voltage ``v_i`` at its column-0 end and every
word-line segment (driver -> cell 0, cell j-1 -> cell j) has resistance ``r``; column ``j`` is
held at virtual ground by its sense amplifier below the last row, and every bit-line segment
(cell i -> cell i+1, last cell -> amplifier) has resistance ``r``. Paper 004 (ReMeCo) gives
``r ~ N(2, 0.5)`` ohm per segment; the device model's ``wire.r_segment_ohm`` is used.

Approximation: start from the ideal cell currents ``i_ij = G_ij v_i`` and propagate them once
through the wires (one Jacobi step of the nodal equations, i.e. first order in ``r G``):

* word-line node voltage  ``v_i - r v_i A_ij``,  ``A_ij = sum_j' G_ij' (min(j, j') + 1)``
* bit-line node voltage   ``r sum_i' G_i'j v_i' (R - max(i, i'))``

so the column current is ``I_j = sum_i v_i G_ij (1 - r (A_ij + B_ij))`` with
``B_ij = sum_i' G_i'j (R - max(i, i'))``: the tile behaves like an *input-independent*
effective conductance matrix. ``first_order`` returns ``G (1 - r (A + B))``; ``rational``
(the default) returns ``G / (1 + r (A + B))``, equal to first order in ``r`` but bounded and
positive when the drop is large, and closer to the exact solution (measured in
tests/sim/test_irdrop.py against :func:`cimlab.physics` 's nodal solution). ``A`` and ``B``
are double cumulative sums, so the correction costs O(R P) per tile and is computed once per
``program()`` / ``age()``, never in the forward pass. :func:`cell_drop_factors` computes the
same ``A + B`` directly in the simulator's cell layout ``(2, S, out, rows)`` (no gather into
physical tiles and back; every cumulative sum runs along contiguous memory).
"""

from __future__ import annotations

import torch

from cimlab.sim.mapping import TileLayout

IR_DROP_FORMS = ("rational", "first_order")


def drop_factors(g: torch.Tensor) -> torch.Tensor:
    """First-order IR-drop factors ``A + B`` [S] of tiles ``g`` of shape ``(..., R, P)`` [S]:
    ``A_ij = sum_j' G_ij' (min(j, j') + 1)`` (word line, driven at column 0) plus
    ``B_ij = sum_i' G_i'j (R - max(i, i'))`` (bit line, sensed below the last row); the
    effective conductance is ``G / (1 + r (A + B))`` for wire segments of ``r`` ohm."""
    # A_ij = sum_{k<=j} sum_{j'>=k} G_ij'  (current through word-line segment k, accumulated);
    # suffix sums as total - prefix + self (no flipped copies)
    prefix = g.cumsum(-1)
    a = (g.sum(-1, keepdim=True) - prefix).add_(g).cumsum_(-1)
    # B_ij = sum_{k>=i} sum_{i'<=k} G_i'j  (current through bit-line segment k, accumulated)
    p_rows = g.cumsum(-2)
    b = (p_rows.sum(-2, keepdim=True) - p_rows.cumsum(-2)).add_(p_rows)
    return a.add_(b)


def cell_drop_factors(g: torch.Tensor, layout: TileLayout) -> torch.Tensor:
    """``A + B`` [S] of every cell of ``g`` (2, S, co, k [+ 1 bias row]) [S] on its tile.

    ``layout`` is the layer's :class:`cimlab.sim.mapping.TileLayout`; the ``co`` outputs must
    start at a column-tile boundary. Equal to ``drop_factors`` of ``to_tiles(g)`` mapped back
    with ``from_tiles`` (tested), in the cell layout, with no transposed copy:

    * ``A`` (word line): :func:`_word_line_into`;
    * ``B`` (bit line): with ``P_q`` the current accumulated down to tile position ``q``,
      ``B_i = sum_{q=p_i}^{R-1} P_q``: weight rows sit at positions ``0 .. stride-1`` of their
      row tile (positions ``stride .. R-1`` carry ``P_total``), the bias row at ``bias_pos``
      after every weight row of ``bias_tile`` adds ``G_b (R - bias_pos)`` to their ``B`` and
      has ``B_b = (R - bias_pos) (P_total + G_b)``.
    """
    two, S, co, kk = g.shape
    lay = layout
    k, R, st, nrt = lay.k, lay.rows, lay.stride, lay.n_row_tiles
    has_b = kk == k + 1
    d = g.new_empty(two, S, co, kk)
    _word_line_into(g, lay.per_col, d)
    # B along the rows of each row tile (pad the last tile's missing rows with 0 S)
    n_main = nrt * st
    if n_main == k:
        p = g[..., :k].reshape(two, S, co, nrt, st).cumsum(-1)
    else:
        gm = g.new_zeros(two, S, co, n_main)
        gm[..., :k] = g[..., :k]
        p = gm.view(two, S, co, nrt, st).cumsum_(-1)
    p_tot = p[..., -1:].clone()
    # sum_{q >= pos} P_q = sum_q P_q - cumsum(P)_pos + P_pos, plus (R - stride) P_total
    p_sum = p.sum(-1, keepdim=True)
    if R > st:
        p_sum.add_(p_tot, alpha=float(R - st))
    pos_b = float(R - lay.bias_pos)
    if has_b and lay.bias_tile < nrt:
        p_sum[..., lay.bias_tile, :].add_(g[..., k, None], alpha=pos_b)
    v = p.cumsum(-1)
    if n_main == k:  # add in place on d's weight rows (a view split into row tiles)
        d[..., :k].view(two, S, co, nrt, st).add_(p).sub_(v).add_(p_sum)
    else:
        p.sub_(v).add_(p_sum)
        d[..., :k].add_(p.view(two, S, co, n_main)[..., :k])
    if has_b:
        g_b = g[..., k]
        if lay.bias_tile < nrt:
            d[..., k].add_((p_tot[..., lay.bias_tile, 0] + g_b) * pos_b)
        else:
            d[..., k].add_(g_b * pos_b)
    return d


def _word_line_into(g: torch.Tensor, per_col: int, out: torch.Tensor) -> None:
    """Word-line factors ``A_ij = sum_j' G_ij' (min(j, j') + 1)`` [S] of cells ``g`` (2, S,
    co, rows) [S] written into ``out`` (same shape).

    The physical columns of a column tile are ``j = (o S + s) 2 + pm`` (output ``o`` of the
    tile, slice ``s``, G+/G- ``pm``), so ``A_j = C1_j + (j + 1) (T - P_j)`` with ``P_j =
    sum_{j' <= j} G_j'``, ``C1_j = sum_{j' <= j} (j' + 1) G_j'`` and ``T`` the row's total:
    per output the ``2 S`` columns are summed first, the sums accumulated over the tile's
    outputs (a product with a lower-triangular matrix of ones, i.e. a prefix sum along the
    outputs, vectorised over the rows), then each column's ``P_j`` and ``C1_j`` are those
    totals less the columns after it in its output's block.
    """
    _, S, co, kk = g.shape
    m = 2 * S
    n_full = co // per_col
    parts = [(0, n_full * per_col, n_full, per_col)] if n_full else []
    if co > n_full * per_col:  # a last, partial column tile (its missing outputs are 0 S)
        parts.append((n_full * per_col, co, 1, co - n_full * per_col))
    for a, b, nct, pc in parts:
        cols = [g[c % 2, c // 2, a:b].view(nct, pc, kk) for c in range(m)]  # column order
        o_m = torch.arange(pc, dtype=g.dtype, device=g.device).mul_(m).view(1, pc, 1)
        q = cols[0].clone()  # per output: sum of its columns ...
        h = cols[0].clone()  # ... and sum of (c + 1) G_c
        for c in range(1, m):
            q.add_(cols[c])
            h.add_(cols[c], alpha=float(c + 1))
        h.addcmul_(q, o_m)  # sum_c (o m + c + 1) G_c
        tri = torch.ones(pc, pc, dtype=g.dtype, device=g.device).tril_()
        p_inc = torch.matmul(tri, q)  # P after each output's last column
        c1_inc = torch.matmul(tri, h)  # C1 after each output's last column
        total = p_inc[:, -1:, :]
        p_after = c1_after = None  # the block's columns after c
        for c in range(m - 1, -1, -1):
            dst = out[c % 2, c // 2, a:b].view(nct, pc, kk)
            w = o_m + float(c + 1)  # j + 1
            torch.sub(total, p_inc, out=dst)
            if p_after is not None:
                dst.add_(p_after)
            dst.mul_(w).add_(c1_inc)
            if c1_after is not None:
                dst.sub_(c1_after)
            if c > 0:
                if p_after is None:
                    p_after, c1_after = cols[c].clone(), cols[c] * w
                else:
                    p_after.add_(cols[c])
                    c1_after.addcmul_(cols[c], w)


def effective_conductance(
    g: torch.Tensor, r_segment_ohm: float, form: str = "rational"
) -> torch.Tensor:
    """Conductances [S] a tile ``g`` (..., R, P) [S] presents to its inputs with wire drop."""
    if r_segment_ohm == 0.0:
        return g
    d = drop_factors(g) * r_segment_ohm
    if form == "rational":
        return g / (1.0 + d)
    if form == "first_order":
        return g * (1.0 - d)
    raise ValueError(f"IR-drop form must be one of {IR_DROP_FORMS}, got {form!r}")


def column_currents(
    g: torch.Tensor, v_rows: torch.Tensor, r_segment_ohm: float, form: str = "rational"
) -> torch.Tensor:
    """Approximate column currents [A] of one tile ``g`` (R, P) [S] for ``v_rows`` (..., R) [V]."""
    return v_rows @ effective_conductance(g, r_segment_ohm, form)
