"""Program a trained network onto the chip, resumably, into the store.

:func:`program_network` takes a network, its :class:`~cimlab.sim.placement.NetworkPlacement`
and an open station, and writes one run of kind ``"network_program"``:

==============  ======================================================================
step            what happens (each a committed step: a killed run resumes after the last)
==============  ======================================================================
``placement``   tables ``placement`` (one row per cell: layer, slice, sign, out, row,
                chip tile, tile_row, col, cell, target_s) and ``state`` (the network's
                parameters and buffers: key, index, value), so the store alone rebuilds
                the network
``erase``       one deep RESET of every cell of the logical tiles' regions (one command):
                every weight cell starts from a known state and is freshly programmed
                (a cell that verify would accept untouched keeps an old, already relaxed
                state, which the device model's "programmed at t = 0" does not describe),
                and the cells that hold no weight are parked at the bottom of the window
                (table ``parked``: cell, g_s)
``verify``      program-verify of ALL network cells at once
                (:func:`cimlab.procedures.program_verify.program_verify`: one pulse command
                and one read command per iteration); table ``programmed``: cell, level
                (layer index), target_s, g_s (last verify read), pulses, energy_j,
                success, stuck, mode ("verify"), time_s (0: at the end of programming)
``readback``    one read of every cell (table ``readback``: cell, target_s, g_s, time_s)
==============  ======================================================================

Run meta: ``placement`` (the record without the per-cell arrays), ``network`` (name and
kwargs to rebuild it), ``program_verify`` (the summary figures), ``program_end_s`` (station
clock at the end of programming). A resumed ``verify`` step re-runs program-verify on every
cell: cells still inside the band pass at the first read, so it only costs one read.

Emulated chips between commands: the chip's state lives in the emulator process. With a
station file whose ``[emulator] start = true`` each command starts a fresh emulator, so
:func:`open_station` opens the station with an emulator state file next to the store
(:func:`state_path_for`: ``<store>.chip.npz``, see
:meth:`cimlab.instruments.station.Station.open`): the emulated world (chip with all its hidden
state, virtual clock, oven, routing) is restored from it when it exists and written back when
the station closes. It is a plain compressed NumPy archive (no code runs on load; layout in
docs/physics.md, "State files"). Alternatively run ``cimlab emulator serve`` and use a station
file with ``start = false``: the chip then lives in that process. See docs/network-on-chip.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.sim.placement import NetworkPlacement

RUN_KIND = "network_program"
#: suffix of the emulator state file next to a store
STATE_SUFFIX = ".chip.npz"
#: suffix of the emulator state older cimlab versions wrote (an unsafe format: never read)
LEGACY_STATE_SUFFIX = ".emulator.pkl"


# --------------------------------------------------------------------------- results
@dataclass
class NetworkProgramResult:
    """What :func:`program_network` did."""

    run_uid: str
    placement: NetworkPlacement
    summary: dict[str, Any]
    g_verify_s: np.ndarray
    g_readback_s: np.ndarray
    pulses: np.ndarray
    success: np.ndarray
    stuck: np.ndarray
    program_end_s: float
    resumed_steps: list[str] = field(default_factory=list)

    def table(self) -> str:
        s = self.summary
        rows = [
            ("network cells", f"{s['cells']}"),
            ("chip tiles used", f"{s['chip_tiles']}"),
            ("success within +-1 uS [%]", f"{100 * s['success_rate']:.3f}"),
            ("stuck cells detected", f"{s['stuck_detected']}"),
            ("pulses/cell mean", f"{s['pulses_mean']:.2f}"),
            ("energy total [uJ]", f"{1e6 * s['energy_total_j']:.3f}"),
            ("  + erase pulse [uJ]", f"{1e6 * s.get('erase_energy_j', 0.0):.3f}"),
            ("energy/cell [pJ]", f"{1e12 * s['energy_per_cell_j']:.2f}"),
            ("round trips", f"{s['round_trips']}"),
            ("instrument time [s]", f"{s['instrument_time_s']:.3f}"),
            ("host time [s]", f"{s['host_time_s']:.2f}"),
            ("read-back within +-1 uS [%]", f"{100 * s['readback_within_tol']:.2f}"),
        ]
        return "\n".join(f"{a:30s} {b:>12s}" for a, b in rows)


# --------------------------------------------------------------------------- network <-> table
def state_table(net: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and floating buffer of ``net`` as (key, index, value) rows."""
    keys, idx, vals = [], [], []
    for k, v in net.state_dict().items():
        if not torch.is_floating_point(v):
            continue
        flat = v.detach().double().reshape(-1).numpy()
        keys.append(np.full(flat.size, k, dtype=object))
        idx.append(np.arange(flat.size, dtype=np.int64))
        vals.append(flat)
    return {"key": np.concatenate(keys), "index": np.concatenate(idx),
            "value": np.concatenate(vals)}


