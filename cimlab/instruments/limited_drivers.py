"""The station's limit-checking drivers (layer 4): the drivers' API, every limited value
checked with :mod:`cimlab.instruments.limits` before a byte is sent.

* :class:`LimitedArrayController`: pulses (:func:`~cimlab.instruments.limits.check_pulse`,
  the compliance current also against the board's own readback), MVM inputs, and reads. The
  read voltage is owned by the station: every read carries it (``ARR:READ? <cells>,<v>``,
  one round trip), so a read goes out at the voltage that was checked whatever another
  connection set on the board (``ARR:VRE``).
* :class:`LimitedKeithley2450`: PyMeasure's Keithley 2450 driver with the SMU limits.
* :class:`LimitedBakeOven`: the oven setpoint limit.

:func:`driver_class` composes a lab's own driver (``driver = "package.module:Class"`` in the
station file) with these checks (the checks come first in the method order).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
from pymeasure.instruments.keithley import Keithley2450

from cimlab.errors import ConfigError, InstrumentError
from cimlab.instruments.drivers import ArrayController, BakeOven
from cimlab.instruments.limits import (
    GateCalibration,
    StationLimits,
    check_limit,
    check_pulse,
    check_set_gate,
)
from cimlab.instruments.station_config import InstrumentConfig

#: the "source limited" bit of a 2450 reading's SOURSTATus element (reference manual,
#: ":TRACe:DATA?" buffer elements)
_SOURSTAT_LIMITED = 0x08


def _max_abs(x: Any) -> float:
    a = np.asarray(x, dtype=float)
    return float(np.max(np.abs(a))) if a.size else 0.0


class _Limited:
    """Mixin: the station's limits, and the one way a value is checked against them."""

    _limits: StationLimits
    _calibration: GateCalibration | None
    _source: str

    def _attach(self, limits: StationLimits, calibration: GateCalibration | None,
                source: str) -> None:
        self._limits = limits
        self._calibration = calibration
        self._source = source

    def _check(self, what: str, value: float, key: str) -> None:
        check_limit(self._limits, key, value, what=what, station=self._source)


