"""Unit names of imported columns -> SI, parsed with Pint (https://pint.readthedocs.io).

Conductance columns may be given in a conductance unit (``S``, ``mS``, ``uS``, ``µS``,
``nS``...) or a resistance unit (``ohm``, ``Ω``, ``kohm``, ``kΩ``, ``Mohm``...): a resistance
``R`` becomes the conductance ``1 / R``. Time columns take any time unit (``s``, ``ms``,
``us``, ``min``, ``h``, ``d``...). Temperatures: ``K``, ``C`` / ``°C`` / ``degC`` (Pint's
``C`` is the coulomb, so the temperature names are mapped first), ``F`` / ``degF``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from cimlab.errors import ConfigError

#: Temperature unit spellings -> Pint unit names (offset units).
TEMPERATURE_ALIASES: dict[str, str] = {
    "K": "kelvin", "kelvin": "kelvin", "C": "degC", "°C": "degC", "degC": "degC",
    "celsius": "degC", "F": "degF", "°F": "degF", "degF": "degF",
}
CONDUCTANCE_HINT = (
    "a conductance unit (S, mS, uS, µS, nS) or a resistance unit (ohm, kohm, kΩ, Mohm)")
TIME_HINT = "a time unit (s, ms, us, min, h, d)"
TEMPERATURE_HINT = "a temperature unit (K, C, degC, F)"


@lru_cache(maxsize=1)
def _registry() -> Any:
    import pint

    return pint.UnitRegistry()


def _quantity(unit: str, source: Any, field: str, hint: str) -> Any:
    import pint

    if not isinstance(unit, str) or not unit.strip():
        raise ConfigError(source, field, hint, unit)
    try:
        return _registry().Quantity(1.0, unit.strip())
    except (pint.errors.PintError, AttributeError, TypeError, ValueError, SyntaxError,
            AssertionError):
        raise ConfigError(source, field, hint, unit) from None


@dataclass(frozen=True)
class ConductanceUnit:
    """How a column in ``unit`` becomes siemens: ``g = value * scale`` or ``1 / (value *
    scale)`` for a resistance unit (``resistance`` true; ``scale`` then in ohm)."""

    unit: str
    scale: float
    resistance: bool

    def to_siemens(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=float) * self.scale
        if not self.resistance:
            return v
        with np.errstate(divide="ignore"):
            return 1.0 / v


def conductance_unit(unit: str, source: Any = "import mapping",
                     field: str = "g_unit") -> ConductanceUnit:
    """Parse a conductance unit (``S``, ``mS``, ``uS``, ``µS``, ``nS``) or a resistance unit
    (``ohm``, ``Ω``, ``kohm``, ``kΩ``, ``Mohm``: a value ``R`` then means ``1 / R``) with
    Pint; a name that is neither raises ConfigError naming ``source`` and ``field``."""
    q = _quantity(unit, source, field, CONDUCTANCE_HINT)
    if q.is_compatible_with("siemens"):
        return ConductanceUnit(unit, float(q.to("siemens").magnitude), False)
    if q.is_compatible_with("ohm"):
        return ConductanceUnit(unit, float(q.to("ohm").magnitude), True)
    raise ConfigError(source, field, CONDUCTANCE_HINT, unit)


def time_scale(unit: str, source: Any = "import mapping", field: str = "time_unit") -> float:
    """Factor from ``unit`` to seconds."""
    q = _quantity(unit, source, field, TIME_HINT)
    if not q.is_compatible_with("second"):
        raise ConfigError(source, field, TIME_HINT, unit)
    return float(q.to("second").magnitude)


def check_temperature_unit(unit: str, source: Any = "import mapping",
                           field: str = "temp_unit") -> str:
    """The Pint name of a temperature unit (raises ConfigError naming ``field``)."""
    name = TEMPERATURE_ALIASES.get(unit.strip()) if isinstance(unit, str) else None
    if name is None:
        raise ConfigError(source, field, TEMPERATURE_HINT, unit)
    return name


def to_kelvin(values: np.ndarray, unit: str) -> np.ndarray:
    """Temperatures in ``unit`` -> kelvin (offset units handled by Pint)."""
    ureg = _registry()
    q = ureg.Quantity(np.asarray(values, dtype=float), check_temperature_unit(unit))
    return np.asarray(q.to("kelvin").magnitude, dtype=float)
