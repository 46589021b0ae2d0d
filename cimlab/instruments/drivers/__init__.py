"""PyVISA drivers (layer 3): PyMeasure ``Instrument`` subclasses with declarative properties,
strict validators (never clamping) and ``shutdown()`` to a safe state. The SMU is PyMeasure's
own :class:`~pymeasure.instruments.keithley.Keithley2450`, opened with :func:`open_keithley2450`.

The drivers never import :mod:`cimlab.physics` or the emulator: every byte goes through VISA.
"""

from __future__ import annotations

from typing import Any

from cimlab.instruments.drivers.array_controller import ArrayController, ArrayRanges
from cimlab.instruments.drivers.clock import RealClock, VirtualClock
from cimlab.instruments.drivers.oven import BakeOven, BakeRecord
from cimlab.instruments.drivers.visa import (
    DEFAULT_BACKEND,
    open_kwargs,
    raise_errors,
    read_errors,
    tune_connection,
)


def open_keithley2450(address: str, backend: str = DEFAULT_BACKEND, timeout_s: float = 10.0,
                      cls: Any = None, **kwargs: Any):
    """PyMeasure's Keithley2450 (unmodified, or ``cls``, a subclass) at ``address``."""
    from pymeasure.instruments.keithley import Keithley2450

    smu = (cls or Keithley2450)(address, **open_kwargs(backend, timeout_s), **kwargs)
    tune_connection(smu)
    return smu


__all__ = [
    "ArrayController",
    "ArrayRanges",
    "BakeOven",
    "BakeRecord",
    "RealClock",
    "VirtualClock",
    "open_keithley2450",
    "open_kwargs",
    "raise_errors",
    "read_errors",
]
