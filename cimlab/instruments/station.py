"""``Station``: a bench opened from a TOML station file (layer 4).

A station file says which instrument is at which VISA address, the safety limits per terminal,
the access-transistor calibration and the clock; ``instruments/emulated.toml`` is the default
(emulator started in this process), ``instruments/example-real-bench.toml`` a commented real
bench. ::

    with Station.open("instruments/emulated.toml") as st:
        st.array.pulse_set(cells, v_bl=1.2, v_wl=st.gate_voltage_for(55e-6), width_s=1e-6)
        g = st.array.read(cells)
        st.clock.sleep(3600)
        snap = st.snapshot()

Safety: the station's instruments are limit-checking subclasses of the drivers (same API): a
value beyond a limit raises :class:`~cimlab.errors.LimitError` *before* any byte is sent; values
are never clamped. Outputs go off (SMU ramped to 0 V, array in standby, oven heater off) when
the ``with`` block ends, on an exception, on Ctrl-C and on SIGTERM (the handler installed
while the station is open raises ``SystemExit`` so the block unwinds).
"""

from __future__ import annotations

import datetime as _dt
import importlib
import logging
import platform
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pymeasure.instruments.keithley import Keithley2450

from cimlab import __version__
from cimlab.errors import ConfigError, InstrumentError, LimitError
from cimlab.instruments.drivers import (
    ArrayController,
    BakeOven,
    RealClock,
    VirtualClock,
    open_keithley2450,
    open_kwargs,
)
from cimlab.instruments.drivers.visa import tune_connection
from cimlab.params import check, from_dict, load_toml, param, to_dict

log = logging.getLogger(__name__)

#: Keithley 2450 source/compliance ranges (reference manual): a station limit beyond them is a
#: configuration error
SMU_MAX_V = 210.0
SMU_MAX_I = 1.05

EMULATOR_ADDRESS = "emulator"

# ---------------------------------------------------------------------------------------------
# the station file


