"""Mitigations of ReRAM non-idealities (layer 9, docs/architecture.md).

Modules: :mod:`~cimlab.mitigation.hasgd` (noise-aware HA-SGD training, paper 002),
:mod:`~cimlab.mitigation.bnn_error_aware` (bit-error-aware BNN training, paper 003), and the
other mitigations in this package (BN calibration, architecture-aware training, ReMeCo
redundancy, sensitivity analysis, drift compensation, :mod:`~cimlab.mitigation.bench_ber`
(BER measured on the bench, paper 003 Table I), :mod:`~cimlab.mitigation.weight_mapping`
(paper 000's one-cell offset mapping vs the differential pair)). Importing this package is
cheap: the submodules (which import torch) load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public names -> submodule that defines them (loaded lazily).
_EXPORTS: dict[str, str] = {
    # HA-SGD (paper 002)
    "RelativeNoise": "hasgd",
    "DeviceNoise": "hasgd",
    "train_hasgd": "hasgd",
    "noisy_accuracy": "hasgd",
    "resilience_curves": "hasgd",
    "adc_study": "hasgd",
    # bit-error-aware BNN training (paper 003)
    "train_bnn": "bnn_error_aware",
    "tolerance_curves": "bnn_error_aware",
    "condition_table": "bnn_error_aware",
    # BER measured by the bench's BER campaign, beside paper 003 Table I
    "measure_ber": "bench_ber",
    # paper 000's one-cell offset mapping vs the differential pair, in weights
    "layer_study": "weight_mapping",
    # in-field BN calibration (paper 000) and global drift compensation
    "calibrate_bn": "bn_calibration",
    "snapshot_bn": "bn_calibration",
    "restore_bn": "bn_calibration",
    "DriftCompensation": "drift_compensation",
    # architecture-aware training (paper 001)
    "HardwareSpec": "architecture_aware",
    "View": "architecture_aware",
    "to_arch_aware": "architecture_aware",
    "train_levels": "architecture_aware",
    "evaluate_mappings": "architecture_aware",
    # ReMeCo sensitivity and redundancy (paper 004)
    "compute_sensitivity": "sensitivity",
    "CrossbarNonideality": "remeco",
    "remeco_table": "remeco",
    # cimlab reproduce PAPER
    "reproduce_paper": "reproduce",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"cimlab.mitigation.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'cimlab.mitigation' has no attribute {name!r}")
