"""Hand a fitted :class:`~cimlab.models.DeviceModel` to IBM's aihwkit (analog inference).

:func:`aihwkit_config` turns the model's programming error, read noise, relaxation (drift and
spread) and retention (Arrhenius acceleration) into a plain JSON document in aihwkit's units
(uS); :func:`write_aihwkit_export` writes it with a copy of
:mod:`cimlab.models.aihwkit_noise` (``cimlab_aihwkit.py``), which builds the aihwkit noise model
and ``InferenceRPUConfig`` from it with aihwkit and torch only. The formulas are listed in that
module's docstring; see docs/export.md, "Models out".

Not exported (aihwkit's inference noise models have no place for them): stuck cells
(``dm.stuck``), wire resistance (``dm.wire``) and the binary programming conditions
(``dm.binary``); the document lists them under ``not_exported``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

from cimlab.models import aihwkit_noise
from cimlab.models.device_model import K_B_EV, DeviceModel

#: Siemens to microsiemens, and S^2 to uS^2.
_US = 1e6
_US2 = 1e12
#: Default inference temperature [K]: the model's reference (room) temperature is used when
#: none is given.
NOT_EXPORTED = ("stuck", "wire", "binary")


def _sigma_doc(effect: Any) -> dict[str, Any]:
    return {"form": effect.form, "g_ref_us": effect.g_ref * _US, "s0_us": effect.s0 * _US,
            "s1_us": effect.s1 * _US, "s2_us": effect.s2 * _US}


def aihwkit_config(dm: DeviceModel, *, temp_k: float | None = None,
                   read_noise: bool = True, name: str = "") -> dict[str, Any]:
    """The aihwkit export of ``dm`` as a JSON-able dict (conductances in uS).

    ``temp_k``: temperature [K] at which the network sits between programming and inference
    (default: the model's reference temperature, ``dm.retention.t_ref_k``); time at it counts
    ``dm.retention.acceleration(temp_k)`` times as room-temperature time. ``read_noise``:
    draw one read (``dm.read_noise``) per drift call.
    """
    pe, rn, rx, rt = dm.programming, dm.read_noise, dm.relaxation, dm.retention
    temp = float(rt.t_ref_k if temp_k is None else temp_k)
    if not temp > 0.0:
        raise ValueError(f"temp_k: expected a temperature > 0 K, got {temp_k}")
    prov = dataclasses.asdict(dm.provenance)
    prov["run_uids"] = list(prov.get("run_uids", ()))
    return {
        "format": aihwkit_noise.FORMAT, "format_version": aihwkit_noise.FORMAT_VERSION,
        "name": name,
        "units": {"conductance": "uS", "time": "s", "temperature": "K", "energy": "eV",
                  "variance_rate": "uS^2 per decade"},
        "g_min_us": dm.window.g_min * _US, "g_max_us": dm.window.g_max * _US,
        "levels": dm.window.levels,
        "programming": {**_sigma_doc(pe), "mean_offset_us": pe.mean_offset * _US,
                        "mode": pe.mode, "time_s": pe.time_s, "source": pe.source},
        "read_noise": {**_sigma_doc(rn), "time_slope": rn.time_slope, "t_ref_s": rn.t_ref_s,
                       "source": rn.source},
        "relaxation": {
            "form": rx.form, "g_ref_us": rx.g_ref * _US, "t0_s": rx.t0_s,
            "k0_us2": rx.k0 * _US2, "k1_us2": rx.k1 * _US2, "k2_us2": rx.k2 * _US2,
            "k_peak_us2": rx.k_peak * _US2, "g_peak_us": rx.g_peak * _US,
            "shape_a": rx.shape_a, "mean_form": rx.mean_form, "m_max_us": rx.m_max * _US,
            "g_center_us": rx.g_center * _US, "g_width_us": rx.g_width * _US,
            "source": rx.source,
        },
        "retention": {"ea_ev": rt.ea_ev, "t_ref_k": rt.t_ref_k, "tau0_s": rt.tau0_s,
                      "k_b_ev": K_B_EV, "source": rt.source},
        "inference": {"temp_k": temp, "read_noise": bool(read_noise),
                      "acceleration": float(rt.acceleration(temp))},
        "rpu_config": {"forward": {"is_perfect": True, "w_noise_type": "NONE", "w_noise": 0.0},
                       "drift_compensation": None, "clip": "NONE"},
        "not_exported": list(NOT_EXPORTED),
        "provenance": prov,
    }


def write_aihwkit_export(dm: DeviceModel, out_dir: str | Path, name: str, *,
                         temp_k: float | None = None, read_noise: bool = True) -> list[Path]:
    """Write ``out_dir/<name>.aihwkit.json`` and ``out_dir/cimlab_aihwkit.py``; return them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = aihwkit_config(dm, temp_k=temp_k, read_noise=read_noise, name=name)
    js = out / f"{name}.aihwkit.json"
    js.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    py = out / "cimlab_aihwkit.py"
    shutil.copyfile(aihwkit_noise.__file__, py)
    return [js, py]
