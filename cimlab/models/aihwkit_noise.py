"""A cimlab device model as an aihwkit inference noise model (standalone: no cimlab imports).

``cimlab model-export MODEL --to aihwkit`` writes the model's parameters as JSON
(``<name>.aihwkit.json``, see :func:`cimlab.models.export_aihwkit.aihwkit_config`) and a copy
of this file as ``cimlab_aihwkit.py``, so an aihwkit user needs neither cimlab nor its
dependencies::

    from cimlab_aihwkit import load_config, noise_model, rpu_config
    cfg = load_config("chip01.aihwkit.json")
    rpu = rpu_config(cfg)                          # InferenceRPUConfig with the noise model
    analog = aihwkit.nn.conversion.convert_to_analog(net, rpu)
    analog.eval(); analog.program_analog_weights(); analog.drift_analog_weights(3600.0)

Conductances are in uS (aihwkit's unit); times in s; temperatures in K. The model, per device
programmed to ``g_t`` (the formulas of cimlab.models.effects and DeviceModel's samplers):

* programming: ``g_p = max(0, g_t + mean_offset + sigma_prog(g_t) N(0, 1))``;
* after ``t_inference`` seconds at ``temp_k`` (the config's inference temperature):
  equivalent room-temperature time ``t_eq = t AF(T)``, ``AF = exp(Ea/kB (1/T_ref - 1/T))``
  (retention), then ``g = max(0, g_p + drift(g_p) L(t_eq) + sqrt(k(g_p) L(t_eq)) N(0, 1))``,
  ``L(t) = log10(1 + t / t0)`` (relaxation);
* one read: ``g_r = max(0, g + sigma_read(g) N(0, 1))``, drawn once per
  ``drift_analog_weights`` call (aihwkit's convention for 1/f read noise in its PCM model),
  so a network evaluated after a drift sees one frozen read of each device.

``sigma(g)`` forms (``x = g / g_ref``): constant/proportional/linear/polynomial
``s0 + s1 x + s2 x^2``; quadrature ``sqrt(s0^2 + (s1 x)^2)``. ``k(g)``: polynomial
``k0 + k1 x + k2 x^2`` or peaked ``k_peak u^a exp(a (1 - u))``, ``u = g / g_peak``.
``drift(g)``: tanh ``m_max tanh((g_center - g) / g_width)`` or linear
``m_max (g_center - g) / g_width``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

#: The value of ``format`` in an exported file.
FORMAT = "cimlab-aihwkit-noise-model"
FORMAT_VERSION = 1


def load_config(path: str | Path) -> dict[str, Any]:
    """Read an exported ``*.aihwkit.json`` (checks its ``format``)."""
    cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    if cfg.get("format") != FORMAT:
        raise ValueError(f"{path}: format: expected {FORMAT!r}, got {cfg.get('format')!r}")
    if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version: expected <= {FORMAT_VERSION} (a newer "
                         f"export; update cimlab_aihwkit.py), got {cfg.get('format_version')}")
    return cfg


def _mod(x: Any) -> Any:
    """The array module of ``x``: torch for tensors, else NumPy."""
    if type(x).__module__.startswith("torch"):
        import torch

        return torch
    import numpy

    return numpy


def sigma_us(p: dict[str, Any], g_us: Any) -> Any:
    """Std [uS] of a ``sigma(g)`` effect (programming or read noise) at ``g_us`` [uS]."""
    x = g_us / p["g_ref_us"]
    if p["form"] == "quadrature":
        return _mod(x).sqrt(p["s0_us"] ** 2 + (p["s1_us"] * x) ** 2)
    return p["s0_us"] + x * (p["s1_us"] + p["s2_us"] * x)


def decades(r: dict[str, Any], t_s: float) -> float:
    """Relaxation clock ``L(t) = log10(1 + t / t0)`` [decades]."""
    return math.log10(1.0 + t_s / r["t0_s"])


def rate_us2(r: dict[str, Any], g_us: Any) -> Any:
    """Relaxation variance rate ``k(g)`` [uS^2 per decade]."""
    m = _mod(g_us)
    if r["form"] == "peaked":
        g0 = g_us.clamp_min(0.0) if m.__name__ == "torch" else m.maximum(g_us, 0.0)
        u = g0 / r["g_peak_us"]
        return r["k_peak_us2"] * u ** r["shape_a"] * m.exp(r["shape_a"] * (1.0 - u))
    x = g_us / r["g_ref_us"]
    return r["k0_us2"] + x * (r["k1_us2"] + r["k2_us2"] * x)


def drift_us(r: dict[str, Any], g_us: Any) -> Any:
    """Mean drift per decade [uS] at ``g_us`` (towards ``g_center_us``)."""
    u = (r["g_center_us"] - g_us) / r["g_width_us"]
    if r["mean_form"] == "tanh":
        return r["m_max_us"] * _mod(u).tanh(u)
    return r["m_max_us"] * u


def acceleration(ret: dict[str, Any], temp_k: float) -> float:
    """Arrhenius factor of time at ``temp_k`` vs room temperature (dimensionless)."""
    return math.exp(ret["ea_ev"] / ret["k_b_ev"] * (1.0 / ret["t_ref_k"] - 1.0 / temp_k))


def equivalent_time_s(cfg: dict[str, Any], t_s: float) -> float:
    """Room-temperature equivalent [s] of ``t_s`` at the config's ``inference.temp_k``."""
    return t_s * acceleration(cfg["retention"], cfg["inference"]["temp_k"])


