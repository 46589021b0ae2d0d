"""1/f read noise in the simulator: the spectrum split into a frozen and a per-forward part.

A device model whose read-noise spectrum (:class:`cimlab.models.ReadNoiseSpectrum`,
``dm.read_noise_spectrum``) has a 1/f part (``a_peak > 0``) describes each cell's read
fluctuation by its one-sided PSD ``S(g, f) = sigma_w(g)^2 / B + A(g) f^-alpha(g)`` [S^2/Hz]
(``B`` = ``bandwidth_hz``). Over one evaluation of duration ``T`` (``AnalogConfig.
eval_duration_s``) the spectrum splits at ``f_T = min(1 / T, B)`` (docs/simulator.md, "Read
noise with a 1/f part"):

* frozen: fluctuations slower than ``f_T`` barely move during the evaluation; they are a
  per-cell offset, drawn once per ``program()`` / ``age()`` (a new time point), of variance
  ``int_{f_min}^{f_T} A(g) f^-alpha(g) df`` with ``f_min = max(f_lo_hz, 1 / t)``: below the
  lowest frequency the spectrum was fitted on the slow wander of a cell is the relaxation
  model's (``age()``), and fluctuations slower than ``1 / t`` (``t`` = the layer's equivalent
  time since programming, ``t_eq_s``) have not had the time to move the cell away from its
  programmed level;
* per forward: the white part and the faster flicker vary from one forward call to the next,
  variance ``sigma_w(g)^2 + int_{f_T}^{B} A(g) f^-alpha(g) df`` (from ``f_lo_hz`` when an
  evaluation lasts longer than ``1 / f_lo_hz``: the spectrum is not extrapolated below the
  frequencies it was fitted on).

The integrals are in closed form, ``int_{f1}^{f2} f^-a df = f1^(1-a) expm1((1-a) ln(f2/f1)) /
(1-a)`` (``ln(f2/f1)`` at ``a = 1``). The functions here work on cell tensors of any device;
with a constant exponent (``alpha1 = 0``) the integral is one number for every cell.
"""

from __future__ import annotations

import math

import torch

from cimlab.models.read_noise_spectrum import ReadNoiseSpectrum


def has_flicker(spec: ReadNoiseSpectrum) -> bool:
    """True when the spectrum has a 1/f part (``a_peak > 0``): the simulator then takes its
    read noise from the spectrum instead of ``dm.read_noise``."""
    return spec.a_peak > 0.0


def bands(spec: ReadNoiseSpectrum, eval_duration_s: float, age_s: float
          ) -> tuple[tuple[float, float], tuple[float, float]]:
    """``((f_min, f_T), (f_T, B))`` [Hz]: the frozen and the per-forward flicker bands of an
    evaluation lasting ``eval_duration_s`` [s] at ``age_s`` [s] (equivalent time since
    programming) (module docstring). A band whose upper edge is not above its lower one is
    empty (variance 0)."""
    if not eval_duration_s > 0:
        raise ValueError(f"eval_duration_s must be > 0 s, got {eval_duration_s!r}")
    f_hi = float(spec.bandwidth_hz)
    f_t = min(1.0 / float(eval_duration_s), f_hi)
    f_lo = float(spec.f_lo_hz)
    f_min = max(f_lo, 1.0 / float(age_s)) if age_s > 0 else math.inf
    return (f_min, f_t), (max(f_t, f_lo), f_hi)


def band_integral(alpha: float | torch.Tensor, f1: float, f2: float) -> float | torch.Tensor:
    """``int_{f1}^{f2} (f / 1 Hz)^-alpha df`` [Hz] for ``alpha`` a number or a tensor (per
    cell); 0 when ``f2 <= f1``."""
    if not f2 > f1:
        return 0.0 if not isinstance(alpha, torch.Tensor) else torch.zeros_like(alpha)
    lr = math.log(f2 / f1)
    if not isinstance(alpha, torch.Tensor):
        u = (1.0 - alpha) * lr
        ratio = 1.0 if abs(u) < 1e-12 else math.expm1(u) / u
        return f1 ** (1.0 - alpha) * lr * ratio
    b = 1.0 - alpha
    u = b * lr
    small = u.abs() < 1e-12
    ratio = torch.where(small, torch.ones_like(u), torch.expm1(u) / torch.where(small, 1.0, u))
    return torch.exp(b * math.log(f1)).mul_(ratio).mul_(lr)


def flicker_amplitude(spec: ReadNoiseSpectrum, g: torch.Tensor) -> torch.Tensor:
    """``A(g)`` [S^2/Hz] of cells ``g`` [S] (the model's Gaussian in g, evaluated in place)."""
    a = torch.sub(g, spec.g_peak).mul_(1.0 / spec.g_width).square_().mul_(-0.5).exp_()
    return a.mul_(spec.a_peak)


def band_variance(spec: ReadNoiseSpectrum, g: torch.Tensor, band: tuple[float, float]
                  ) -> torch.Tensor:
    """``int_band A(g) f^-alpha(g) df`` [S^2] of cells ``g`` [S]."""
    f1, f2 = band
    a = flicker_amplitude(spec, g)
    if spec.alpha1 == 0.0:
        return a.mul_(band_integral(float(spec.alpha0), f1, f2))
    alpha = torch.mul(g, spec.alpha1 / spec.g_ref).add_(spec.alpha0)
    return a.mul_(band_integral(alpha, f1, f2))


def white_variance(spec: ReadNoiseSpectrum, g: torch.Tensor) -> torch.Tensor:
    """``sigma_w(g)^2 = s0^2 + (s1 g / g_ref)^2`` [S^2] of cells ``g`` [S]."""
    return torch.mul(g, spec.s1 / spec.g_ref).square_().add_(spec.s0**2)


def one_read_variance(spec: ReadNoiseSpectrum, g: torch.Tensor) -> torch.Tensor:
    """Variance [S^2] of one read of cells ``g`` [S] at an arbitrary instant: the white part
    plus the whole fitted 1/f band ``f_lo_hz .. bandwidth_hz`` (what a read taken at a random
    time sees, frozen and per-forward parts together)."""
    band = (float(spec.f_lo_hz), float(spec.bandwidth_hz))
    return white_variance(spec, g).add_(band_variance(spec, g, band))


def pair_variances(spec: ReadNoiseSpectrum, g_pos: torch.Tensor, g_neg: torch.Tensor,
                   frozen: tuple[float, float], fast: tuple[float, float]
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Variances [S^2] of the differential pairs ``(g_pos, g_neg)`` [S]: per forward (white
    + flicker in the ``fast`` band) and frozen (flicker in the ``frozen`` band; None when
    that band is empty). The cells of a pair fluctuate independently: variances add."""
    var = white_variance(spec, g_pos).add_(white_variance(spec, g_neg))
    if spec.alpha1 == 0.0:  # one integral for every cell: A(g+) + A(g-) once
        a = flicker_amplitude(spec, g_pos).add_(flicker_amplitude(spec, g_neg))
        alpha = float(spec.alpha0)
        var.add_(a, alpha=band_integral(alpha, *fast))
        if not frozen[1] > frozen[0]:
            return var, None
        return var, a.mul_(band_integral(alpha, *frozen))
    var.add_(band_variance(spec, g_pos, fast)).add_(band_variance(spec, g_neg, fast))
    if not frozen[1] > frozen[0]:
        return var, None
    return var, band_variance(spec, g_pos, frozen).add_(band_variance(spec, g_neg, frozen))


__all__ = ["band_integral", "band_variance", "bands", "flicker_amplitude", "has_flicker",
           "one_read_variance", "pair_variances", "white_variance"]
