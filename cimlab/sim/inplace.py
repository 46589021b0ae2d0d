"""Device-model functions evaluated on large conductance tensors with one allocation.

``cimlab.models`` defines each function once (``ReadNoise.sigma``, ``Relaxation.drift``) for
numpy and torch alike; evaluated on millions of cells that generic form allocates a
temporary per operation. The simulator calls these instead: the same formulas for the forms
whose coefficients they read (Horner in place), and the model's own function otherwise, so
a new model form is never mis-evaluated (tests/sim/test_inplace.py compares every form with
the model).
"""

from __future__ import annotations

import torch

from cimlab.models.effects import ReadNoise, Relaxation

_POLY_FORMS = ("constant", "proportional", "linear", "polynomial")


def read_sigma(rn: ReadNoise, g: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``rn.sigma(g)`` [S] (no time dependence) into ``out`` (a new tensor when None)."""
    if rn.form not in _POLY_FORMS:
        s = rn.sigma(g)
        return s if out is None else out.copy_(s)
    c0, c1, c2 = float(rn.s0), float(rn.s1) / rn.g_ref, float(rn.s2) / rn.g_ref**2
    if c2 != 0.0:
        out = torch.mul(g, c2, out=out).add_(c1).mul_(g)
    else:
        out = torch.mul(g, c1, out=out)
    return out.add_(c0)


def read_variance_pair(rn: ReadNoise, g_pos: torch.Tensor, g_neg: torch.Tensor) -> torch.Tensor:
    """``sigma(g_pos)^2 + sigma(g_neg)^2`` [S^2] of the cells of differential pairs."""
    a = read_sigma(rn, g_pos).square_()
    b = read_sigma(rn, g_neg)
    return a.addcmul_(b, b)


def add_drift(rel: Relaxation, g: torch.Tensor, dst: torch.Tensor, scale: float) -> torch.Tensor:
    """``dst += scale * rel.drift(g)`` in place (``g`` [S], drift [S] per decade)."""
    if rel.mean_form == "tanh":  # tanh(u) = 2 sigmoid(2 u) - 1 (sigmoid: ~4x cheaper on CPU)
        u = torch.mul(g, -2.0 / rel.g_width).add_(2.0 * rel.g_center / rel.g_width).sigmoid_()
        return dst.add_(u, alpha=2.0 * scale * rel.m_max).sub_(scale * rel.m_max)
    return dst.add_(rel.drift(g), alpha=scale)
