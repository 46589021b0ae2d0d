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

Safety: the station's instruments are limit-checking subclasses of the drivers (same API,
:mod:`cimlab.instruments.limited_drivers`): a value beyond a limit raises
:class:`~cimlab.errors.LimitError` *before* any byte is sent; values are never clamped. The
limit names and the one check live in :mod:`cimlab.instruments.limits`; the station file's
dataclasses and strict loading in :mod:`cimlab.instruments.station_config` (both re-exported
here). When it opens, the station checks its limits against the array board's ranges
(``ARR:RANG?``) and its transistor calibration against the board's own compliance readback
(``ARR:COMP:GATE?``). Outputs go off (SMU ramped to 0 V, array in standby, oven heater off)
when the ``with`` block ends, on an exception, on Ctrl-C and on SIGTERM (the handler
installed while the station is open raises ``SystemExit`` so the block unwinds).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
from pathlib import Path
from typing import Any

from pymeasure.instruments.keithley import Keithley2450

from cimlab.errors import ConfigError, InstrumentError
from cimlab.instruments.drivers import (
    ArrayController,
    BakeOven,
    RealClock,
    VirtualClock,
    open_kwargs,
)
from cimlab.instruments.drivers.visa import log_traffic, tune_connection
from cimlab.instruments.limited_drivers import (
    LimitedArrayController,
    LimitedBakeOven,
    LimitedKeithley2450,
    driver_class,
)
from cimlab.instruments.limits import (
    LIMIT_NAMES,
    SMU_MAX_I,
    SMU_MAX_V,
    StationLimits,
    check_limit,
    check_pulse,
    check_requests,
    check_set_gate,
    limit_value,
)
from cimlab.instruments.session import EmulatorCheckpoints
from cimlab.instruments.station_config import (
    EMULATOR_ADDRESS,
    Calibration,
    EmulatorConfig,
    EmulatorPorts,
    InstrumentConfig,
    InstrumentsConfig,
    StationConfig,
    StationInfo,
    TransistorCalibration,
    emulated_instrument,
    load_station_config,
    resolve_station,
)
from cimlab.params import unit_of

log = logging.getLogger(__name__)

#: largest relative disagreement in compliance current between the station file's transistor
#: calibration and the array board's own readback (ARR:COMP:GATE?) accepted when a station
#: opens; beyond it the file is refused (measure the transistor again)
CALIBRATION_TOLERANCE = 0.05


def _open_kwargs_of(inst: InstrumentConfig) -> dict[str, Any]:
    """PyVISA keyword arguments of a station instrument: backend, terminations and timeout,
    then the file's ``options`` (which win)."""
    return {**open_kwargs(inst.backend, inst.timeout_s), **inst.options}