def load_state_table(net: nn.Module, df: Any, source: str = "<store>") -> None:
    """Write a :func:`state_table` (DataFrame) back into ``net`` (shapes checked)."""
    sd = net.state_dict()
    keys = df["key"].astype(str).to_numpy()
    vals = df["value"].to_numpy(dtype=np.float64)
    idx = df["index"].to_numpy(dtype=np.int64)
    for k in np.unique(keys):
        if k not in sd:
            raise ConfigError(source, f"state.{k}", "a parameter of the stored network", k)
        m = keys == k
        t = sd[k]
        if int(m.sum()) != t.numel():
            raise ConfigError(source, f"state.{k}", f"{t.numel()} values", int(m.sum()))
        flat = np.empty(t.numel())
        flat[idx[m]] = vals[m]
        t.copy_(torch.from_numpy(flat).reshape(t.shape).to(t.dtype))


def net_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- programming
def program_network(
    station: Any,
    net: nn.Module,
    placement: NetworkPlacement,
    store: Any,
    *,
    pv_config: Any = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> NetworkProgramResult:
    """Program ``net`` (placed by ``placement``) onto ``station``'s chip, into ``store``: one
    resumable run of kind ``"network_program"`` whose committed steps are ``placement``
    (placement and network state tables), ``erase`` (deep RESET of the regions), ``verify``
    (program-verify of all network cells) and ``readback``. ``pv_config``: a
    :class:`~cimlab.procedures.program_verify.ProgramVerifyConfig` (default: adaptive,
    +-1 uS). Limits are checked before the first pulse (the station raises LimitError)."""
    from cimlab.params import to_dict
    from cimlab.procedures.program_verify import ProgramVerifyConfig, program_verify

    cfg = pv_config or ProgramVerifyConfig()
    check_program(station, placement, cfg)
    spec = getattr(net, "spec", None)
    plan = {
        "network": spec, "network_sha256": net_digest(net), "placement": placement.to_meta(),
        "program_verify": to_dict(cfg),
    }
    cells = placement.all_cells()
    targets = placement.all_targets()
    run = store.begin_run(RUN_KIND, plan, snapshot=station.snapshot(),
                          seeds={"program_verify": int(seed)}, resume=resume)
    done = set(run.completed_steps)
    resumed = sorted(done)
    try:
        if "placement" not in done:
            run.append("placement", placement.table())
            run.append("state", state_table(net))
            run.set_meta("placement", placement.to_meta())
            run.set_meta("network", spec)
            if extra_meta:
                for k, v in extra_meta.items():
                    run.set_meta(k, v)
            run.complete_step("placement")
        if "erase" not in done:
            t0 = station.clock.now()
            parked = placement.unused_cells()
            region = np.concatenate([cells, parked])
            e = np.asarray(station.array.pulse(region, "reset", cfg.v_reset_max,
                                               cfg.v_gate_reset, cfg.width_s), dtype=float)
            run.set_meta("erase", {"cells": int(region.size),
                                   "energy_network_cells_j": float(e[:cells.size].sum()),
                                   "energy_total_j": float(e.sum())})
            if parked.size:
                g_p = np.asarray(station.array.read(parked), dtype=float)
                run.append("parked", {"cell": parked.astype(np.int64), "g_s": g_p})
            run.add_instrument_time(station.clock.now() - t0)
            run.complete_step("erase")
        if "verify" not in done:
            rng = np.random.default_rng(int(run.seeds.get("program_verify", seed)))
            res = program_verify(station.array, cells, targets, cfg, clock=station.clock,
                                 rng=rng, progress=progress)
            summ = res.summary()
            run.append("programmed", {
                "cell": cells.astype(np.int64), "level": _layer_index(placement),
                "target_s": targets, "g_s": res.g_verify_s, "pulses": res.pulses,
                "energy_j": res.energy_j, "success": res.success.astype(np.int64),
                "stuck": res.stuck.astype(np.int64), "mode": "verify", "time_s": 0.0})
            run.add_instrument_time(res.instrument_time_s)
            run.set_meta("program_verify", summ)
            run.set_meta("program_end_s", float(station.clock.now()))
            run.complete_step("verify")
        if "readback" not in done:
            t_end = float(run.meta.get("program_end_s", station.clock.now()))
            g_rb = np.asarray(station.array.read(cells), dtype=float)
            run.append("readback", {"cell": cells.astype(np.int64), "target_s": targets,
                                    "g_s": g_rb, "time_s": station.clock.now() - t_end})
            run.complete_step("readback")
        prog = run.table("programmed")
        summ = dict(run.meta["program_verify"])
        g_rb = run.table("readback")["g_s"].to_numpy(dtype=float)
        summ["readback_within_tol"] = float(np.mean(np.abs(g_rb - targets) <= cfg.tolerance_s))
        summ["chip_tiles"] = len(placement.used_tiles())
        summ["erase_energy_j"] = float(run.meta.get("erase", {}).get("energy_network_cells_j",
                                                                     0.0))
        run.set_meta("program_verify", summ)
        run.finish("completed")
    except BaseException:
        if run.status == "running":
            run.finish("aborted")
        raise
    return NetworkProgramResult(
        run_uid=run.uid, placement=placement, summary=summ,
        g_verify_s=prog["g_s"].to_numpy(dtype=float), g_readback_s=g_rb,
        pulses=prog["pulses"].to_numpy(), success=prog["success"].to_numpy().astype(bool),
        stuck=prog["stuck"].to_numpy().astype(bool),
        program_end_s=float(run.meta["program_end_s"]), resumed_steps=resumed)


def _layer_index(placement: NetworkPlacement) -> np.ndarray:
    return np.concatenate([np.full(lp.cells.size, i, dtype=np.int64)
                           for i, lp in enumerate(placement.layers.values())])


def check_program(station: Any, placement: NetworkPlacement, pv_config: Any = None) -> None:
    """What :func:`program_network` checks before it writes or sends anything: the
    placement was made for ``station``'s chip, and program-verify's extreme voltages lie
    within the station's limits (ConfigError / LimitError)."""
    from cimlab.procedures.program_verify import ProgramVerifyConfig

    geometry = tuple(int(g) for g in station.array.geometry)
    if geometry != tuple(placement.geometry):
        raise ConfigError(None, "placement.geometry", f"the station's chip {geometry}",
                          tuple(placement.geometry))
    check_limits(station.limits, station.path, pv_config or ProgramVerifyConfig())


def check_limits(lim: Any, station_path: Any, cfg: Any) -> None:
    """Program-verify's (``cfg``) extreme voltages against a station's limits ``lim``
    (:class:`~cimlab.instruments.station.StationLimits`), before any pulse: LimitError."""
    from cimlab.errors import LimitError

    checks = [("SET bit-line amplitude", cfg.max_v_set(), "set_bl_max_v"),
              ("RESET source-line amplitude", cfg.max_v_reset(), "reset_sl_max_v"),
              ("SET word-line voltage", cfg.max_v_gate_set(), "set_wl_max_v"),
              ("RESET word-line voltage", cfg.v_gate_reset, "reset_wl_max_v"),
              ("pulse width", cfg.width_s, "pulse_width_max_s")]
    for what, v, key in checks:
        if v > getattr(lim, key):
            raise LimitError(f"{what} {v:g} exceeds station limit {key} = "
                             f"{getattr(lim, key):g} ({station_path}); nothing was sent")


# --------------------------------------------------------------------------- reading back
@dataclass
class StoredNetwork:
    """A programmed network as recorded in the store."""

    run_uid: str
    net: nn.Module
    placement: NetworkPlacement
    meta: dict[str, Any]
    readback_s: np.ndarray


def load_programmed(store: Any, run: str | None = None) -> StoredNetwork:
    """The network (digital parts as trained), placement and read-back of the newest
    completed ``network_program`` run (or ``run``, a uid or prefix) of ``store``."""
    from cimlab.sim.nets import rebuild

    src = str(getattr(store, "path", "<store>"))
    if run is None:
        runs = [r for r in store if r.kind == RUN_KIND and r.status == "completed"]
        if not runs:
            raise ConfigError(src, "runs", "a completed network_program run (program the "
                              "network first: cimlab program-net NET.pt --station ... --out "
                              f"{src})", "none")  # fmt: skip
        r = sorted(runs, key=lambda x: x.started_unix)[-1]
    else:
        r = store.run(run)
    meta = r.meta
    spec = meta.get("network")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(src, f"runs/{r.uid}@network", "the network spec (name, kwargs)", spec)
    net = rebuild(spec)
    net.eval()
    load_state_table(net, r.table("state"), src)
    placement = NetworkPlacement.from_meta(meta["placement"], r.table("placement"), src)
    rb = r.table("readback")["g_s"].to_numpy(dtype=float)
    return StoredNetwork(r.uid, net, placement, meta, rb)


def apply_bn_calibration(store: Any, net: nn.Module, after_unix: float = 0.0) -> str | None:
    """Install the newest completed ``bn_calibration`` run's statistics (newer than
    ``after_unix``) into ``net``'s BN layers; returns its uid (None if there is none)."""
    runs = [r for r in store if r.kind == "bn_calibration" and r.status == "completed"
            and r.started_unix >= after_unix]
    if not runs:
        return None
    r = sorted(runs, key=lambda x: x.started_unix)[-1]
    df = r.table("bn_stats")
    mods = dict(net.named_modules())
    for name, g in df.groupby(df["layer"].astype(str)):
        bn = mods.get(name, mods.get(name.removeprefix("net.")))
        if bn is None:
            raise ConfigError(getattr(store, "path", "<store>"), f"runs/{r.uid}/bn_stats.layer",
                              "a BN layer of the stored network", name)
        order = np.argsort(g["channel"].to_numpy())
        bn.running_mean.copy_(torch.from_numpy(g["running_mean"].to_numpy()[order]))
        bn.running_var.copy_(torch.from_numpy(g["running_var"].to_numpy()[order]))
    return r.uid


def record_bn_calibration(store: Any, network_run: str, report: Any, *, data: str = "",
                          snapshot: dict | None = None, clock_s: float | None = None,
                          emulator: dict | None = None) -> str:
    """Write a :class:`~cimlab.mitigation.bn_calibration.BNCalibrationReport` as a
    ``bn_calibration`` run (table ``bn_stats``: layer, channel, running_mean, running_var,
    before_mean, before_var; layer names relative to the network). Returns its uid."""
    run = store.begin_run("bn_calibration",
                          {"network_run": network_run, "data": data,
                           "samples": int(report.n_samples), "time_s": clock_s},
                          snapshot=snapshot or {}, resume=False)
    cols: dict[str, list] = {k: [] for k in ("layer", "channel", "running_mean", "running_var",
                                              "before_mean", "before_var")}
    for b, a in zip(report.before, report.after, strict=True):
        c = a.running_mean.numel()
        cols["layer"] += [a.name.removeprefix("net.")] * c
        cols["channel"] += list(range(c))
        cols["running_mean"] += a.running_mean.double().tolist()
        cols["running_var"] += a.running_var.double().tolist()
        cols["before_mean"] += b.running_mean.double().tolist()
        cols["before_var"] += b.running_var.double().tolist()
    run.append("bn_stats", {k: (np.array(v, dtype=object) if k == "layer" else np.asarray(v))
                            for k, v in cols.items()})
    run.set_meta("shift", report.shift)
    run.set_meta("emulator", emulator)
    run.finish("completed")
    return run.uid


# --------------------------------------------------------------------------- emulator state
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
                 "program-net NET.pt ...") -> Iterator[Any]:  # fmt: skip
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


__all__ = ["RUN_KIND", "STATE_SUFFIX", "NetworkProgramResult", "StoredNetwork",
           "apply_bn_calibration", "check_limits", "check_program", "interrupt_deferred",
           "load_programmed", "load_state_table", "open_station", "planned_geometry",
           "program_network", "record_bn_calibration", "require_chip_state", "state_path_for",
           "state_table"]
