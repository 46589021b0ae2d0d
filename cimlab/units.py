"""Unit constants shared by every layer (layer 0, no imports).

Temperatures are kelvin inside cimlab; files, the CLI and printed tables may use degrees
Celsius in fields named ``*_c``. Convert with :data:`KELVIN_OFFSET` only.
"""

from __future__ import annotations

#: 0 degC in kelvin [K]: ``T[K] = T[degC] + KELVIN_OFFSET``, exact by the definition of the
#: Celsius scale (BIPM, The International System of Units, 9th ed., 2019, section 2.3.1).
KELVIN_OFFSET = 273.15


def c_to_k(temp_c: float) -> float:
    """Degrees Celsius to kelvin [K]."""
    return temp_c + KELVIN_OFFSET


def k_to_c(temp_k: float) -> float:
    """Kelvin to degrees Celsius [degC]."""
    return temp_k - KELVIN_OFFSET