@dataclass(frozen=True)
class StationInfo:
    """``[station]``: what the bench is called and which clock it runs on."""

    name: str = param(doc="bench name, recorded with every run")
    clock: str = param(
        "virtual", choices=("virtual", "real"),
        doc="virtual: the emulator's clock instrument; real: time.monotonic/time.sleep",
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class EmulatorPorts:
    """Fixed TCP ports used by ``cimlab emulator serve`` (and by ``address = "emulator"`` when
    the emulator is not started in-process)."""

    array: int = param(5025, unit="1", lo=1, hi=65535)
    smu: int = param(5026, unit="1", lo=1, hi=65535)
    oven: int = param(5027, unit="1", lo=1, hi=65535)
    clock: int = param(5028, unit="1", lo=1, hi=65535)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class EmulatorConfig:
    """``[emulator]``: the emulated bench."""

    start: bool = param(False, doc="start the emulated instruments in this process")
    profile: str = param("default", doc="chip profile: bundled name or TOML path")
    seed: int = param(0, unit="1", lo=0, doc="seed of the emulated chip")
    host: str = param("127.0.0.1", doc="address the emulator listens on / is reached at")
    ports: EmulatorPorts = param(default_factory=EmulatorPorts)
    state: str = param(
        "",
        doc="emulated-world state file (.npz, EmulatedBench.save_state; only with start = "
        "true): restored when the station opens if it exists, written when it closes, so "
        "the chip persists between processes. Relative to the station file's folder. "
        '"": a fresh chip every time',
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class InstrumentConfig:
    """``[instruments.<name>]``: where an instrument is and how to open it."""

    address: str = param(
        doc='VISA resource name, e.g. "TCPIP0::192.168.1.20::5025::SOCKET", or "emulator"'
    )
    backend: str = param("@py", doc='PyVISA backend: "@py" (pyvisa-py) or "@ivi" (vendor VISA)')
    timeout_s: float = param(10.0, unit="s", lo=0.01, hi=600.0, doc="I/O timeout")
    driver: str = param(
        "default",
        doc='"default" (cimlab\'s driver) or "package.module:Class", a subclass of it',
    )

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class InstrumentsConfig:
    """``[instruments]``: the array controller is required; the others are optional."""

    array: InstrumentConfig = param()
    smu: InstrumentConfig | None = param(None)
    oven: InstrumentConfig | None = param(None)
    clock: InstrumentConfig | None = param(None)


@dataclass(frozen=True)
class StationLimits:
    """``[limits]``: safety limits, each checked before anything is sent (never clamped).

    Every key is required: a bench's limits are written down, not assumed. The array limits
    may not exceed the board's own range (``ARR:RANG?``, checked when the station opens), the
    SMU limits not the Keithley 2450's (210 V, 1.05 A), the oven limit not the chamber's.
    """

    set_bl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                doc="largest bit-line pulse amplitude in SET")
    set_wl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                doc="largest word-line (gate) voltage in SET")
    reset_sl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                  doc="largest source-line pulse amplitude in RESET")
    reset_wl_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=20.0,
                                  doc="largest word-line (gate) voltage in RESET")
    set_icc_max_a: float = param(unit="A", lo=0.0, lo_open=True, hi=0.1,
                                 doc="largest SET compliance current (via the gate voltage)")
    pulse_width_max_s: float = param(unit="s", lo=0.0, lo_open=True, hi=1.0,
                                     doc="longest pulse")
    read_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=5.0,
                                doc="largest read voltage")
    mvm_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=5.0,
                               doc="largest |input voltage| of a tile MVM")
    smu_v_max_v: float = param(unit="V", lo=0.0, lo_open=True, hi=SMU_MAX_V,
                               doc="largest |SMU source voltage| and voltage compliance")
    smu_i_max_a: float = param(unit="A", lo=0.0, lo_open=True, hi=SMU_MAX_I,
                               doc="largest |SMU source current| and current compliance")
    oven_temp_max_c: float = param(unit="degC", lo=-100.0, hi=500.0,
                                   doc="highest oven setpoint")

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class TransistorCalibration:
    """``[calibration.transistor]``: the 1T1R access transistor's compliance current versus
    word-line voltage, in saturation (long-channel square law, Shichman-Hodges):
    ``I_cc = k/2 (V_wl - V_th)^2`` for ``V_wl > V_th``. Measure it on the bench (SMU on one
    transistor) or take it from the chip's datasheet."""

    k_a_per_v2: float = param(unit="A/V^2", lo=0.0, lo_open=True,
                              doc="transconductance parameter mu*Cox*W/L")
    v_th_v: float = param(unit="V", lo=0.0, hi=5.0, doc="threshold voltage")
    model: str = param("square_law", choices=("square_law",), doc="calibration model")

    def __post_init__(self) -> None:
        check(self)

    def icc(self, v_gate: Any) -> Any:
        """SET compliance current [A] at word-line voltage ``v_gate`` [V]."""
        ov = np.maximum(np.asarray(v_gate, dtype=float) - self.v_th_v, 0.0)
        out = 0.5 * self.k_a_per_v2 * ov * ov
        return float(out) if np.ndim(out) == 0 else out

    def v_gate_for(self, icc_a: float) -> float:
        """Word-line voltage [V] giving compliance current ``icc_a`` [A]."""
        return float(self.v_th_v + np.sqrt(2.0 * float(icc_a) / self.k_a_per_v2))


@dataclass(frozen=True)
class Calibration:
    """``[calibration]``."""

    transistor: TransistorCalibration = param()


@dataclass(frozen=True)
class StationConfig:
    """A whole station file."""

    station: StationInfo = param()
    instruments: InstrumentsConfig = param()
    limits: StationLimits = param()
    calibration: Calibration = param()
    emulator: EmulatorConfig = param(default_factory=EmulatorConfig)

    def __post_init__(self) -> None:
        if self.station.clock == "virtual" and self.instruments.clock is None:
            raise ConfigError(None, "instruments.clock",
                              'a clock instrument when station.clock = "virtual"')


