"""Station files: the ``[station]``, ``[emulator]``, ``[instruments]``, ``[limits]`` and
``[calibration]`` tables as frozen dataclasses, and their strict loading (layer 4).

:func:`load_station_config` reads a station file and validates everything that can be checked
without opening an instrument; every failure is one :class:`~cimlab.errors.ConfigError` line
naming the file, the field and what was expected: a file that is not UTF-8 text, is too large
or nested too deep, a TOML syntax error, an unknown key, a wrong type or a value out of
bounds, an unknown VISA backend, a ``driver`` that is not ``"package.module:Class"``, an
emulator address other than loopback (unless ``[emulator] allow_remote = true``). The limits
are :class:`cimlab.instruments.limits.StationLimits`.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cimlab.errors import ConfigError
from cimlab.instruments.limits import StationLimits
from cimlab.params import check, from_dict, param
from cimlab.transistor import square_law_current, square_law_gate_voltage

log = logging.getLogger(__name__)

#: ``address`` of an instrument served by the emulated bench
EMULATOR_ADDRESS = "emulator"

#: largest station file read [bytes]: a station file is a page of text
MAX_STATION_FILE_BYTES = 1 << 20

#: PyVISA backends a station may name: pyvisa-py, the vendor VISA (IVI), pyvisa-sim
VISA_BACKENDS = ("@py", "@ivi", "@sim")

#: form of a lab driver: ``package.module:Class`` (checked before anything is imported)
DRIVER_FORM = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
#: form of a driver plug-in named by its entry point (group :data:`DRIVER_ENTRY_POINTS`)
DRIVER_PLUGIN_FORM = re.compile(r"plugin:[A-Za-z0-9_.\-]+")
#: entry-point group of third-party driver plug-ins (``driver = "plugin:<name>"``)
DRIVER_ENTRY_POINTS = "cimlab.drivers"

#: per-instrument VISA resource options a station file may pass through (``options = {...}``):
#: PyVISA resource attributes, with the type each takes
VISA_OPTIONS: dict[str, tuple[type, ...]] = {
    "read_termination": (str,), "write_termination": (str,), "baud_rate": (int,),
    "data_bits": (int,), "stop_bits": (int, float), "parity": (int,),
    "flow_control": (int,), "query_delay": (int, float), "send_end": (bool,),
    "chunk_size": (int,), "encoding": (str,),
}

LOOPBACK_NAMES = ("localhost",)


def emulated_instrument(address: str) -> str | None:
    """``"emulator"`` -> ``""`` (the role's own emulated instrument), ``"emulator:chuck"`` ->
    ``"chuck"`` (a named one: the oven role served by the Lake Shore chuck), else None."""
    if address == EMULATOR_ADDRESS:
        return ""
    if address.startswith(EMULATOR_ADDRESS + ":"):
        return address[len(EMULATOR_ADDRESS) + 1:]
    return None


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class StationInfo:
    """``[station]``: what the bench is called and which clock it runs on."""

    name: str = param(doc="bench name, recorded with every run")
    clock: str = param(
        "virtual", choices=("virtual", "real"),
        doc="virtual: the emulator's clock instrument; real: time.monotonic/time.sleep",
    )
    topology: str = param(
        "integrated", choices=("integrated", "discrete"),
        doc="integrated: an array controller drives the chip; discrete: a switch matrix, a "
        "pulse generator and the SMU do ([instruments.switch], [instruments.pulse_gen], "
        "[discrete])",
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
    switch: int = param(5029, unit="1", lo=1, hi=65535)
    pulse_gen: int = param(5030, unit="1", lo=1, hi=65535)
    chuck: int = param(5031, unit="1", lo=1, hi=65535)

    def __post_init__(self) -> None:
        check(self)


@dataclass(frozen=True)
class EmulatorConfig:
    """``[emulator]``: the emulated bench."""

    start: bool = param(False, doc="start the emulated instruments in this process")
    profile: str = param("default", doc="chip profile: bundled name or TOML path")
    seed: int = param(0, unit="1", lo=0, doc="seed of the emulated chip")
    host: str = param(
        "127.0.0.1",
        doc="address the emulator listens on / is reached at: a loopback address unless "
        "allow_remote = true",
    )
    allow_remote: bool = param(
        False,
        doc="allow a non-loopback host: the emulated instruments then accept connections from "
        "other machines, without authentication (a warning is logged)",
    )
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
        if not is_loopback(self.host):
            if not self.allow_remote:
                raise ConfigError(None, "host",
                                  "a loopback address (127.0.0.1, ::1, localhost); set "
                                  "[emulator] allow_remote = true to serve other machines",
                                  _short(self.host))
            log.warning("emulator host %s is not loopback (allow_remote = true): the emulated "
                        "instruments accept connections from other machines, unauthenticated",
                        self.host)


@dataclass(frozen=True)
class InstrumentConfig:
    """``[instruments.<name>]``: where an instrument is and how to open it."""

    address: str = param(
        doc='VISA resource name, e.g. "TCPIP0::192.168.1.20::5025::SOCKET", or "emulator" '
        '(the role\'s emulated instrument), or "emulator:<instrument>" (e.g. "emulator:chuck")'
    )
    alternatives: tuple[str, ...] = param(
        (), doc="other VISA resource names of the same role, tried in order when the one "
        "before does not open or answer *IDN? (a USB or serial address that moves, a spare "
        'instrument); also written as address = ["first", "second", ...]')
    backend: str = param(
        "@py", doc='PyVISA backend: "@py" (pyvisa-py), "@ivi" (vendor VISA), "@sim" '
        '(pyvisa-sim), or "<path to a VISA library>@ivi"')
    timeout_s: float = param(10.0, unit="s", lo=0.01, hi=600.0, doc="I/O timeout")
    driver: str = param(
        "default",
        doc='"default" (cimlab\'s driver), "package.module:Class" (a subclass of it), or '
        '"plugin:<name>" (a class registered under the "cimlab.drivers" entry points)',
    )
    options: dict = param(
        default_factory=dict,
        doc="VISA resource options passed through when the instrument is opened: "
        "read_termination, write_termination, baud_rate, data_bits, stop_bits, parity, "
        "flow_control, query_delay, send_end, chunk_size, encoding",
    )

    def __post_init__(self) -> None:
        check(self)
        seen = {self.address}
        for i, alt in enumerate(self.alternatives):
            if not alt.strip() or alt in seen:
                raise ConfigError(None, f"alternatives[{i}]",
                                  "a VISA resource name given once (not empty, not a repeat "
                                  "of the address or of another alternative)", _short(alt))
            seen.add(alt)
        if not self.address.strip():
            raise ConfigError(None, "address", "a VISA resource name, \"emulator\" or a "
                              "non-empty list of VISA resource names", self.address)
        for key, value in self.options.items():
            kinds = VISA_OPTIONS.get(key)
            if kinds is None:
                raise ConfigError(None, f"options.{key}", "one of " + ", ".join(VISA_OPTIONS),
                                  _short(str(key)))
            if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
                raise ConfigError(None, f"options.{key}",
                                  " or ".join(k.__name__ for k in kinds), value)
        b = self.backend
        if b not in VISA_BACKENDS and not (b.endswith("@ivi")
                                           and (Path(b[:-4]).is_file()
                                                or not Path(b[:-4]).is_absolute())):
            raise ConfigError(None, "backend",
                              'a PyVISA backend: "@py", "@ivi", "@sim" or '
                              '"<path to an existing VISA library>@ivi"', _short(b))
        if self.driver != "default" and not (DRIVER_FORM.fullmatch(self.driver)
                                             or DRIVER_PLUGIN_FORM.fullmatch(self.driver)):
            raise ConfigError(None, "driver", '"default", "package.module:Class" or '
                              '"plugin:<entry point name>"', _short(self.driver))


def _short(text: str, n: int = 80) -> str:
    return text if len(text) <= n else text[:n] + f"... ({len(text)} characters)"


@dataclass(frozen=True)
class InstrumentsConfig:
    """``[instruments]``: the array controller (integrated topology) or the switch matrix,
    pulse generator and SMU (discrete topology) are required; the others are optional."""

    array: InstrumentConfig | None = param(None)
    smu: InstrumentConfig | None = param(None)
    oven: InstrumentConfig | None = param(None)
    clock: InstrumentConfig | None = param(None)
    # -- discrete topology ([station] topology = "discrete") ---------------------------------
    switch: InstrumentConfig | None = param(None, doc="switch matrix (Keithley 2750)")
    pulse_gen: InstrumentConfig | None = param(
        None, doc="two-channel pulse generator (Keysight 33500B): ch1 pulse, ch2 gate")

    extra: dict = param(
        default_factory=dict,
        doc="more instruments of a role, e.g. a second SMU: [instruments.extra.<name>] with "
        "role = \"smu\" or \"oven\" and the keys of any instrument; opened with the role's "
        "limit-checking driver as Station.extra[<name>]")

    def __post_init__(self) -> None:
        extra: dict[str, ExtraInstrumentConfig] = {}
        for name, table in self.extra.items():
            if not re.fullmatch(r"[A-Za-z_]\w{0,39}", str(name)) or name in ROLES:
                raise ConfigError(None, f"extra.{_short(str(name))}",
                                  "a name of at most 40 letters, digits and _ that is not a "
                                  "role (" + ", ".join(ROLES) + ")")
            extra[name] = from_dict(ExtraInstrumentConfig, table, source=None,
                                    prefix=f"extra.{name}.")
        object.__setattr__(self, "extra", extra)

    def all(self) -> dict[str, InstrumentConfig]:
        """The instruments the file names for its roles, ``{role: config}`` (not ``extra``)."""
        return {k: v for k, v in vars(self).items() if v is not None and k != "extra"}


#: the roles of ``[instruments]``
ROLES = ("array", "smu", "oven", "clock", "switch", "pulse_gen")
#: roles an extra instrument may play (``[instruments.extra.<name>] role = ...``)
EXTRA_ROLES = ("smu", "oven")


@dataclass(frozen=True)
class ExtraInstrumentConfig(InstrumentConfig):
    """``[instruments.extra.<name>]``: one more instrument of a role (a second SMU, a second
    chamber), with the station's limits of that role."""

    role: str = param("", choices=EXTRA_ROLES, doc='"smu" or "oven"')


@dataclass(frozen=True)
class DiscreteConfig:
    """``[discrete]``: the chip as a discrete bench's switch matrix reaches it."""

    geometry: tuple[int, int, int] = param(
        (1, 1, 1), doc="(n_tiles, rows, cols) of the chip wired to the matrix (an emulated "
        "chip must have this geometry)")
    read_voltage_v: float = param(0.2, unit="V", lo=0.0, lo_open=True, hi=5.0,
                                  doc="SMU read voltage")

    def __post_init__(self) -> None:
        check(self)
        g = self.geometry
        if len(g) != 3 or any(not isinstance(x, int) or x < 1 for x in g):
            raise ConfigError(None, "geometry", "three integers >= 1 (n_tiles, rows, cols)",
                              g)


@dataclass(frozen=True)
class TransistorCalibration:
    """``[calibration.transistor]``: the 1T1R access transistor's compliance current versus
    word-line voltage, in saturation (long-channel square law, Shichman-Hodges):
    ``I_cc = k/2 (V_wl - V_th)^2`` for ``V_wl > V_th``. Measure it on the bench (SMU on one
    transistor) or take it from the chip's datasheet; the station checks it against the array
    board's own readback when it opens."""

    k_a_per_v2: float = param(unit="A/V^2", lo=0.0, lo_open=True,
                              doc="transconductance parameter mu*Cox*W/L")
    v_th_v: float = param(unit="V", lo=0.0, hi=5.0, doc="threshold voltage")
    model: str = param("square_law", choices=("square_law",), doc="calibration model")

    def __post_init__(self) -> None:
        check(self)

    def icc(self, v_gate: Any) -> Any:
        """SET compliance current [A] at word-line voltage ``v_gate`` [V]."""
        return square_law_current(v_gate, self.k_a_per_v2, self.v_th_v)

    def v_gate_for(self, icc_a: float) -> float:
        """Word-line voltage [V] giving compliance current ``icc_a`` [A] (ValueError for a
        negative or non-finite current)."""
        return float(square_law_gate_voltage(float(icc_a), self.k_a_per_v2, self.v_th_v))


@dataclass(frozen=True)
class Calibration:
    """``[calibration]``: the transistor calibration inline (``[calibration.transistor]``) or
    in a calibration file (``file = "transistor.toml"``, relative to the station file: a TOML
    file with a ``[calibration.transistor]`` table, as the ``gate_calibration`` procedure
    writes it), never both."""

    transistor: TransistorCalibration = param()
    file: str = param("", doc="calibration file holding [calibration.transistor] (relative "
                      "to the station file); the station's own table is then left out")


def _calibration_from_file(station: Path, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``calibration.transistor`` read from ``calibration.file`` when given."""
    cal = data.get("calibration")
    if not isinstance(cal, dict) or "file" not in cal:
        return data
    name = cal["file"]
    if not isinstance(name, str) or not name:
        raise ConfigError(station, "calibration.file", "a non-empty path to a TOML file", name)
    if "transistor" in cal:
        raise ConfigError(station, "calibration.transistor",
                          "no inline table when calibration.file is given (one source)")
    f = Path(name) if Path(name).is_absolute() else station.parent / name
    fdata, _ = read_station_text(f)
    tr = fdata.get("calibration", {}).get("transistor") if isinstance(
        fdata.get("calibration"), dict) else None
    if not isinstance(tr, dict):
        raise ConfigError(f, "calibration.transistor", "a [calibration.transistor] table")
    from_dict(TransistorCalibration, tr, source=f, prefix="calibration.transistor.")
    return {**data, "calibration": {**cal, "transistor": tr}}


@dataclass(frozen=True)
class StationConfig:
    """A whole station file."""

    station: StationInfo = param()
    instruments: InstrumentsConfig = param()
    limits: StationLimits = param()
    calibration: Calibration = param()
    emulator: EmulatorConfig = param(default_factory=EmulatorConfig)
    discrete: DiscreteConfig | None = param(None)

    def __post_init__(self) -> None:
        ins = self.instruments
        if self.station.topology == "integrated" and ins.array is None:
            raise ConfigError(None, "instruments.array",
                              'an array controller when station.topology = "integrated"')
        if self.station.topology == "discrete":
            for role in ("switch", "pulse_gen", "smu"):
                if getattr(ins, role) is None:
                    raise ConfigError(None, f"instruments.{role}",
                                      f'a {role} instrument when station.topology = "discrete"')
            if self.discrete is None:
                raise ConfigError(None, "discrete",
                                  'a [discrete] table when station.topology = "discrete"')
        if self.station.clock == "virtual" and self.instruments.clock is None:
            raise ConfigError(None, "instruments.clock",
                              'a clock instrument when station.clock = "virtual"')


def read_station_text(path: str | Path) -> tuple[dict[str, Any], str]:
    """The parsed TOML table and the text of station file ``path``, strictly: ConfigError
    (one line) for a missing file or a directory, more than :data:`MAX_STATION_FILE_BYTES`,
    bytes that are not UTF-8, a TOML syntax error or nesting too deep to parse."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_STATION_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(p, "<file>", "an existing TOML file") from None
    except IsADirectoryError:
        raise ConfigError(p, "<file>", "a TOML file, not a directory") from None
    except OSError as exc:
        raise ConfigError(p, "<file>", f"a readable TOML file ({exc.strerror or exc})") from None
    if len(raw) > MAX_STATION_FILE_BYTES:
        raise ConfigError(p, "<file>", f"a station file of at most {MAX_STATION_FILE_BYTES} "
                          "bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(p, "<encoding>", f"UTF-8 text (byte {exc.start} is not); a station "
                          "file is a TOML text file") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(p, "<syntax>", f"valid TOML ({exc})") from None
    except RecursionError:
        raise ConfigError(p, "<syntax>", "TOML nested at most a few levels deep (a station "
                          "file has tables of tables, no deeper)") from None
    # the text as Path.read_text gives it (universal newlines), for the run's snapshot
    return data, text.replace("\r\n", "\n").replace("\r", "\n")


#: folder of the bundled station files (package data): ``emulated``, ``emulated-discrete``
STATIONS_DIR = Path(__file__).resolve().parent / "stations"


def bundled_stations() -> list[str]:
    """Names of the bundled station files."""
    return sorted(p.stem for p in STATIONS_DIR.glob("*.toml"))


def resolve_station(name_or_path: str | Path) -> Path:
    """A station file path from ``--station``: an existing file as given, else a bundled
    station by name (``"emulated"``, ``"emulated-discrete"``, with or without ``.toml``), from
    any working directory. ConfigError (one line) when neither exists."""
    p = Path(name_or_path)
    if p.exists():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    bundled = STATIONS_DIR / f"{stem}.toml"
    if (p.parent == Path(".") or str(p.parent).replace("\\", "/") == "instruments") \
            and bundled.is_file():
        return bundled
    raise ConfigError(p, "<file>", "an existing TOML file (a station file), or a bundled "
                      "station name: " + ", ".join(bundled_stations()))


def _address_lists(data: dict[str, Any], path: Path) -> None:
    """``address = ["A", "B", ...]`` of a role, in place: ``address = "A"``, ``alternatives =
    ["B", ...]`` (ConfigError for an empty list, or with ``alternatives`` given too)."""
    instruments = data.get("instruments")
    if not isinstance(instruments, dict):
        return
    tables = [(role, t) for role, t in instruments.items() if role != "extra"]
    if isinstance(instruments.get("extra"), dict):
        tables += [(f"extra.{name}", t) for name, t in instruments["extra"].items()]
    for role, table in tables:
        if not isinstance(table, dict) or not isinstance(table.get("address"), list):
            continue
        addresses = table["address"]
        field = f"instruments.{role}.address"
        if not addresses or not all(isinstance(a, str) for a in addresses):
            raise ConfigError(path, field, "a VISA resource name or a non-empty list of them "
                              "(strings), tried in order", addresses)
        if "alternatives" in table:
            raise ConfigError(path, f"instruments.{role}.alternatives",
                              "no alternatives when address is a list (the list's other "
                              "entries are the alternatives)", table["alternatives"])
        table["address"], table["alternatives"] = addresses[0], list(addresses[1:])


def load_station_config(path: str | Path) -> tuple[StationConfig, str]:
    """Parse and validate a station file strictly (``path`` through :func:`resolve_station`);
    returns the config and the file's text."""
    p = resolve_station(path)
    data, text = read_station_text(p)
    data = _calibration_from_file(p, data)
    _address_lists(data, p)
    try:
        cfg = from_dict(StationConfig, data, source=p)
    except RecursionError:
        raise ConfigError(p, "<root>", "tables nested as a station file has them") from None
    fixed: dict[str, InstrumentConfig] = {}
    for role, inst in cfg.instruments.all().items():  # a VISA library relative to the file
        b = inst.backend
        if b not in VISA_BACKENDS:
            lib = Path(b[:-4])
            lib = lib if lib.is_absolute() else p.parent / lib
            if not lib.is_file():
                raise ConfigError(p, f"instruments.{role}.backend",
                                  '"@py", "@ivi", "@sim" or "<path to an existing VISA '
                                  'library>@ivi" (relative to the station file)', _short(b))
            fixed[role] = dataclasses.replace(inst, backend=f"{lib.resolve()}@ivi")
    if fixed:
        cfg = dataclasses.replace(cfg, instruments=dataclasses.replace(cfg.instruments, **fixed))
    uses_emulator = any(emulated_instrument(address) is not None
                        for inst in (*cfg.instruments.all().values(),
                                     *cfg.instruments.extra.values())
                        for address in (inst.address, *inst.alternatives))
    if cfg.emulator.start and not uses_emulator:
        raise ConfigError(p, "emulator.start",
                          'false, or at least one instrument with address = "emulator"', True)
    if cfg.emulator.state and not cfg.emulator.start:
        raise ConfigError(p, "emulator.state",
                          '"" unless emulator.start = true (the state file belongs to an '
                          "emulator started by the station; a served emulator keeps its chip)",
                          cfg.emulator.state)
    return cfg, text


__all__ = [
    "EMULATOR_ADDRESS",
    "Calibration",
    "DiscreteConfig",
    "EmulatorConfig",
    "EmulatorPorts",
    "ExtraInstrumentConfig",
    "InstrumentConfig",
    "InstrumentsConfig",
    "StationConfig",
    "StationInfo",
    "TransistorCalibration",
    "bundled_stations",
    "emulated_instrument",
    "is_loopback",
    "load_station_config",
    "read_station_text",
    "resolve_station",
]
