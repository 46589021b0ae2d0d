"""``EmulatedBench``: the emulated instruments served on 127.0.0.1, one port each.

Example::

    with EmulatedBench("default", seed=1) as bench:
        bench.addresses   # {"array": "TCPIP0::127.0.0.1::40123::SOCKET", "smu": ..., ...}
        # open them with PyVISA (@py) or the cimlab drivers, exactly as LAN instruments

``ports`` fixes the port of each instrument (``cimlab emulator serve`` uses the station file's
ports); by default the OS picks free ephemeral ports.

State: ``bench.save_state("world.npz")`` writes the whole emulated world (chip with all its
hidden state, virtual clock, oven chamber, routing, the array's and the SMU's settings) to a
compressed ``.npz`` of plain arrays (no code runs on load: :mod:`cimlab.physics.state`);
``EmulatedBench.from_state("world.npz")`` serves that world again, continuing bit for bit.
Layout and version: docs/physics.md, "State files".
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from cimlab import __version__
from cimlab.instruments.emulator.array import ArrayControllerEmulator, ArrayRange
from cimlab.instruments.emulator.clock import ClockEmulator
from cimlab.instruments.emulator.funcgen import Agilent33500Emulator
from cimlab.instruments.emulator.lakeshore import LakeShore335Emulator
from cimlab.instruments.emulator.oven import OvenEmulator
from cimlab.instruments.emulator.scpi import Instrument
from cimlab.instruments.emulator.server import ScpiServer
from cimlab.instruments.emulator.smu import Keithley2450Emulator
from cimlab.instruments.emulator.switch import Keithley2750Emulator
from cimlab.instruments.emulator.world import OvenRange, Timing, World

#: the instruments of an emulated bench, in start order
INSTRUMENTS: tuple[str, ...] = ("array", "smu", "oven", "clock", "switch", "pulse_gen",
                                "chuck")

#: ``format`` of a bench state (:meth:`EmulatedBench.state_dict`)
STATE_FORMAT = "cimlab-emulated-bench"
#: layout version of a bench state (the chip inside has its own, ``chip.format_version``)
STATE_VERSION = 1


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
        #: the checkpoint record this world was saved with (:meth:`save_state`), or None
        self.checkpoint: dict[str, Any] | None = None
        self.world = World(chip if chip is not None else make_chip(profile, seed),
                           timing=timing, oven=oven)
        self.instruments: dict[str, Instrument] = {
            "array": ArrayControllerEmulator(self.world, array_range),
            "smu": Keithley2450Emulator(self.world),
            "oven": OvenEmulator(self.world),
            "clock": ClockEmulator(self.world),
        }
        # discrete-bench instruments over the same world (a station uses either the array
        # controller or these; their settings are not part of a saved state: a restored
        # bench starts them with every relay open and the generator after *RST)
        switch = Keithley2750Emulator(self.world)
        self.instruments["switch"] = switch
        self.instruments["pulse_gen"] = Agilent33500Emulator(self.world, switch)
        # the heated chuck's temperature controller: drives the same chamber temperature as
        # the oven (a station uses one of them)
        self.instruments["chuck"] = LakeShore335Emulator(self.world)
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

    # -- state -------------------------------------------------------------------------------
    @property
    def profile_label(self) -> str:
        """The profile as given (bundled name or path; a ChipProfile object by its name)."""
        p = self.profile
        return str(p) if isinstance(p, (str, Path)) else str(getattr(p, "name", p))

    def state_dict(self) -> dict[str, Any]:
        """The whole world as ``{name: array | number | str}``: ``chip.*`` (the chip's
        :meth:`~cimlab.physics.ReRAMChip.state_dict`), ``world.*``, ``array.*``, ``smu.*``,
        ``bench.profile`` and ``bench.seed`` (as the bench was made). Taken under the world's
        lock, so it is consistent while instruments are being served."""
        seed = self.seed if isinstance(self.seed, (int, str, type(None))) else repr(self.seed)
        with self.world.lock:
            st: dict[str, Any] = {
                "format": STATE_FORMAT, "format_version": STATE_VERSION,
                "cimlab_version": __version__,
                "bench.profile": self.profile_label, "bench.seed": json.dumps(seed),
            }
            st.update({"chip." + k: v for k, v in self.chip.state_dict().items()})
            st.update(self.world.state_dict())
            st.update(self.instruments["array"].state_dict())
            st.update(self.instruments["smu"].state_dict())
        return st

    def save_state(self, path: str | os.PathLike, *, compress: bool = True,
                   checkpoint: Mapping[str, Any] | None = None) -> Path:
        """Write :meth:`state_dict` to ``path`` (``.npz``, atomically: a temporary file, then
        renamed). ``compress=False``: ~30x faster, ~2x larger (the per-step checkpoints of a
        resumable run). ``checkpoint``: a JSON-able record stored with the world (entry
        ``checkpoint``; which committed step of which run this world belongs to), read back
        as :attr:`checkpoint` by :meth:`from_state`."""
        from cimlab.physics.state import save_npz

        state = self.state_dict()
        if checkpoint is not None:
            state["checkpoint"] = json.dumps(checkpoint)
        if compress:
            return save_npz(path, state)
        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: np.asarray(v) for k, v in state.items()})
            os.replace(tmp, p)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return p

    @classmethod
    def from_state(
        cls,
        state: str | os.PathLike | Mapping[str, Any],
        *,
        ports: Mapping[str, int] | None = None,
        host: str = "127.0.0.1",
        source: Any = None,
    ) -> EmulatedBench:
        """A bench serving the world saved by :meth:`save_state` (a path, or the mapping
        :meth:`state_dict` returns), not yet started. A chip state alone
        (:meth:`ReRAMChip.save <cimlab.physics.ReRAMChip.save>`) is accepted too: fresh
        instruments, the virtual clock at the chip's time. A missing, foreign, damaged or
        newer file raises :class:`~cimlab.errors.ConfigError` naming the file and the entry;
        nothing is started then."""
        from cimlab.physics import ReRAMChip
        from cimlab.physics.chip import STATE_FORMAT as CHIP_FORMAT
        from cimlab.physics.state import StateReader, load_npz

        if isinstance(state, (str, os.PathLike)):
            source = source if source is not None else Path(state)
            state = load_npz(state)
        if state.get("format") == CHIP_FORMAT:
            chip = ReRAMChip.from_state(state, source=source)
            bench = cls(chip.profile.name, chip.seed, chip=chip, ports=ports, host=host)
            bench.world.now_s = chip.time_s
            return bench
        r = StateReader(state, source)
        r.header(STATE_FORMAT, STATE_VERSION,
                 "an emulated bench's state, EmulatedBench.save_state; or a chip state, "
                 f"{CHIP_FORMAT!r}")
        label = r.string("bench.profile")
        seed = r.json("bench.seed", "the seed")
        chip = ReRAMChip.from_state(r.sub("chip."), source=source, prefix="chip.")
        timing, oven = World.read_config(r)
        array_range = ArrayControllerEmulator.read_range(r)
        bench = cls(label, seed, chip=chip, ports=ports, host=host, timing=timing, oven=oven,
                    array_range=array_range)
        world = bench.world.read_state(r, chip.n_cells)
        if chip.time_s > world["now_s"] * (1 + 1e-12) + 1e-9:
            raise r.error("world.now_s", f"at least the chip's clock ({chip.time_s!r} s)",
                          world["now_s"])
        array = bench.instruments["array"].read_state(r)
        smu = bench.instruments["smu"].read_state(r)
        checkpoint = (r.json("checkpoint", "the checkpoint record (JSON)")
                      if r.has("checkpoint") else None)
        r.done()
        bench.checkpoint = checkpoint if isinstance(checkpoint, dict) else None
        bench.world.apply_state(world)
        bench.instruments["array"].apply_state(array)
        bench.instruments["smu"].apply_state(smu)
        return bench

    def log(self, name: str) -> list[str]:
        """The program messages instrument ``name`` received so far (oldest first)."""
        inst = self.instruments[name]
        with inst.lock:
            return list(inst.log)

    def __enter__(self) -> EmulatedBench:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