def load_station_config(path: str | Path) -> tuple[StationConfig, str]:
    """Parse and validate a station file strictly; returns the config and the file's text."""
    p = Path(path)
    data = load_toml(p)
    cfg = from_dict(StationConfig, data, source=p)
    uses_emulator = any(
        inst is not None and inst.address == EMULATOR_ADDRESS
        for inst in (cfg.instruments.array, cfg.instruments.smu, cfg.instruments.oven,
                     cfg.instruments.clock)
    )
    if cfg.emulator.start and not uses_emulator:
        raise ConfigError(p, "emulator.start",
                          'false, or at least one instrument with address = "emulator"', True)
    if cfg.emulator.state and not cfg.emulator.start:
        raise ConfigError(p, "emulator.state",
                          '"" unless emulator.start = true (the state file belongs to an '
                          "emulator started by the station; a served emulator keeps its chip)",
                          cfg.emulator.state)
    return cfg, p.read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# limit-checking drivers (same API as the drivers; checks before anything is sent)


def _max_abs(x: Any) -> float:
    a = np.asarray(x, dtype=float)
    return float(np.max(np.abs(a))) if a.size else 0.0


class _Limited:
    """Mixin: the station's limits, and how a violation is reported."""

    _limits: StationLimits
    _calibration: TransistorCalibration
    _source: str

    def _attach(self, limits: StationLimits, calibration: TransistorCalibration | None,
                source: str) -> None:
        self._limits = limits
        self._calibration = calibration  # type: ignore[assignment]
        self._source = source

    def _exceeds(self, what: str, value: float, key: str, unit: str) -> LimitError:
        limit = getattr(self._limits, key)
        return LimitError(
            f"{what} = {value:g} {unit} exceeds the station limit limits.{key} = {limit:g} {unit} "
            f"({self._source}); nothing was sent. Lower the value or, if the device allows it, "
            f"raise the limit in the station file."
        )

    def _check(self, what: str, value: float, key: str, unit: str) -> None:
        if not np.isfinite(value) or value > getattr(self._limits, key):
            raise self._exceeds(what, value, key, unit)


class LimitedArrayController(_Limited, ArrayController):
    """:class:`ArrayController` that checks the station limits before sending."""

    def pulse(self, cells: Any, polarity: str, v_pulse: Any, v_gate: Any,
              width_s: float) -> np.ndarray:
        self._check("pulse width", float(width_s), "pulse_width_max_s", "s")
        vp, vg = _max_abs(v_pulse), _max_abs(v_gate)
        if polarity == "set":
            self._check("SET bit-line amplitude", vp, "set_bl_max_v", "V")
            self._check("SET word-line voltage", vg, "set_wl_max_v", "V")
            icc = self._calibration.icc(vg)
            self._check(f"SET compliance current (word line {vg:g} V)", icc, "set_icc_max_a", "A")
        elif polarity == "reset":
            self._check("RESET source-line amplitude", vp, "reset_sl_max_v", "V")
            self._check("RESET word-line voltage", vg, "reset_wl_max_v", "V")
        return super().pulse(cells, polarity, v_pulse, v_gate, width_s)

    def mvm(self, tile: int, v_rows: Any) -> np.ndarray:
        self._check("MVM input voltage", _max_abs(v_rows), "mvm_v_max_v", "V")
        return super().mvm(tile, v_rows)

    #: the board's read voltage as last set or queried through this driver [V]
    _read_v: float | None = None

    def read(self, cells: Any = None, **kwargs: Any) -> Any:
        if cells is not None:
            if self._read_v is None:
                self._read_v = float(ArrayController.read_voltage.fget(self))
            self._check("read voltage", abs(self._read_v), "read_v_max_v", "V")
        return super().read(cells, **kwargs)

    @property
    def read_voltage(self) -> float:
        self._read_v = float(ArrayController.read_voltage.fget(self))
        return self._read_v

    @read_voltage.setter
    def read_voltage(self, value: float) -> None:
        self._check("read voltage", abs(float(value)), "read_v_max_v", "V")
        ArrayController.read_voltage.fset(self, value)
        self._read_v = float(value)