def _randn(like: Any, generator: Any) -> Any:
    import torch

    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=like.device)


def sample_programmed_us(cfg: dict[str, Any], g_target: Any, generator: Any = None) -> Any:
    """Conductance [uS] right after programming to ``g_target`` [uS] (a torch tensor)."""
    p = cfg["programming"]
    g = g_target + p["mean_offset_us"] + sigma_us(p, g_target) * _randn(g_target, generator)
    return g.clamp_min(0.0)


def sample_inference_us(cfg: dict[str, Any], g_prog: Any, t_s: float,
                        generator: Any = None) -> Any:
    """Conductance [uS] read ``t_s`` seconds (at ``inference.temp_k``) after programming to
    ``g_prog`` [uS]: relaxation at the equivalent time, then one read (if enabled)."""
    r = cfg["relaxation"]
    big_l = decades(r, equivalent_time_s(cfg, float(t_s)))
    var = (rate_us2(r, g_prog) * big_l).clamp_min(0.0)
    g = (g_prog + drift_us(r, g_prog) * big_l + var.sqrt() * _randn(g_prog, generator))
    g = g.clamp_min(0.0)
    if cfg["inference"].get("read_noise", True):
        g = g + sigma_us(cfg["read_noise"], g) * _randn(g, generator)
    return g.clamp_min(0.0)


def noise_model(cfg: dict[str, Any], g_converter: Any = None) -> Any:
    """An ``aihwkit.inference.BaseNoiseModel`` for the exported model (needs aihwkit, torch).

    ``g_converter``: aihwkit's conductance converter (default: a
    ``SinglePairConductanceConverter`` from ``g_min_us`` to ``g_max_us``: each weight on one
    differential pair, the unused device at ``g_min``).
    """
    import torch
    from aihwkit.inference import BaseNoiseModel
    from aihwkit.inference.converter.conductance import SinglePairConductanceConverter

    class CimlabNoiseModel(BaseNoiseModel):
        """cimlab device model (programming, relaxation, retention, read noise) in aihwkit."""

        def __init__(self, config: dict[str, Any], converter: Any = None):
            converter = converter or SinglePairConductanceConverter(
                g_max=config["g_max_us"], g_min=config["g_min_us"])
            super().__init__(converter)
            self.config = config

        @torch.no_grad()
        def apply_programming_noise_to_conductance(self, g_target: torch.Tensor
                                                   ) -> torch.Tensor:
            return sample_programmed_us(self.config, g_target)

        @torch.no_grad()
        def generate_drift_coefficients(self, g_target: torch.Tensor) -> None:
            return None  # relaxation depends on the programmed conductance only

        @torch.no_grad()
        def apply_drift_noise_to_conductance(self, g_prog: torch.Tensor, drift_noise_param: Any,
                                             t_inference: float) -> torch.Tensor:
            return sample_inference_us(self.config, g_prog, t_inference)

    return CimlabNoiseModel(cfg, g_converter)


def rpu_config(cfg: dict[str, Any], g_converter: Any = None) -> Any:
    """An ``aihwkit`` ``InferenceRPUConfig`` using :func:`noise_model`, with the settings in
    ``cfg["rpu_config"]`` (no drift compensation, ideal periphery unless set there)."""
    from aihwkit.inference.compensation.drift import GlobalDriftCompensation
    from aihwkit.simulator.configs import InferenceRPUConfig
    from aihwkit.simulator.parameters.enums import WeightNoiseType

    rc = cfg.get("rpu_config", {})
    rpu = InferenceRPUConfig()
    rpu.noise_model = noise_model(cfg, g_converter)
    rpu.drift_compensation = (GlobalDriftCompensation()
                              if rc.get("drift_compensation") == "global" else None)
    fwd = rc.get("forward", {})
    rpu.forward.is_perfect = bool(fwd.get("is_perfect", True))
    rpu.forward.w_noise_type = getattr(WeightNoiseType, fwd.get("w_noise_type", "NONE"))
    rpu.forward.w_noise = float(fwd.get("w_noise", 0.0))
    for name in ("inp_res", "out_res", "out_noise"):
        if name in fwd:
            setattr(rpu.forward, name, fwd[name])
    rpu.clip.type = getattr(type(rpu.clip.type), rc.get("clip", "NONE"))
    return rpu