class _NoChecks:
    """No station checks of their own (the discrete bench's matrix and generator are checked
    by :class:`~cimlab.instruments.discrete_array.DiscreteArray` before they are driven)."""


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
        #: discrete topology: the switch matrix and pulse generator drivers (else None)
        self.switch: Any = None
        self.pulse_gen: Any = None
        #: ``[instruments.extra.<name>]``: more instruments of a role (a second SMU), limited
        self.extra: dict[str, Any] = {}
        self.addresses: dict[str, str] = {}
        self.idn: dict[str, str] = {}
        self._closed = False
        self._previous_sigterm: Any = None
        self._open_kwargs: dict[str, dict[str, Any]] = {}
        #: where the in-process emulator's world is restored from / saved to (or None)
        self.emulator_state_path: Path | None = None
        #: provenance of the emulated world (state file, restored?, profile, seed), or None
        self.emulator_state: dict[str, Any] | None = None
        #: per-step checkpoints of the in-process emulated world (with a state file), or None
        self.checkpoints: EmulatorCheckpoints | None = None

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
        p = resolve_station(path)
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
        for name, idn in st.idn.items():
            log.info("station %s: %s at %s: %s", p, name, st.addresses.get(name, "-"), idn)
        return st

    def _address(self, name: str, inst: InstrumentConfig, address: str | None = None) -> str:
        """The VISA resource of ``address`` (default ``inst.address``) of role ``name``."""
        address = inst.address if address is None else address
        which = emulated_instrument(address)
        if which is None:
            return address
        which = which or name
        if self.bench is not None:
            if which not in self.bench.addresses:
                raise ConfigError(self.path, f"instruments.{name}.address",
                                  '"emulator" or "emulator:<instrument>" with an emulated '
                                  "instrument: " + ", ".join(self.bench.addresses), address)
            return self.bench.addresses[which]
        emu = self.config.emulator
        port = getattr(emu.ports, which, None)
        if port is None:
            raise ConfigError(self.path, f"instruments.{name}.address",
                              "an emulated instrument with a port in [emulator.ports]",
                              address)
        return f"TCPIP0::{emu.host}::{port}::SOCKET"

    def _open(self) -> None:
        cfg = self.config
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
                "virtual_time_s": float(bench.world.now_s),
                "checkpoint": bench.checkpoint}
            if sp is not None:
                self.checkpoints = EmulatorCheckpoints(bench, sp, bench.checkpoint)
        self._install_sigterm()
        if cfg.station.topology == "discrete":
            self._open_discrete()
        else:
            self._open_array()
        self._open_oven_and_clock()
        for name, inst in cfg.instruments.extra.items():  # a second SMU, a second chamber
            default, base = ((LimitedKeithley2450, Keithley2450) if inst.role == "smu"
                             else (LimitedBakeOven, BakeOven))
            cls = driver_class(inst, default, base, f"instruments.extra.{name}.driver",
                               self.path)
            self.extra[name] = self._connect(f"extra.{name}", inst, cls)
            self.extra[name]._attach(cfg.limits, None, str(self.path))
        # ready: array drivers on, SMU terminals disconnected
        self.array.deselect()
        self.array.enable()

    def _open_array(self) -> None:
        cfg = self.config
        src = str(self.path)
        ins = cfg.instruments
        # array controller
        a = ins.array
        assert a is not None  # StationConfig checks it
        acls = driver_class(a, LimitedArrayController, ArrayController,
                             "instruments.array.driver", self.path)
        self.array = self._connect("array", a, acls, tune=False)
        self.array._attach(cfg.limits, cfg.calibration.transistor, src)
        self._check_array_ranges()
        self._check_compliance_calibration()
        # the station owns the read voltage from here: every read carries it (checked)
        self.array.adopt_board_read_voltage()
        if ins.smu is not None:
            self._open_smu()

    def _open_smu(self) -> None:
        cfg = self.config
        s = cfg.instruments.smu
        assert s is not None
        scls = driver_class(s, LimitedKeithley2450, Keithley2450,
                             "instruments.smu.driver", self.path)
        self.smu = self._connect("smu", s, scls)
        self.smu._attach(cfg.limits, None, str(self.path))

    def _open_discrete(self) -> None:
        """Switch matrix + pulse generator + SMU composed into :class:`DiscreteArray`."""
        from pymeasure.instruments.agilent import Agilent33500
        from pymeasure.instruments.keithley import Keithley2750

        from cimlab.instruments.discrete_array import DiscreteArray

        cfg = self.config
        ins = cfg.instruments
        disc = cfg.discrete
        assert disc is not None and ins.switch is not None and ins.pulse_gen is not None
        self._open_smu()
        opened: dict[str, Any] = {}
        for name, inst, default in (("switch", ins.switch, Keithley2750),
                                    ("pulse_gen", ins.pulse_gen, Agilent33500)):
            dcls = default if inst.driver == "default" else driver_class(
                inst, _NoChecks, default, f"instruments.{name}.driver", self.path)
            opened[name] = self._connect(name, inst, dcls)
        self.switch, self.pulse_gen = opened["switch"], opened["pulse_gen"]
        if self.bench is not None and tuple(self.bench.chip.geometry) != tuple(disc.geometry):
            raise ConfigError(self.path, "discrete.geometry",
                              f"the emulated chip's geometry {tuple(self.bench.chip.geometry)}",
                              tuple(disc.geometry))
        self.array = DiscreteArray(  # type: ignore[assignment]
            self.switch, self.pulse_gen, self.smu, disc.geometry, cfg.limits,
            cfg.calibration.transistor, read_voltage=disc.read_voltage_v, source=str(self.path))

    def _open_oven_and_clock(self) -> None:
        cfg = self.config
        ins = cfg.instruments
        # oven
        if ins.oven is not None:
            o = ins.oven
            ocls = driver_class(o, LimitedBakeOven, BakeOven,
                                 "instruments.oven.driver", self.path)
            self.oven = self._connect("oven", o, ocls)
            self.oven._attach(cfg.limits, None, str(self.path))
            _lo, hi = self.oven.setpoint_range_c
            if cfg.limits.oven_temp_max_c > hi:
                raise ConfigError(self.path, "limits.oven_temp_max_c",
                                  f"at most {hi:g} degC (the oven's range, SOUR:TEMP:RANG?)",
                                  cfg.limits.oven_temp_max_c)
        # clock
        if cfg.station.clock == "virtual":
            c = ins.clock
            assert c is not None  # StationConfig checks it
            self.clock = self._connect("clock", c, VirtualClock)
        else:
            self.clock = RealClock()
            self.idn["clock"] = RealClock.id

    def _connect(self, name: str, inst: InstrumentConfig, cls: type, tune: bool = True) -> Any:
        """Open role ``name`` with driver ``cls`` at its ``address``, or else at each of its
        ``alternatives`` in order: the first that opens and answers ``*IDN?`` is used (its
        address lands in ``addresses`` and the snapshot). InstrumentError naming every
        address tried and why when none answers."""
        self._open_kwargs[name] = _open_kwargs_of(inst)
        candidates = (inst.address, *inst.alternatives)
        tried: list[str] = []
        for i, candidate in enumerate(candidates):
            self.addresses[name] = self._address(name, inst, candidate)
            last = i == len(candidates) - 1
            device = None
            try:
                device = cls(self.addresses[name], **self._open_kwargs[name])
                if tune:
                    tune_connection(device)
                self.idn[name] = self._identify(device, name)
            except Exception as exc:
                if device is not None and getattr(device, "adapter", None) is not None:
                    try:
                        device.adapter.close()
                    except Exception as close_exc:
                        log.debug("closing %s: %r", name, close_exc)
                if not tried and last:
                    raise  # one address: its own error, as it always was
                tried.append(f"{self.addresses[name]} ({type(exc).__name__}: {exc})")
                if last:
                    raise InstrumentError(
                        f"{self.path}: instruments.{name}: none of its {len(candidates)} "
                        "addresses (address, then alternatives) answered *IDN?: "
                        + "; ".join(tried)) from exc
                log.info("station %s: instruments.%s: %s", self.path, name, tried[-1])
                continue
            if tried:
                log.warning("station %s: instruments.%s answered at alternative %s (not at %s)",
                            self.path, name, self.addresses[name], ", ".join(tried))
            return device
        raise AssertionError("unreachable")  # pragma: no cover

    def _identify(self, inst: Any, name: str) -> str:
        log_traffic(inst, name)  # from *IDN? on, when the SCPI log is on (DEBUG)
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
        pairs = (
            ("set_bl_max_v", r.v_terminal_max_v), ("reset_sl_max_v", r.v_terminal_max_v),
            ("set_wl_max_v", r.v_gate_max_v), ("reset_wl_max_v", r.v_gate_max_v),
            ("pulse_width_max_s", r.width_max_s), ("read_v_max_v", r.v_read_max_v),
            ("mvm_v_max_v", r.v_mvm_max_v),
        )
        for key, hi in pairs:
            value = limit_value(self.limits, key, station=self.path)
            if value > hi:
                raise ConfigError(self.path, f"limits.{key}",
                                  f"at most {hi:g} {unit_of(StationLimits, key)} (the array "
                                  "controller's range, ARR:RANG?)", value)

    def _check_compliance_calibration(self) -> None:
        """Ask the board where its access transistors reach ``limits.set_icc_max_a``
        (``ARR:COMP:GATE?``, one round trip): pulses are refused beyond that word-line voltage
        whatever the file says, and a file calibration that disagrees with the board by more
        than :data:`CALIBRATION_TOLERANCE` in current is refused (ConfigError)."""
        icc_max = limit_value(self.limits, "set_icc_max_a", station=self.path)
        try:
            v_board = self.array.compliance_gate_voltage(icc_max)
        except Exception as exc:
            raise InstrumentError(
                f"{self.path}: the array controller at {self.addresses['array']} did not "
                f"answer ARR:COMP:GATE? {icc_max:g} ({exc}); its firmware must implement the "
                "compliance readback of docs/array-controller-protocol.md (version 1.1)"
            ) from exc
        tr = self.calibration.transistor
        icc_file = float(tr.icc(v_board))
        if abs(icc_file / icc_max - 1.0) > CALIBRATION_TOLERANCE:
            raise ConfigError(
                self.path, "calibration.transistor",
                f"a transistor calibration that agrees with the array board's own readback "
                f"within {CALIBRATION_TOLERANCE:.0%}: the board reaches "
                f"limits.set_icc_max_a = {icc_max:g} A at a word-line voltage of {v_board:g} V "
                f"(ARR:COMP:GATE?), where k_a_per_v2 = {tr.k_a_per_v2:g} A/V^2, v_th_v = "
                f"{tr.v_th_v:g} V give {icc_file:g} A; measure the transistor again")
        self.array.v_gate_at_icc_max = v_board

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

        Raises LimitError if ``icc_a`` exceeds ``limits.set_icc_max_a``, or the voltage it needs
        exceeds ``limits.set_wl_max_v`` or the board's own word-line voltage for
        ``set_icc_max_a`` (:func:`~cimlab.instruments.limits.check_set_gate`).
        """
        icc = float(icc_a)
        if not (math.isfinite(icc) and icc > 0):
            raise ValueError(f"compliance current must be a finite value > 0 A, got {icc_a!r}")
        check_limit(self.limits, "set_icc_max_a", icc, what="SET compliance current",
                    station=self.path)
        v = self.calibration.transistor.v_gate_for(icc)
        check_set_gate(self.limits, v, v_gate_at_icc_max=self.array.v_gate_at_icc_max,
                       what=f"word-line voltage for a SET compliance current of {icc:g} A",
                       station=self.path)
        return v

    def instrument_time(self) -> dict[str, float] | None:
        """Instrument time [s] charged so far per instrument (virtual clock), else None."""
        if isinstance(self.clock, VirtualClock):
            names = {"switch": "switch", "pulse_gen": "pgen", "smu": "smu", "oven": "oven"} \
                if self.switch is not None else {"array": "array", "smu": "smu", "oven": "oven"}
            return {name: self.clock.busy(q) for name, q in names.items()}
        return None

    def snapshot(self) -> dict[str, Any]:
        """Provenance of a run: IDNs, settings, limits, versions and the station file text
        (:func:`cimlab.instruments.snapshot.station_snapshot`)."""
        from cimlab.instruments.snapshot import station_snapshot

        return station_snapshot(self)

    # -- closing -----------------------------------------------------------------------------
    def _reconnect(self) -> None:
        """Fresh VISA sessions for every instrument.

        After an exception (Ctrl-C or SIGTERM may strike between a query and its answer, or in
        the middle of a block) a session may hold a stale response or a half-sent message; the
        shutdown commands must not read the one nor complete the other. Closing the session
        discards both; the instrument sees a new connection.
        """
        from pymeasure.adapters import VISAAdapter

        named = [(name, getattr(self, name)) for name in ("smu", "array", "switch",
                                                          "pulse_gen", "oven", "clock")]
        for name, inst in [*named, *((f"extra.{k}", v) for k, v in self.extra.items())]:
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
                log_traffic(inst, name)
            except Exception as exc:
                log.error("station %s: cannot reconnect to %s: %r", self.path, name, exc)

    def close(self, _quiet: bool = False, _abnormal: bool = False) -> None:
        """Outputs off (SMU ramped to zero and off, array standby, oven heater off), close the
        connections, stop an in-process emulator. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if _abnormal:
            log.info("station %s: closing after an error or interrupt: reconnecting to "
                     "switch the outputs off", self.path)
            self._reconnect()
        errors: list[str] = []
        steps = (
            ("smu", lambda: self.smu.safe_shutdown() if self.smu is not None else None),
            ("array", lambda: self.array.shutdown() if self.array is not None else None),
            ("oven", lambda: self.oven.shutdown() if self.oven is not None else None),
            ("clock", lambda: self.clock.shutdown() if self.clock is not None else None),
            *((f"extra.{k}", v.safe_shutdown if hasattr(v, "safe_shutdown") else v.shutdown)
              for k, v in self.extra.items()),
        )
        for name, step in steps:
            try:
                step()
            except BaseException as exc:  # keep switching the others off
                log.error("station %s: shutdown of %s failed: %r", self.path, name, exc)
                errors.append(f"{name}: {exc!r}")
        for inst in (self.smu, self.array, self.switch, self.pulse_gen, self.oven, self.clock,
                     *self.extra.values()):
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
        if self.checkpoints is not None and self.checkpoints.uncommitted:
            # a run stopped past its last committed step: the state file keeps the world of
            # that step (the run resumes there); the chip as it is now is not saved
            log.info("station %s: emulated world kept at the last committed step (%s)",
                     self.path, self.emulator_state_path)
            return None
        try:
            record = self.checkpoints.record if self.checkpoints is not None else None
            self.bench.save_state(self.emulator_state_path, checkpoint=record)
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
    "CALIBRATION_TOLERANCE",
    "EMULATOR_ADDRESS",
    "LIMIT_NAMES",
    "SMU_MAX_I",
    "SMU_MAX_V",
    "Calibration",
    "EmulatorConfig",
    "EmulatorPorts",
    "InstrumentConfig",
    "InstrumentsConfig",
    "LimitedArrayController",
    "LimitedBakeOven",
    "LimitedKeithley2450",
    "Station",
    "StationConfig",
    "StationInfo",
    "StationLimits",
    "TransistorCalibration",
    "check_limit",
    "check_pulse",
    "check_requests",
    "check_set_gate",
    "driver_class",
    "limit_value",
    "load_station_config",
]
