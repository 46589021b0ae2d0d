"""``EmulatedBench``: the emulated instruments served on 127.0.0.1, one port each.

Example::

    with EmulatedBench("default", seed=1) as bench:
        bench.addresses   # {"array": "TCPIP0::127.0.0.1::40123::SOCKET", "smu": ..., ...}
        # open them with PyVISA (@py) or the cimlab drivers, exactly as LAN instruments

``ports`` fixes the port of each instrument (``cimlab emulator serve`` uses the station file's
ports); by default the OS picks free ephemeral ports.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cimlab.instruments.emulator.array import ArrayControllerEmulator, ArrayRange
from cimlab.instruments.emulator.clock import ClockEmulator
from cimlab.instruments.emulator.oven import OvenEmulator
from cimlab.instruments.emulator.scpi import Instrument
from cimlab.instruments.emulator.server import ScpiServer
from cimlab.instruments.emulator.smu import Keithley2450Emulator
from cimlab.instruments.emulator.world import OvenRange, Timing, World

#: the instruments of an emulated bench, in start order
INSTRUMENTS: tuple[str, ...] = ("array", "smu", "oven", "clock")


def make_chip(profile: Any = "default", seed: int = 0):
    """A :class:`cimlab.physics.ReRAMChip` from a profile name, TOML path or ChipProfile."""
    from cimlab.physics import ReRAMChip, load_profile

    if isinstance(profile, (str, Path)):
        profile = load_profile(profile)
    return ReRAMChip(profile, seed=seed)


class EmulatedBench:
    """One emulated world (chip + clock + oven + SMU + routing) served as SCPI instruments.

    :param profile: chip profile (bundled name, TOML path, or a ChipProfile)
    :param seed: seed of the chip's random generator (the chip's whole history follows from it)
    :param ports: optional ``{instrument: port}``; missing instruments get ephemeral ports
    :param host: address to listen on (127.0.0.1: reachable from this machine only)
    :param chip: an already built chip (then ``profile`` and ``seed`` are ignored)
    """

    def __init__(
        self,
        profile: Any = "default",
        seed: int = 0,
        *,
        ports: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        chip: Any = None,
        timing: Timing | None = None,
        oven: OvenRange | None = None,
        array_range: ArrayRange | None = None,
    ):
        self.profile = profile
        self.seed = seed
        self.world = World(chip if chip is not None else make_chip(profile, seed),
                           timing=timing, oven=oven)
        self.instruments: dict[str, Instrument] = {
            "array": ArrayControllerEmulator(self.world, array_range),
            "smu": Keithley2450Emulator(self.world),
            "oven": OvenEmulator(self.world),
            "clock": ClockEmulator(self.world),
        }
        ports = dict(ports or {})
        unknown = set(ports) - set(INSTRUMENTS)
        if unknown:
            raise ValueError(f"no emulated instrument named {sorted(unknown)}; "
                             f"known: {', '.join(INSTRUMENTS)}")
        self.host = host
        self._ports = ports
        self.servers: dict[str, ScpiServer] = {}

    @property
    def chip(self):
        return self.world.chip

    def start(self) -> EmulatedBench:
        """Bind every port and serve in background threads."""
        try:
            for name in INSTRUMENTS:
                server = ScpiServer(self.instruments[name], self.host, self._ports.get(name, 0))
                self.servers[name] = server.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.servers.clear()

    @property
    def ports(self) -> dict[str, int]:
        return {name: s.port for name, s in self.servers.items()}

    @property
    def addresses(self) -> dict[str, str]:
        """VISA resource names: ``TCPIP0::127.0.0.1::<port>::SOCKET`` per instrument."""
        return {name: s.address for name, s in self.servers.items()}

    def log(self, name: str) -> list[str]:
        """The program messages instrument ``name`` received so far (oldest first)."""
        inst = self.instruments[name]
        with inst.lock:
            return list(inst.log)

    def __enter__(self) -> EmulatedBench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
