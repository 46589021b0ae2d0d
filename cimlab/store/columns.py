"""The SI unit of a store column, read from its name (the naming rule of docs/architecture.md).

Store columns carry their unit in a suffix: ``time_s`` [s], ``g_siemens`` [S], ``temp_k`` [K],
``icc_a`` [A], ``energy_per_bit_j`` [J], ``fs_hz`` [Hz]. ``_s`` is always seconds; conductances
end in ``_siemens`` (store format 2; format-1 stores, where ``_s`` also meant siemens, are
migrated by :mod:`cimlab.store.migrate`).
Counts and indices (``cell``, ``level``, ``repeat``, ``step``) are dimensionless (``"1"``, the
UDUNITS/CF spelling); labels (string columns) have no unit.
"""

from __future__ import annotations

#: Suffix -> unit (UDUNITS spelling, readable by CF tools and Pint).
_SUFFIX_UNITS = {
    "_siemens": "S", "_s": "s", "_j": "J", "_k": "K", "_a": "A", "_v": "V", "_hz": "Hz",
    "_ohm": "ohm", "_c": "degC", "_unix": "s",
}
#: Column names that are a voltage without a suffix.
_VOLTS = frozenset({"v", "v_gate", "v_read", "v_set", "v_reset", "v_pulse"})


def column_unit(name: str) -> str:
    """SI unit of a numeric store column from its name: ``"S"``, ``"s"``, ``"K"``, ``"A"``,
    ``"V"``, ``"J"``, ``"Hz"``, ``"ohm"``, ``"degC"``, or ``"1"`` (a count, index or ratio).

    >>> column_unit("g0_siemens"), column_unit("bake_time_s"), column_unit("temp_k")
    ('S', 's', 'K')
    """
    if name in _VOLTS:
        return "V"
    for suffix, unit in _SUFFIX_UNITS.items():
        if name.endswith(suffix):
            return unit
    return "1"


def column_quantity(name: str) -> str:
    """A short English name of what the column measures (CF ``long_name``), e.g. "conductance"
    for ``g_siemens``; for a dimensionless column, the column name itself."""
    unit = column_unit(name)
    return {"S": "conductance", "s": "time", "K": "temperature", "A": "current", "V": "voltage",
            "J": "energy", "Hz": "frequency", "ohm": "resistance", "degC": "temperature"}.get(
        unit, name)