class LimitedKeithley2450(_Limited, Keithley2450):
    """PyMeasure's :class:`Keithley2450` with the station's SMU limits checked before sending.

    Source levels and compliances (``source_voltage``, ``source_current``,
    ``compliance_current``, ``compliance_voltage``, ``apply_*``, ``ramp_to_*``) are checked;
    everything else is PyMeasure's unmodified driver.
    """

    def _v(self, what: str, value: float) -> None:
        self._check(what, abs(float(value)), "smu_v_max_v", "V")

    def _i(self, what: str, value: float) -> None:
        self._check(what, abs(float(value)), "smu_i_max_a", "A")

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

    @property
    def setpoint_c(self) -> float:
        return BakeOven.setpoint_c.fget(self)

    @setpoint_c.setter
    def setpoint_c(self, value: float) -> None:
        self._check("oven setpoint", float(value), "oven_temp_max_c", "degC")
        BakeOven.setpoint_c.fset(self, value)

    def bake(self, temp_c: float, seconds: float, clock: Any, **kwargs: Any):
        self._check("bake temperature", float(temp_c), "oven_temp_max_c", "degC")
        return super().bake(temp_c, seconds, clock, **kwargs)


def _driver_class(cfg: InstrumentConfig, default: type, base: type, field: str,
                  source: Path) -> type:
    """The limit-checking driver class; with ``driver = "pkg.mod:Class"`` (a subclass of
    ``base``) a class combining the station's checks with the lab's driver."""
    if cfg.driver == "default":
        return default
    module, _, name = cfg.driver.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(source, field, '"default" or an importable "package.module:Class"',
                          cfg.driver) from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(source, field, f"a subclass of {base.__name__}", cfg.driver)
    # the station's limit checks come first in the MRO
    return type(f"Limited{cls.__name__}", (default, cls), {})


# ---------------------------------------------------------------------------------------------
# the station


