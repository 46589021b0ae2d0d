"""The bench: emulated instruments (layer 2), PyVISA drivers (layer 3) and the Station (layer 4).

``from cimlab.instruments import Station`` is resolved lazily, so importing the emulator alone
does not import PyMeasure. The station layer: ``station_config`` (station files, strict
loading), ``limits`` (the one limits vocabulary and check; no driver imported, so pre-checks
use it without a bench), ``limited_drivers`` (the limit-checking drivers) and ``station``
(:class:`Station`, re-exporting the others' names).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Station"]


def __getattr__(name: str) -> Any:
    if name == "Station":
        from cimlab.instruments.station import Station

        return Station
    raise AttributeError(f"module 'cimlab.instruments' has no attribute {name!r}")
