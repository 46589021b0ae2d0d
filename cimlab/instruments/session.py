"""An emulated bench's chip kept between commands: the emulator-state session.

With a station file whose ``[emulator] start = true`` every command starts a fresh emulator,
so the chip a command programmed would be gone for the next one. :func:`open_station` opens
the station with an emulator state file next to the store (:func:`state_path_for`:
``<store>.chip.npz``, see :meth:`cimlab.instruments.station.Station.open`): the emulated
world (chip with all its hidden state, virtual clock, oven, routing) is restored from it when
it exists and written back when the station closes. It is a plain compressed NumPy archive
(no code runs on load; layout in docs/physics.md, "State files"). Alternatively run
``cimlab emulator serve`` and use a station file with ``start = false``: the chip then lives
in that process. A real bench keeps its chip itself: these functions then only open the
station. See docs/network-on-chip.md.

Per committed step: :class:`EmulatorCheckpoints` (``st.checkpoints``) saves the world with a
record of the run's committed step, two-phase with the store's commit (``<state>.pending``,
then a rename), so a killed or interrupted run resumes on the chip of its last committed step
(docs/safety.md, "What a resume means").

Also here: :func:`planned_geometry` (the chip geometry of an in-process emulated bench, known
before anything starts), :func:`require_chip_state` (refuse to measure a blank emulated chip)
and :func:`interrupt_deferred` (a Ctrl-C while the station closes is held back until the
state is saved).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cimlab.errors import ConfigError

if TYPE_CHECKING:
    from cimlab.instruments.station import Station

#: suffix of the emulator state file next to a store
STATE_SUFFIX = ".chip.npz"
#: suffix of the emulator state older cimlab versions wrote (an unsafe format: never read)
LEGACY_STATE_SUFFIX = ".emulator.pkl"


def state_path_for(store_path: str | os.PathLike) -> Path:
    """Where the emulated world of a store is kept: ``<store>.chip.npz``."""
    p = Path(store_path)
    return p.with_name(p.name + STATE_SUFFIX)


def planned_geometry(station_path: str | os.PathLike) -> tuple[int, int, int] | None:
    """The chip geometry ``(n_tiles, rows, cols)`` of an in-process emulated bench
    (``[emulator] start = true``: its profile's), known without starting anything; None for
    a served emulator or a real bench (ask the instrument: ``station.array.geometry``)."""
    from cimlab.instruments.station import load_station_config
    from cimlab.physics.profile import load_profile

    config, _text = load_station_config(station_path)
    if not config.emulator.start:
        return None
    g = load_profile(config.emulator.profile).geometry
    return (int(g.n_tiles), int(g.rows), int(g.cols))


def require_chip_state(station_path: str | os.PathLike, state_path: str | os.PathLike,
                       how_to_fix: str = "re-run cimlab program-net NET.pt ...") -> None:
    """For an in-process emulated bench, the chip a command is to measure lives only in
    ``state_path``: if it is missing the network is not on a fresh emulator's chip, so refuse
    (ConfigError naming the file and ``how_to_fix``) instead of measuring a blank chip. A
    served emulator or a real bench keeps its chip itself: nothing to check."""
    from cimlab.instruments.station import load_station_config

    config, _text = load_station_config(station_path)
    state_path = Path(state_path)
    if not config.emulator.start:
        return
    _refuse_legacy_state(state_path)
    if not state_path.is_file():
        raise ConfigError(state_path, "<file>",
                          f"the emulated chip's state ({state_path.name}): not found. The "
                          f"network is not on this chip (a fresh emulated chip would be "
                          f"measured: blank, accuracy at chance); {how_to_fix}",
                          "no such file")


@contextlib.contextmanager
def open_station(station_path: str | os.PathLike, state_path: str | os.PathLike | None = None,
                 *, require_state: bool = False, how_to_fix: str = "re-run cimlab "
                 "program-net NET.pt ...") -> Iterator[Station]:  # fmt: skip
    """Open a station; for an in-process emulated bench (``[emulator] start = true``) with
    ``state_path``, the emulated world is restored from it (if it exists) and saved back when
    the station closes (:meth:`Station.open(..., emulator_state=...)
    <cimlab.instruments.station.Station.open>`), so a chip programmed by one command is the
    chip the next command measures. ``st.emulator_state`` records the state file, whether it
    was restored, the profile and the seed (None on a real or served bench).

    ``require_state``: the state file must exist (:func:`require_chip_state`). A Ctrl-C that
    arrives while the station closes (outputs off, the emulated world being saved) is held
    back until it is closed and then raised: the saved chip is never lost half-way."""
    from cimlab.instruments.station import Station, load_station_config

    config, _text = load_station_config(station_path)
    if state_path is None or not config.emulator.start:
        st = Station.open(station_path)
    else:
        state_path = Path(state_path)
        if require_state:
            require_chip_state(station_path, state_path, how_to_fix)
        _refuse_legacy_state(state_path)
        st = Station.open(station_path, emulator_state=state_path)
    failed: tuple[Any, Any, Any] = (None, None, None)
    try:
        yield st
    except BaseException as exc:
        failed = (type(exc), exc, exc.__traceback__)
        raise
    finally:
        with interrupt_deferred():
            st.__exit__(*failed)


@contextlib.contextmanager
def interrupt_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) back while the block runs, then raise KeyboardInterrupt
    (only if the block itself ended normally). Main thread only; elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    except (ValueError, OSError):  # pragma: no cover - not settable here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught:
        raise KeyboardInterrupt


#: suffix of the checkpoint being written (before its step is committed in the store)
PENDING_SUFFIX = ".pending"


def pending_path_for(state_path: str | os.PathLike) -> Path:
    """The checkpoint written before a step's store commit: ``<state>.pending``."""
    p = Path(state_path)
    return p.with_name(p.name + PENDING_SUFFIX)


def read_checkpoint_record(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint record stored in a state file (None: none, or not readable)."""
    import json

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            if "checkpoint" not in z.files:
                return None
            rec = json.loads(str(z["checkpoint"]))
    except (OSError, ValueError, KeyError):
        return None
    return rec if isinstance(rec, dict) else None


class EmulatorCheckpoints:
    """The in-process emulated world saved at every committed step of a run, so a killed or
    interrupted run resumes on the chip as it was at its last committed step.

    Two-phase, tied to the store's commit: :meth:`prepare` writes the world with its record
    (run uid, committed step count) to ``<state>.pending``; the caller commits the step in the
    store; :meth:`commit` renames the pending file over the state file. A kill between the
    two leaves a pending file that the next command keeps if the store committed that step,
    else deletes (:func:`cimlab.procedures.run.reconcile_checkpoint`). ``record`` is the
    record of the world the station holds (restored or last committed; None: a fresh chip).
    While ``uncommitted`` (a run is measuring past its last commit), closing the station does
    not overwrite the state file: the chip there is the one of the last committed step.
    Checkpoints are written uncompressed (~0.1 s and ~45 MB for the default 524,288-cell chip,
    where a compressed save takes ~3 s)."""

    def __init__(self, bench: Any, state_path: Path, record: dict[str, Any] | None):
        self.bench = bench
        self.path = Path(state_path)
        self.pending = pending_path_for(state_path)
        self.record = record
        self.uncommitted = False
        self._next: dict[str, Any] | None = None

    def prepare(self, record: dict[str, Any]) -> None:
        """Write the world as it is now, with ``record``, to the pending file."""
        self.bench.save_state(self.pending, compress=False, checkpoint=record)
        self._next = dict(record)

    def bench_bytes(self) -> int:
        """The size of one checkpoint [bytes] (the world's arrays, uncompressed)."""
        import numpy as np

        return int(sum(np.asarray(v).nbytes for v in self.bench.state_dict().values()))

    def commit(self) -> None:
        """The step is committed in the store: the pending world becomes the state."""
        os.replace(self.pending, self.path)
        self.record, self._next = self._next, None


def _refuse_legacy_state(state_path: Path) -> None:
    """A store whose chip older cimlab versions kept in a ``.emulator.pkl`` file: that
    format could run code when read, so it is never read; say so instead of silently
    measuring a fresh chip."""
    if state_path.exists() or not state_path.name.endswith(STATE_SUFFIX):
        return
    legacy = state_path.with_name(state_path.name[: -len(STATE_SUFFIX)] + LEGACY_STATE_SUFFIX)
    if legacy.exists():
        raise ConfigError(legacy, "<file>",
                          f"no legacy emulator state: this format is no longer read (it could "
                          f"run code when loaded). Delete {legacy.name} and program the network "
                          f"again (cimlab program-net ...); the chip is then kept in "
                          f"{state_path.name}")


__all__ = [
    "LEGACY_STATE_SUFFIX",
    "PENDING_SUFFIX",
    "STATE_SUFFIX",
    "EmulatorCheckpoints",
    "interrupt_deferred",
    "open_station",
    "pending_path_for",
    "planned_geometry",
    "read_checkpoint_record",
    "require_chip_state",
    "state_path_for",
]