class LimitedArrayController(_Limited, ArrayController):
    """:class:`ArrayController` that checks the station limits before sending."""

    #: the station's read voltage [V]: every read carries it (None until set or queried)
    _read_v: float | None = None
    #: the word-line voltage [V] at which the board's own readback (``ARR:COMP:GATE?``)
    #: reaches ``limits.set_icc_max_a`` (None: not asked yet)
    v_gate_at_icc_max: float | None = None

    def pulse(self, cells: Any, polarity: str, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        check_pulse(self._limits, polarity, v_pulse, v_gate, width_s,
                    calibration=self._calibration, v_gate_at_icc_max=self.v_gate_at_icc_max,
                    station=self._source)
        return super().pulse(cells, polarity, v_pulse, v_gate, width_s)

    def select(self, cell: int, v_gate: float | None = None) -> None:
        """Route ``cell`` to the SMU; a word-line voltage ``v_gate`` [V] is checked as a SET
        word line (``set_wl_max_v``, and its compliance current against ``set_icc_max_a``
        with the calibration and the board's readback) before it is sent."""
        if v_gate is not None:
            check_set_gate(self._limits, float(v_gate), calibration=self._calibration,
                           v_gate_at_icc_max=self.v_gate_at_icc_max,
                           what="word-line voltage of the cell routed to the SMU",
                           station=self._source)
        super().select(cell, v_gate)

    def mvm(self, tile: int, v_rows: Any) -> np.ndarray:
        self._check("MVM input voltage", _max_abs(v_rows), "mvm_v_max_v")
        return super().mvm(tile, v_rows)

    def mvm_windows(self, tile: int, windows: list[tuple[int, Any]]) -> list[np.ndarray]:
        self._check("MVM input voltage", max((_max_abs(v) for _, v in windows), default=0.0),
                    "mvm_v_max_v")
        return super().mvm_windows(tile, windows)

    def read(self, cells: Any = None, **kwargs: Any) -> Any:
        """Conductance [S] of each cell at the station's read voltage (checked against
        ``limits.read_v_max_v``, then sent with the read: one round trip)."""
        if cells is not None:
            v = self.read_voltage
            self._check("read voltage", abs(v), "read_v_max_v")
            kwargs["v_read"] = v
        return super().read(cells, **kwargs)

    def adopt_board_read_voltage(self) -> float:
        """Take the board's ``ARR:VRE`` setting [V] (a query) as the station's read voltage;
        beyond ``limits.read_v_max_v`` the next read is refused. The station does this once
        when it opens."""
        self._read_v = float(ArrayController.read_voltage.fget(self))
        return self._read_v

    @property
    def board_read_voltage(self) -> float:
        """The board's own ``ARR:VRE`` setting [V] (a query), which another connection may
        have changed; the station's reads do not use it."""
        return float(ArrayController.read_voltage.fget(self))

    @property
    def read_voltage(self) -> float:
        """The station's read voltage [V], which every read carries (no query)."""
        if self._read_v is None:
            return self.adopt_board_read_voltage()
        return self._read_v

    @read_voltage.setter
    def read_voltage(self, value: float) -> None:
        self._check("read voltage", abs(float(value)), "read_v_max_v")
        ArrayController.read_voltage.fset(self, value)
        # the value as the board holds it (the driver sends 9 significant digits)
        self._read_v = float(f"{float(value):.9g}")


class LimitedKeithley2450(_Limited, Keithley2450):
    """PyMeasure's :class:`Keithley2450` with the station's SMU limits checked before sending.

    Source levels and compliances (``source_voltage``, ``source_current``,
    ``compliance_current``, ``compliance_voltage``, ``apply_*``, ``ramp_to_*``) are checked;
    everything else is PyMeasure's unmodified driver.
    """

    def _v(self, what: str, value: float) -> None:
        self._check(what, abs(float(value)), "smu_v_max_v")

    def _i(self, what: str, value: float) -> None:
        self._check(what, abs(float(value)), "smu_i_max_a")

    @property
    def source_voltage(self) -> float:
        return Keithley2450.source_voltage.fget(self)

    @source_voltage.setter
    def source_voltage(self, value: float) -> None:
        self._v("SMU source voltage", value)
        Keithley2450.source_voltage.fset(self, value)

    @property
    def source_current(self) -> float:
        return Keithley2450.source_current.fget(self)

    @source_current.setter
    def source_current(self, value: float) -> None:
        self._i("SMU source current", value)
        Keithley2450.source_current.fset(self, value)

    @property
    def compliance_current(self) -> float:
        return Keithley2450.compliance_current.fget(self)

    @compliance_current.setter
    def compliance_current(self, value: float) -> None:
        self._i("SMU current compliance", value)
        Keithley2450.compliance_current.fset(self, value)

    @property
    def compliance_voltage(self) -> float:
        return Keithley2450.compliance_voltage.fget(self)

    @compliance_voltage.setter
    def compliance_voltage(self, value: float) -> None:
        self._v("SMU voltage compliance", value)
        Keithley2450.compliance_voltage.fset(self, value)

    def apply_voltage(self, voltage_range: float | None = None,
                      compliance_current: float = 0.1) -> None:
        self._i("SMU current compliance", compliance_current)
        super().apply_voltage(voltage_range, compliance_current)

    def apply_current(self, current_range: float | None = None,
                      compliance_voltage: float = 0.1) -> None:
        self._v("SMU voltage compliance", compliance_voltage)
        super().apply_current(current_range, compliance_voltage)

    def ramp_to_voltage(self, target_voltage: float, steps: int = 30,
                        pause: float = 20e-3) -> None:
        self._v("SMU ramp target voltage", target_voltage)
        super().ramp_to_voltage(target_voltage, steps, pause)

    def ramp_to_current(self, target_current: float, steps: int = 30,
                        pause: float = 20e-3) -> None:
        self._i("SMU ramp target current", target_current)
        super().ramp_to_current(target_current, steps, pause)

    def voltage_list_sweep(self, levels: Any, compliance_current: float, *, nplc: float = 1.0,
                           delay_s: float | None = None, buffer: str = "defbuffer1",
                           fail_abort: bool = False) -> dict[str, np.ndarray]:
        """One voltage staircase ``levels`` [V] as a 2450 list sweep, read back in one transfer.

        Checks ``max|levels|`` against ``smu_v_max_v`` and ``compliance_current`` [A] against
        ``smu_i_max_a`` before anything is sent, then (2450 reference manual, "Sweep
        operation"): current measurement at ``nplc`` with autorange, voltage source with the
        current limit ``compliance_current``, ``:SOUR:LIST:VOLT`` + ``:SOUR:SWE:VOLT:LIST``
        (source delay ``delay_s``, None: auto; failAbort off by default, so a step in
        compliance is recorded and the sweep goes on; ``fail_abort``: the first reading in the
        limit ends the sweep, it is the last one in the buffer), ``:INIT``, ``*WAI`` and one
        ``:TRAC:DATA?`` of the buffer's readings with their source value, relative time and
        source status. The sweep turns the output on and off itself. Returns ``v`` (source
        readback [V]), ``i_a`` [A], ``time_s`` (since the first reading) and ``limited`` (the
        source was in its limit).
        """
        lv = np.asarray(levels, dtype=float).reshape(-1)
        if lv.size < 1 or lv.size > 100_000:
            raise ValueError(f"a list sweep needs 1 to 100000 levels, got {lv.size}")
        if not np.all(np.isfinite(lv)):
            raise ValueError("sweep levels must be finite")
        self._v("SMU sweep level", float(np.max(np.abs(lv))))
        self._i("SMU current compliance", compliance_current)
        if not (compliance_current > 0 and 0.01 <= nplc <= 10):
            raise ValueError(f"compliance_current must be > 0 A and nplc in [0.01, 10], got "
                             f"{compliance_current!r}, {nplc!r}")
        delay = -1.0 if delay_s is None else float(delay_s)
        self.write(':SENS:FUNC "CURR";:SENS:CURR:RANG:AUTO ON;'
                   f':SENS:CURR:NPLC {float(nplc):.6g};:SOUR:FUNC VOLT;'
                   f':SOUR:VOLT:ILIM {float(compliance_current):.9g}')
        self.write(":SOUR:LIST:VOLT " + ",".join(f"{x:.9g}" for x in lv))
        fa = "ON" if fail_abort else "OFF"
        self.write(f':SOUR:SWE:VOLT:LIST 1, {delay:.9g}, 1, {fa}, "{buffer}"')
        self.write(":INIT;*WAI")
        n = int(float(self.ask(f':TRAC:ACT? "{buffer}"')))
        if n < 1:
            raise InstrumentError(f"{self._source}: the SMU's sweep stored no reading")
        raw = self.ask(f':TRAC:DATA? 1, {n}, "{buffer}", SOUR, READ, REL, SOURSTAT')
        vals = np.asarray([float(x) for x in raw.strip().split(",")]).reshape(n, 4)
        self.check_errors()
        return {"v": vals[:, 0], "i_a": vals[:, 1], "time_s": vals[:, 2],
                "limited": (vals[:, 3].astype(np.int64) & _SOURSTAT_LIMITED) != 0}

    def safe_shutdown(self) -> None:
        """PyMeasure's shutdown (ramp to 0, abort, output off), without the 0.6 s ramp when the
        output is already off (then the level is simply zeroed)."""
        if bool(self.source_enabled):
            self.shutdown()
            self.check_errors()  # a query: the output is off when it answers
            return
        if self.source_mode == "current":
            self.source_current = 0.0
        else:
            self.source_voltage = 0.0
        self.stop_buffer()
        self.disable_source()
        self.check_errors()
        self.isShutdown = True


class LimitedBakeOven(_Limited, BakeOven):
    """:class:`BakeOven` with the station's temperature limit checked before sending."""

    def _driver_setpoint(self) -> Any:
        """The driver's own ``setpoint_c`` (the next definition after this class in the MRO:
        a lab's oven driver may speak another command set than :class:`BakeOven`)."""
        mro = type(self).__mro__
        for klass in mro[mro.index(LimitedBakeOven) + 1:]:
            if "setpoint_c" in vars(klass):
                return vars(klass)["setpoint_c"]
        raise AttributeError("setpoint_c")  # pragma: no cover - BakeOven defines it

    @property
    def setpoint_c(self) -> float:
        return self._driver_setpoint().fget(self)

    @setpoint_c.setter
    def setpoint_c(self, value: float) -> None:
        self._check("oven setpoint", float(value), "oven_temp_max_c")
        self._driver_setpoint().fset(self, value)

    def bake(self, temp_c: float, seconds: float, clock: Any, **kwargs: Any):
        self._check("bake temperature", float(temp_c), "oven_temp_max_c")
        return super().bake(temp_c, seconds, clock, **kwargs)


def _plugin(name: str, field: str, source: Path) -> Any:
    """The class registered as entry point ``name`` in group ``cimlab.drivers`` (a lab's
    installed package: ``[project.entry-points."cimlab.drivers"] mychamber =
    "mylab.chambers:MyChamber"``); ConfigError naming the field, with the real import error."""
    from importlib.metadata import entry_points

    from cimlab.instruments.station_config import DRIVER_ENTRY_POINTS

    found = [ep for ep in entry_points(group=DRIVER_ENTRY_POINTS) if ep.name == name]
    if not found:
        known = sorted(ep.name for ep in entry_points(group=DRIVER_ENTRY_POINTS))
        raise ConfigError(source, field, f"an installed driver plug-in (entry points "
                          f"{DRIVER_ENTRY_POINTS!r}: {', '.join(known) or 'none installed'})",
                          f"plugin:{name}")
    try:
        return found[0].load()
    except Exception as exc:
        raise ConfigError(source, field, f"a plug-in that imports (loading {found[0].value} "
                          f"failed: {type(exc).__name__}: {exc})", f"plugin:{name}") from None


def driver_class(cfg: InstrumentConfig, default: type, base: type, field: str,
                 source: Path) -> type:
    """The limit-checking driver class; with ``driver = "pkg.mod:Class"`` (a subclass of
    ``base``) a class combining the station's checks with the lab's driver. The form was
    checked when the file was loaded; an import that fails is reported with its own error."""
    if cfg.driver == "default":
        return default
    if cfg.driver.startswith("plugin:"):
        cls = _plugin(cfg.driver[len("plugin:"):], field, source)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigError(source, field, f"a plug-in class that subclasses {base.__name__}",
                              cfg.driver)
        return type(f"Limited{cls.__name__}", (default, cls), {})
    module, _, name = cfg.driver.partition(":")
    try:
        mod = importlib.import_module(module)
    except Exception as exc:  # ImportError, or an error raised by the module itself
        raise ConfigError(source, field, '"default" or an importable "package.module:Class" '
                          f"(importing {module} failed: {type(exc).__name__}: {exc})",
                          cfg.driver) from None
    cls = getattr(mod, name, None)
    if cls is None:
        raise ConfigError(source, field, f'a class that exists: module {module} has no '
                          f"attribute {name!r}", cfg.driver)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(source, field, f"a subclass of {base.__name__}", cfg.driver)
    # the station's limit checks come first in the MRO
    return type(f"Limited{cls.__name__}", (default, cls), {})


__all__ = [
    "LimitedArrayController",
    "LimitedBakeOven",
    "LimitedKeithley2450",
    "driver_class",
]
