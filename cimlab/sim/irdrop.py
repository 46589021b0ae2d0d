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
    with ``from_tiles`` (tested), in the cell layout:

    * ``A`` (word line): physical columns of a column tile are ``(output, slice, +/-)``, so the
      cells, transposed to ``(rows, co, S, 2)``, are one contiguous run per tile row;
    * ``B`` (bit line): with ``P_k`` the current accumulated down to tile position ``k``,
      ``B_i = sum_{k=p_i}^{R-1} P_k``: weight rows sit at positions ``0 .. stride-1`` of their
      row tile (positions ``stride .. R-1`` carry ``P_total``), the bias row at ``bias_pos``
      after every weight row of ``bias_tile`` adds ``G_b (R - bias_pos)`` to their ``B`` and
      has ``B_b = (R - bias_pos) (P_total + G_b)``.
    """
    two, S, co, kk = g.shape
    lay = layout
    k, R, st, nrt, per = lay.k, lay.rows, lay.stride, lay.n_row_tiles, lay.per_col
    has_b = kk == k + 1
    # A: along the physical columns of each column tile (pad outputs to whole tiles)
    co_pad = -(-co // per) * per
    gt = g.new_zeros(kk, co_pad, S, two) if co_pad > co else g.new_empty(kk, co_pad, S, two)
    gt[:, :co] = g.permute(3, 2, 1, 0)
    gt = gt.view(kk, co_pad // per, per * S * two)
    a = (gt.sum(-1, keepdim=True) - gt.cumsum(-1)).add_(gt).cumsum_(-1)
    a = a.view(kk, co_pad, S, two)[:, :co].permute(3, 2, 1, 0)  # (2, S, co, kk) view
    # B: along the rows of each row tile
    n_main = nrt * st
    if n_main == k and not has_b:
        gm = g.reshape(two, S, co, nrt, st)
    else:
        gm = g.new_zeros(two, S, co, n_main)
        gm[..., :k] = g[..., :k]
        gm = gm.view(two, S, co, nrt, st)
    p = gm.cumsum_(-1) if gm.data_ptr() != g.data_ptr() else gm.cumsum(-1)
    p_tot = p[..., -1:]
    b = (p.sum(-1, keepdim=True) - p.cumsum(-1)).add_(p)
    if R > st:
        b.add_(p_tot, alpha=float(R - st))
    d = g.new_empty(two, S, co, kk)
    if has_b:
        g_b = g[..., k]
        pos = float(R - lay.bias_pos)
        if lay.bias_tile < nrt:
            b[..., lay.bias_tile, :].add_(g_b[..., None], alpha=pos)
            d[..., k] = (p_tot[..., lay.bias_tile, 0] + g_b) * pos
        else:
            d[..., k] = g_b * pos
    d[..., :k] = b.view(two, S, co, n_main)[..., :k]
    return d.add_(a)


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