class Station:
    """An open bench: ``array``, ``smu``, ``oven`` (None if absent), ``clock``, ``limits``.

    Use :meth:`open`; close with :meth:`close` or a ``with`` block.
    """

    def __init__(self, config: StationConfig, path: Path, text: str):
        self.config = config
        self.path = path
        self.text = text
        self.limits = config.limits
        self.calibration = config.calibration
        self.bench: Any = None
        self.array: LimitedArrayController = None  # type: ignore[assignment]
        self.smu: LimitedKeithley2450 | None = None
        self.oven: LimitedBakeOven | None = None
        self.clock: VirtualClock | RealClock = None  # type: ignore[assignment]
        self.addresses: dict[str, str] = {}
        self.idn: dict[str, str] = {}
        self._closed = False
        self._previous_sigterm: Any = None
        self._open_kwargs: dict[str, dict[str, Any]] = {}
        #: where the in-process emulator's world is restored from / saved to (or None)
        self.emulator_state_path: Path | None = None
        #: provenance of the emulated world (state file, restored?, profile, seed), or None
        self.emulator_state: dict[str, Any] | None = None

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path = "instruments/emulated.toml", *,
             emulator_state: str | Path | None = None) -> Station:
        """Open every instrument of the station file ``path`` (strictly validated).

        ``emulator_state``: a state file for the in-process emulator (``[emulator] start =
        true``), overriding the file's ``[emulator] state``: if it exists the emulated world
        (chip, virtual clock, oven, routing, instrument settings) is restored from it, and it
        is written when the station closes (also after an error: the chip is what it is).
        A state made with another profile or seed than the station file names is refused
        (ConfigError); delete the state file to start from a fresh chip.
        """
        p = Path(path)
        config, text = load_station_config(p)
        st = cls(config, p, text)
        if emulator_state is not None or config.emulator.state:
            if not config.emulator.start:
                raise ConfigError(p, "emulator.start", "true when an emulator state file is "
                                  f"given ({emulator_state})", False)
            sp = Path(emulator_state if emulator_state is not None else config.emulator.state)
            st.emulator_state_path = sp if emulator_state is not None or sp.is_absolute() \
                else p.parent / sp
        try:
            st._open()
        except BaseException:
            st.close(_quiet=True, _abnormal=True)
            raise
        return st

    def _address(self, name: str, inst: InstrumentConfig) -> str:
        if inst.address != EMULATOR_ADDRESS:
            return inst.address
        if self.bench is not None:
            return self.bench.addresses[name]
        emu = self.config.emulator
        return f"TCPIP0::{emu.host}::{getattr(emu.ports, name)}::SOCKET"

    def _open(self) -> None:
        cfg = self.config
        src = str(self.path)
        if cfg.emulator.start:
            from cimlab.instruments.emulator import EmulatedBench  # only for emulated benches

            emu = cfg.emulator
            sp = self.emulator_state_path
            restored = sp is not None and sp.exists()
            if restored:
                bench = EmulatedBench.from_state(sp, host=emu.host)
                if (bench.profile_label, bench.seed) != (emu.profile, emu.seed):
                    raise ConfigError(
                        sp, "bench",
                        f"the emulated chip of {self.path} (profile {emu.profile!r}, seed "
                        f"{emu.seed}); this state holds profile {bench.profile_label!r}, "
                        f"seed {bench.seed!r}. Delete the state file to start from a fresh "
                        "chip, or use the station file it was made with")
            else:
                bench = EmulatedBench(emu.profile, emu.seed, host=emu.host)
            self.bench = bench.start()
            self.emulator_state = {
                "state_file": None if sp is None else str(sp), "restored": restored,
                "profile": emu.profile, "seed": emu.seed, "station_file": str(self.path),
                "virtual_time_s": float(bench.world.now_s)}
        self._install_sigterm()
        ins = cfg.instruments
        # array controller
        a = ins.array
        self.addresses["array"] = self._address("array", a)
        acls = _driver_class(a, LimitedArrayController, ArrayController,
                             "instruments.array.driver", self.path)
        self._open_kwargs["array"] = open_kwargs(a.backend, a.timeout_s)
        self.array = acls(self.addresses["array"], **self._open_kwargs["array"])
        self.array._attach(cfg.limits, cfg.calibration.transistor, src)
        self.idn["array"] = self._identify(self.array, "array")
        self._check_array_ranges()
        _ = self.array.read_voltage  # cached: reads are checked against it without a query
        # SMU
        if ins.smu is not None:
            s = ins.smu
            self.addresses["smu"] = self._address("smu", s)
            scls = _driver_class(s, LimitedKeithley2450, Keithley2450,
                                 "instruments.smu.driver", self.path)
            self._open_kwargs["smu"] = open_kwargs(s.backend, s.timeout_s)
            self.smu = open_keithley2450(self.addresses["smu"], s.backend, s.timeout_s, cls=scls)
            self.smu._attach(cfg.limits, None, src)
            self.idn["smu"] = self._identify(self.smu, "smu")
        # oven
        if ins.oven is not None:
            o = ins.oven
            self.addresses["oven"] = self._address("oven", o)
            ocls = _driver_class(o, LimitedBakeOven, BakeOven,
                                 "instruments.oven.driver", self.path)
            self._open_kwargs["oven"] = open_kwargs(o.backend, o.timeout_s)
            self.oven = ocls(self.addresses["oven"], **self._open_kwargs["oven"])
            tune_connection(self.oven)
            self.oven._attach(cfg.limits, None, src)
            self.idn["oven"] = self._identify(self.oven, "oven")
            _lo, hi = self.oven.setpoint_range_c
            if cfg.limits.oven_temp_max_c > hi:
                raise ConfigError(self.path, "limits.oven_temp_max_c",
                                  f"at most {hi:g} degC (the oven's range, SOUR:TEMP:RANG?)",
                                  cfg.limits.oven_temp_max_c)
        # clock
        if cfg.station.clock == "virtual":
            c = ins.clock
            assert c is not None  # StationConfig checks it
            self.addresses["clock"] = self._address("clock", c)
            self._open_kwargs["clock"] = open_kwargs(c.backend, c.timeout_s)
            self.clock = VirtualClock(self.addresses["clock"], **self._open_kwargs["clock"])
            tune_connection(self.clock)
            self.idn["clock"] = self._identify(self.clock, "clock")
        else:
            self.clock = RealClock()
            self.idn["clock"] = RealClock.id
        # ready: array drivers on, SMU terminals disconnected
        self.array.deselect()
        self.array.enable()

    def _identify(self, inst: Any, name: str) -> str:
        try:
            return str(inst.id)
        except Exception as exc:
            raise InstrumentError(
                f"{self.path}: instruments.{name} at {self.addresses[name]} did not answer "
                f"*IDN? ({exc}); check the address, that the instrument is on, and (emulator) "
                "that 'cimlab emulator serve' runs or emulator.start = true"
            ) from exc

    def _check_array_ranges(self) -> None:
        r = self.array.ranges
        lim = self.limits
        pairs = (
            ("set_bl_max_v", r.v_terminal_max_v, "V"), ("reset_sl_max_v", r.v_terminal_max_v, "V"),
            ("set_wl_max_v", r.v_gate_max_v, "V"), ("reset_wl_max_v", r.v_gate_max_v, "V"),
            ("pulse_width_max_s", r.width_max_s, "s"), ("read_v_max_v", r.v_read_max_v, "V"),
            ("mvm_v_max_v", r.v_mvm_max_v, "V"),
        )
        for key, hi, unit in pairs:
            value = getattr(lim, key)
            if value > hi:
                raise ConfigError(self.path, f"limits.{key}",
                                  f"at most {hi:g} {unit} (the array controller's range, "
                                  "ARR:RANG?)", value)

    # -- SIGTERM -----------------------------------------------------------------------------
    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def _unwind(signum: int, frame: Any) -> None:
            raise SystemExit(128 + signum)

        try:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _unwind)
        except (ValueError, OSError):  # not settable here
            self._previous_sigterm = None

    def _restore_sigterm(self) -> None:
        if self._previous_sigterm is not None:
            try:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
            except (ValueError, OSError):
                pass
            self._previous_sigterm = None

    # -- use ---------------------------------------------------------------------------------
    def gate_voltage_for(self, icc_a: float) -> float:
        """Word-line voltage [V] giving SET compliance current ``icc_a`` [A] (calibration).

        Raises LimitError if ``icc_a`` exceeds ``limits.set_icc_max_a`` or the voltage it needs
        exceeds ``limits.set_wl_max_v``.
        """
        icc = float(icc_a)
        if not icc > 0:
            raise ValueError(f"compliance current must be > 0 A, got {icc_a!r}")
        lim = self.limits
        if icc > lim.set_icc_max_a:
            raise LimitError(f"SET compliance current {icc:g} A exceeds limits.set_icc_max_a = "
                             f"{lim.set_icc_max_a:g} A ({self.path})")
        v = self.calibration.transistor.v_gate_for(icc)
        if v > lim.set_wl_max_v:
            raise LimitError(f"SET compliance current {icc:g} A needs a word-line voltage of "
                             f"{v:g} V > limits.set_wl_max_v = {lim.set_wl_max_v:g} V "
                             f"({self.path})")
        return v

    def instrument_time(self) -> dict[str, float] | None:
        """Instrument time [s] charged so far per instrument (virtual clock), else None."""
        if isinstance(self.clock, VirtualClock):
            return {name: self.clock.busy(name) for name in ("array", "smu", "oven")}
        return None

    def snapshot(self) -> dict[str, Any]:
        """Provenance of a run: IDNs, settings, limits, versions and the station file text."""
        from importlib import metadata

        def version(pkg: str) -> str:
            try:
                return metadata.version(pkg)
            except metadata.PackageNotFoundError:
                return "not installed"

        settings: dict[str, Any] = {
            "array": {
                "geometry": list(self.array.geometry),
                "read_voltage_v": self.array.read_voltage,
                "output_enabled": self.array.output_enabled,
                "routed_cell": self.array.routed_cell,
                "ranges": self.array.ranges._asdict(),
            }
        }
        if self.smu is not None:
            settings["smu"] = {
                "source_mode": self.smu.source_mode,
                "source_voltage_v": self.smu.source_voltage,
                "compliance_current_a": self.smu.compliance_current,
                "source_enabled": bool(self.smu.source_enabled),
            }
        if self.oven is not None:
            settings["oven"] = {
                "setpoint_c": self.oven.setpoint_c,
                "temperature_c": self.oven.temperature_c,
                "ramp_rate_k_per_s": self.oven.ramp_rate_k_per_s,
                "heater_enabled": self.oven.heater_enabled,
            }
        return {
            "station": self.config.station.name,
            "station_file": str(self.path),
            "station_file_text": self.text,
            "clock": {"kind": self.config.station.clock, "now_s": self.clock.now()},
            "host_time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "addresses": dict(self.addresses),
            "idn": dict(self.idn),
            "settings": settings,
            "instrument_time_s": self.instrument_time(),
            "limits": to_dict(self.limits),
            "calibration": to_dict(self.calibration),
            "emulator": (to_dict(self.config.emulator) if self.bench is not None else None),
            "emulator_state": self.emulator_state,
            "versions": {
                "cimlab": __version__,
                "python": platform.python_version(),
                **{pkg: version(pkg) for pkg in ("numpy", "pyvisa", "pyvisa-py", "pymeasure")},
            },
        }

    # -- closing -----------------------------------------------------------------------------
    def _reconnect(self) -> None:
        """Fresh VISA sessions for every instrument.

        After an exception (Ctrl-C or SIGTERM may strike between a query and its answer, or in
        the middle of a block) a session may hold a stale response or a half-sent message; the
        shutdown commands must not read the one nor complete the other. Closing the session
        discards both; the instrument sees a new connection.
        """
        from pymeasure.adapters import VISAAdapter

        for name in ("smu", "array", "oven", "clock"):
            inst = getattr(self, name)
            adapter = getattr(inst, "adapter", None)
            if adapter is None or name not in self._open_kwargs:
                continue
            try:
                adapter.close()
            except Exception as exc:
                log.debug("closing %s: %r", name, exc)
            try:
                inst.adapter = VISAAdapter(self.addresses[name], **self._open_kwargs[name])
                tune_connection(inst)
            except Exception as exc:
                log.error("station %s: cannot reconnect to %s: %r", self.path, name, exc)

    def close(self, _quiet: bool = False, _abnormal: bool = False) -> None:
        """Outputs off (SMU ramped to zero and off, array standby, oven heater off), close the
        connections, stop an in-process emulator. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if _abnormal:
            self._reconnect()
        errors: list[str] = []
        steps = (
            ("smu", lambda: self.smu.safe_shutdown() if self.smu is not None else None),
            ("array", lambda: self.array.shutdown() if self.array is not None else None),
            ("oven", lambda: self.oven.shutdown() if self.oven is not None else None),
            ("clock", lambda: self.clock.shutdown() if self.clock is not None else None),
        )
        for name, step in steps:
            try:
                step()
            except BaseException as exc:  # keep switching the others off
                log.error("station %s: shutdown of %s failed: %r", self.path, name, exc)
                errors.append(f"{name}: {exc!r}")
        for inst in (self.smu, self.array, self.oven, self.clock):
            adapter = getattr(inst, "adapter", None)
            if adapter is not None:
                try:
                    adapter.close()
                except Exception as exc:
                    log.debug("closing %r: %r", inst, exc)
        if self.bench is not None:
            self.bench.stop()
        saved = self._save_emulator_state()
        self._restore_sigterm()
        if errors and not _quiet:
            raise InstrumentError(f"{self.path}: shutdown incomplete: " + "; ".join(errors))
        if saved is not None and not _quiet:
            raise saved

    def _save_emulator_state(self) -> BaseException | None:
        """Write the in-process emulator's world to ``emulator_state_path`` (after the
        outputs went off and the servers stopped). Returns the error, if any (logged)."""
        if self.bench is None or self.emulator_state_path is None:
            return None
        try:
            self.bench.save_state(self.emulator_state_path)
        except BaseException as exc:  # the station still closes
            log.error("station %s: cannot save the emulator state to %s: %r", self.path,
                      self.emulator_state_path, exc)
            return exc
        return None

    def __enter__(self) -> Station:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(_quiet=exc_type is not None, _abnormal=exc_type is not None)

    def __repr__(self) -> str:
        return f"<Station {self.config.station.name!r} from {self.path}>"


__all__ = [
    "Calibration",
    "EmulatorConfig",
    "InstrumentConfig",
    "LimitedArrayController",
    "LimitedBakeOven",
    "LimitedKeithley2450",
    "Station",
    "StationConfig",
    "StationLimits",
    "TransistorCalibration",
    "load_station_config",
]
