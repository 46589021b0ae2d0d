"""Fitted statistical device models of ReRAM arrays, fitting from the store, JSON export.

Layer 7 (docs/architecture.md section 7). Importing this package never imports torch; the
formulas and samplers take torch tensors (with a ``torch.Generator``) as well as NumPy arrays.

>>> from cimlab.models import DeviceModel
>>> dm = DeviceModel.default()              # literature values (papers 000, 003, 004)
>>> dm.window.g_max
4e-05
"""

from cimlab.models.device_model import EFFECTS, DeviceModel, Provenance
from cimlab.models.effects import (
    BinaryCondition,
    BinaryStates,
    ConductanceWindow,
    ProgrammingError,
    ReadNoise,
    Relaxation,
    Retention,
    StuckAt,
    WireResistance,
)
from cimlab.models.params import FitInfo, Fitted, fitted_of

__all__ = [
    "EFFECTS",
    "BinaryCondition",
    "BinaryStates",
    "ConductanceWindow",
    "DeviceModel",
    "FitInfo",
    "Fitted",
    "ProgrammingError",
    "Provenance",
    "ReadNoise",
    "Relaxation",
    "Retention",
    "StuckAt",
    "WireResistance",
    "fitted_of",
]
