"""One characterization plan on many emulated chips, each chip a task with its own station and
store, run by a :mod:`cimlab.parallel` engine (serially, on local workers, or on a cluster).

Chip ``k`` of ``run_plan_on_chips(..., n_chips, seed)`` is the emulated chip with emulator seed
``task_seeds(seed, n_chips)[k]``; its station file (the template with that seed) and its store
are written to ``out_dir/chip-KKK/``. Every run in the store carries the chip's identity in its
metadata (``run.meta["chip"]``: wafer, die, chip id, emulator seed), so stores of several chips
can be fitted together (:mod:`cimlab.models.chip_variation`). A chip's results depend only on
its seed and the plan, never on the engine or on how many chips run at once, and a killed
sweep resumes like one campaign (``run_plan``'s resume) when run again with the same arguments.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import tomli_w

from cimlab.errors import ConfigError
from cimlab.parallel import Engine, SerialEngine, task_seeds

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass(frozen=True)
class ChipIdentity:
    """Where a chip comes from: ``wafer`` and ``die`` labels and a unique ``chip`` id."""

    wafer: str
    die: str
    chip: str

    def __post_init__(self) -> None:
        for name in ("wafer", "die", "chip"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v or "/" in v:
                raise ConfigError(None, name, "a non-empty label without '/'", v)


@dataclass(frozen=True)
class ChipTask:
    """One chip's campaign: paths are absolute so any worker (same file system) can run it."""

    index: int
    emulator_seed: int
    identity: ChipIdentity
    plan_path: str
    station_path: str
    store_path: str


@dataclass(frozen=True)
class ChipSummary:
    """What one chip's campaign did."""

    index: int
    identity: ChipIdentity
    emulator_seed: int
    store_path: str
    runs: tuple[str, ...]
    skipped: tuple[str, ...]
    cell_operations: int
    instrument_time_s: float


def chip_station_text(template: str | Path, emulator_seed: int) -> str:
    """The station file ``template`` with ``[emulator] seed = emulator_seed`` (it must start an
    in-process emulated bench: ``[emulator] start = true``)."""
    path = Path(template)
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(path, "station", "a readable TOML station file", str(exc)) from None
    emu = data.get("emulator")
    if not isinstance(emu, dict) or emu.get("start") is not True:
        raise ConfigError(path, "emulator.start", "true (many chips need the in-process "
                          "emulated bench, one per chip)", None if emu is None else emu.get(
                              "start"))
    if emu.get("state"):
        raise ConfigError(path, "emulator.state", '"" (each chip is a fresh emulated chip)',
                          emu.get("state"))
    emu["seed"] = int(emulator_seed)
    return f"# {path.name} for emulated chip seed {int(emulator_seed)} (cimlab many_chips)\n" \
        + tomli_w.dumps(data)


def run_chip(task: ChipTask) -> ChipSummary:
    """Run the plan on one chip (a task: opens its own station and store, closes both)."""
    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import load_plan
    from cimlab.store import Store

    plan = load_plan(task.plan_path)
    meta = {**asdict(task.identity), "emulator_seed": task.emulator_seed,
            "station": Path(task.station_path).name}
    with Station.open(task.station_path) as st, Store.open(task.store_path, "a") as store:
        result = run_plan(plan, st, store, progress=False)
        for r in result.results:
            store.run(r.run_uid).set_meta("chip", meta)
    return ChipSummary(task.index, task.identity, task.emulator_seed, task.store_path,
                       tuple(r.run_uid for r in result.results), tuple(result.skipped),
                       result.cell_operations, result.instrument_time_s)


def chip_tasks(plan_path: str | Path, station_template: str | Path, out_dir: str | Path,
               n_chips: int, seed: int = 0, wafer: str = "W0") -> list[ChipTask]:
    """The tasks of :func:`run_plan_on_chips`; writes each chip's station file."""
    if int(n_chips) < 1:
        raise ConfigError(None, "chips", "an integer >= 1", n_chips)
    out = Path(out_dir).resolve()
    tasks = []
    for k, s in enumerate(task_seeds(seed, n_chips)):
        s = s % 2**32  # the emulator's seed field: a non-negative integer
        d = out / f"chip-{k:03d}"
        d.mkdir(parents=True, exist_ok=True)
        station = d / "station.toml"
        station.write_text(chip_station_text(station_template, s))
        ident = ChipIdentity(wafer=wafer, die=f"D{k:03d}", chip=f"{wafer}-D{k:03d}")
        tasks.append(ChipTask(k, s, ident, str(Path(plan_path).resolve()), str(station),
                              str(d / "store.h5")))
    return tasks


def run_plan_on_chips(plan_path: str | Path, station_template: str | Path,
                      out_dir: str | Path, n_chips: int, seed: int = 0, *,
                      wafer: str = "W0", engine: Engine | None = None,
                      progress: bool = False) -> list[ChipSummary]:
    """Run the plan at ``plan_path`` on ``n_chips`` emulated chips (module docstring); chip
    summaries in chip order."""
    from cimlab.procedures.plan import load_plan

    load_plan(plan_path)  # a bad plan fails here, before any chip or file
    tasks = chip_tasks(plan_path, station_template, out_dir, n_chips, seed, wafer)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc="chips", unit="chip", disable=None)
    try:
        return (engine or SerialEngine()).map(
            run_chip, tasks, on_result=(lambda _i, _r: bar.update(1)) if bar else None)
    finally:
        if bar is not None:
            bar.close()
