"""``cimlab characterize`` and ``cimlab program-verify``: characterization campaigns.

Heavy imports (numpy, h5py, pymeasure) happen inside the handlers; torch is never imported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from cimlab.cli._common import DEFAULT_STATION, add_output_flags, emit, seed_int
from cimlab.cli._runlog import add_log_flags, default_log_path, run_log

#: program-verify parameters set from the command line: field -> (flag, SI -> flag unit, unit).
_PV_FLAGS: dict[str, tuple[str, float, str]] = {
    "levels": ("--levels", 1.0, ""),
    "g_min_siemens": ("--g-min-us", 1e6, "uS"),
    "g_max_siemens": ("--g-max-us", 1e6, "uS"),
    "tolerance_siemens": ("--tolerance-us", 1e6, "uS"),
    "max_pulses": ("--max-pulses", 1.0, ""),
    "n_reads": ("--n-reads", 1.0, ""),
}
_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def register(sub: Any) -> None:
    """Add the campaign sub-commands to the ``cimlab`` parser."""
    p = sub.add_parser(
        "characterize",
        help="run a characterization plan (programming error, read fluctuation, relaxation, "
        "bake retention, BER, fault map, endurance) into an HDF5 store",
        description=(
            "Run the experiments of a plan file (e.g. plans/quick.toml) on a station and "
            "write their tidy tables into an HDF5 store. The plan is checked completely before "
            "the first pulse (unknown keys, out-of-range values, cells beyond the chip, values "
            "beyond the station's limits): a bad plan writes nothing. Re-running the same "
            "command after an interruption resumes it: completed experiments are skipped and "
            "an unfinished one continues at its first incomplete step. On an emulated bench "
            "the chip is kept next to the store (STORE.chip.npz, saved at every committed "
            "step), so a resumed run continues on the same chip and equals an uninterrupted "
            "one; a resume on another chip is refused."
        ),
    )
    p.add_argument("plan", help="plan TOML file (see docs/procedures.md)")
    p.add_argument(
        "--station", default=DEFAULT_STATION, help="station TOML file (default: %(default)s)"
    )
    p.add_argument(
        "--out",
        default=None,
        help="HDF5 store to write (default: data/<plan name>.h5); created if missing",
    )
    p.add_argument(
        "--only",
        action="append",
        metavar="NAME",
        help="run only the experiment with this name (repeatable)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="validate the plan against the station and exit (nothing is sent)",
    )
    add_output_flags(p)
    add_log_flags(p, "STORE.log next to the store")
    g = p.add_argument_group(
        "chip identity and many chips (docs/scale-out.md)",
        "--wafer/--die/--chip-id land in every run's metadata (run.meta['chip']). --chips N "
        "runs the plan on N emulated chips (emulator seeds spawned from --chip-seed), each "
        "with its own station file and store under --out (a folder, default data/<plan "
        "name>-chips), on --workers local processes or the Dask cluster at --cluster.")
    g.add_argument("--wafer", default=None, help="wafer label of the chip")
    g.add_argument("--die", default=None, help="die label of the chip")
    g.add_argument("--chip-id", default=None, help="unique chip label")
    g.add_argument("--chips", type=int, default=1, help="emulated chips (default: 1)")
    g.add_argument("--chip-seed", type=int, default=0,
                   help="seed the chips' emulator seeds are spawned from (default: 0)")
    g.add_argument("--workers", type=int, default=1,
                   help="local worker processes for --chips (default: 1)")
    g.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="Dask scheduler address for --chips, e.g. tcp://10.0.0.5:8786")
    p.set_defaults(func=_characterize)

    q = sub.add_parser(
        "program-verify",
        help="program a tile to N conductance levels with program-verify and report pulses, "
        "success rate, error, energy and time",
        description=(
            "Program every cell of a tile to one of N levels spread over the conductance "
            "window (balanced, shuffled with --seed) with the chosen scheme, and print the "
            "report table: success rate within ±tolerance, pulses per cell (mean, median, p99, "
            "max), verify and final-read error, energy, iterations, round trips, instrument and "
            "host time. Stuck cells (paper 004) cannot be programmed by any scheme; they are "
            "detected and reported apart. The results are saved under --out."
        ),
    )
    q.add_argument(
        "--station", default=DEFAULT_STATION, help="station TOML file (default: %(default)s)"
    )
    q.add_argument("--tile", type=int, default=0, help="tile to program (default: %(default)s)")
    q.add_argument(
        "--levels", type=int, default=16, help="number of conductance levels (default: %(default)s)"
    )
    q.add_argument(
        "--scheme",
        action="append",
        choices=("adaptive", "ispp", "single-shot"),
        help="scheme (repeat to compare several on the same tile, each starting "
        "from a deep RESET; default adaptive)",
    )
    q.add_argument(
        "--g-min-us", type=float, default=2.0, help="lowest level [µS] (default: %(default)s)"
    )
    q.add_argument(
        "--g-max-us", type=float, default=40.0, help="highest level [µS] (default: %(default)s)"
    )
    q.add_argument(
        "--tolerance-us", type=float, default=1.0, help="accept band ± [µS] (default: %(default)s)"
    )
    q.add_argument(
        "--max-pulses", type=int, default=40, help="pulse cap per cell (default: %(default)s)"
    )
    q.add_argument(
        "--n-reads",
        type=int,
        default=1,
        help="verify reads averaged per iteration (default: %(default)s)",
    )
    q.add_argument(
        "--seed", type=seed_int, default=0,
        help="seed of the level assignment (default: %(default)s)"
    )
    q.add_argument(
        "--out", type=Path, default=Path("results") / "program-verify", metavar="DIR",
        help="folder for the results: tile<T>-seed<S>.json (settings and figures per scheme) "
        "and .npz (per cell: target, verify and final reads, pulses, energy, success, stuck) "
        "(default: %(default)s)",
    )
    add_output_flags(q)
    add_log_flags(q, "OUT/tile<T>-seed<S>.log next to the results")
    q.set_defaults(func=_program_verify)


def _characterize(args: argparse.Namespace) -> int:
    from cimlab.instruments.session import open_station, state_path_for
    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan, validate
    from cimlab.procedures.plan import load_plan
    from cimlab.procedures.run import reconcile_checkpoint

    plan = load_plan(args.plan)  # ConfigError before any instrument is touched
    if args.chips != 1 or args.cluster:
        return _many_chips(args, plan.header.name)
    out = Path(args.out) if args.out else Path("data") / f"{plan.header.name}.h5"
    if args.check:
        with Station.open(args.station) as st:
            cells = validate(plan, st)
        n_cells = sum(c.size for c in cells)
        emit(args, {"plan": str(args.plan), "experiments": len(plan.experiments),
                    "cell_selections": int(n_cells), "station": str(args.station),
                    "ok": True},
             f"{args.plan}: {len(plan.experiments)} experiments, {n_cells} cell "
             f"selections, within the chip and the limits of {args.station}")
        return 0
    # an in-process emulated chip lives next to the store (<store>.chip.npz), saved at every
    # committed step: a re-run after a kill or Ctrl-C resumes on the same chip
    state = state_path_for(out)
    fresh = not out.exists() and not state.exists()
    reconcile_checkpoint(state, out)
    try:
        with run_log(args, default_log_path(out), keep_if=out), \
                open_station(args.station, state) as st:
            result = run_plan(plan, st, out, progress=not args.quiet, only=args.only)
    except BaseException:
        if fresh and not out.exists():  # a plan refused before the store: nothing written
            state.unlink(missing_ok=True)
        raise
    identity = {k: v for k, v in (("wafer", args.wafer), ("die", args.die),
                                  ("chip", args.chip_id)) if v is not None}
    if identity:
        from cimlab.store import Store

        with Store.open(out, "a") as store:
            for r in result.results:
                store.run(r.run_uid).set_meta("chip", identity)
    emit(args, {"plan": str(args.plan), "store": str(out),
                "experiments": [dataclasses.asdict(r) for r in result.results],
                "skipped": list(result.skipped), "host_time_s": result.host_time_s,
                "instrument_time_s": result.instrument_time_s,
                "recorded_instrument_time_s": result.recorded_instrument_time_s,
                "recorded_instrument_s": result.recorded_instrument_s,
                "round_trips": result.round_trips,
                "cell_operations": result.cell_operations},
         f"{result.table()}\nstore: {out}")
    return 0


def _many_chips(args: argparse.Namespace, plan_name: str) -> int:
    from cimlab.errors import ConfigError
    from cimlab.parallel import engine_for
    from cimlab.procedures.many_chips import run_plan_on_chips

    if args.check or args.only:
        raise ConfigError(None, "--chips", "no --check/--only with several chips", args.chips)
    if args.log is not None:
        raise ConfigError("command line", "--log", "no --log with several chips (each chip "
                          "runs in its own worker; see docs/scale-out.md)", str(args.log))
    out = Path(args.out) if args.out else Path("data") / f"{plan_name}-chips"
    with engine_for(args.workers, args.cluster) as engine:
        chips = run_plan_on_chips(args.plan, args.station, out, args.chips, args.chip_seed,
                                  wafer=args.wafer or "W0", engine=engine,
                                  progress=not args.quiet)
    print(f"{'chip':12s} {'emulator seed':>14s} {'runs':>5s} {'cell ops':>10s}  store")
    for c in chips:
        print(f"{c.identity.chip:12s} {c.emulator_seed:14d} {len(c.runs):5d} "
              f"{c.cell_operations:10d}  {c.store_path}")
    print(f"{len(chips)} chips on {engine.description}; stores under {out}")
    return 0


def _program_verify(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from cimlab.errors import ConfigError
    from cimlab.instruments.limits import check_pulse, check_pulse_extremes
    from cimlab.instruments.station import Station
    from cimlab.params import from_dict
    from cimlab.procedures.plan import LevelSet, ProgrammingErrorExp
    from cimlab.procedures.program_verify import (
        ArrayOps,
        format_report,
        measure_gate_curve,
        program_single_shot,
        program_verify,
    )

    schemes = args.scheme or ["adaptive"]
    try:
        levels = from_dict(
            LevelSet,
            {"levels": args.levels, "g_min_siemens": args.g_min_us * 1e-6,
             "g_max_siemens": args.g_max_us * 1e-6},
            source="command line",
        )
        for scheme in schemes:  # every configuration checked before the station opens
            _pv_config(args, scheme)
    except ConfigError as exc:
        raise _in_flag_terms(exc, args) from None
    results = []
    with run_log(args, Path(args.out) / f"tile{args.tile}-seed{args.seed}.log"), \
            Station.open(args.station) as st:
        n_tiles, rows, cols = st.array.geometry
        if not 0 <= args.tile < n_tiles:
            raise ConfigError("command line", "--tile", f"a tile in 0..{n_tiles - 1}", args.tile)
        cells = np.arange(args.tile * rows * cols, (args.tile + 1) * rows * cols, dtype=np.uint32)
        for scheme in schemes:  # every scheme's whole pulse schedule, before the first pulse
            check_pulse_extremes(st.limits, _pv_config(args, scheme),
                                 calibration=st.calibration.transistor,
                                 context=f"program-verify --scheme {scheme}", station=st.path)
            if scheme == "single-shot":  # its pulses are the plan defaults' (below)
                pe = ProgrammingErrorExp()
                check_pulse(st.limits, "set", pe.v_set, pe.v_gate_max, pe.width_s,
                            calibration=st.calibration.transistor,
                            context="program-verify --scheme single-shot", station=st.path)
                check_pulse(st.limits, "reset", pe.v_reset, pe.v_gate_reset, pe.width_s,
                            context="program-verify --scheme single-shot", station=st.path)
        target = levels.targets()[levels.assign(cells.size, args.seed)]
        rng = np.random.default_rng(args.seed)
        for scheme in schemes:
            name = scheme.replace("-", "_")
            cfg = _pv_config(args, scheme)
            ops = ArrayOps(st.array)
            # same starting point for every scheme: one deep RESET of the tile (not counted)
            st.array.pulse(cells, "reset", cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
            if name == "single_shot":
                t0 = st.clock.now()
                th0 = time.perf_counter()
                pe = ProgrammingErrorExp()  # the plan defaults of the single-shot procedure
                sub = np.sort(rng.choice(cells, min(pe.calibration_cells, cells.size),
                                         replace=False))
                curve = measure_gate_curve(
                    ops,
                    sub,
                    np.linspace(pe.v_gate_min, pe.v_gate_max, pe.calibration_points),
                    v_set=pe.v_set,
                    v_reset=pe.v_reset,
                    v_gate_reset=pe.v_gate_reset,
                    width_s=pe.width_s,
                )
                res = program_single_shot(
                    ops,
                    cells,
                    target,
                    curve,
                    v_set=pe.v_set,
                    v_reset=pe.v_reset,
                    v_gate_reset=pe.v_gate_reset,
                    width_s=pe.width_s,
                    clock=st.clock,
                    tolerance_siemens=cfg.tolerance_siemens,
                )
                res.calibration_round_trips = ops.round_trips - res.round_trips
                res.round_trips = ops.round_trips  # the gate curve included, as for adaptive
                res.instrument_time_s = st.clock.now() - t0
                res.host_time_s = time.perf_counter() - th0
                res.g_final_siemens = ops.read(cells)
            else:
                res = program_verify(
                    ops,
                    cells,
                    target,
                    cfg,
                    clock=st.clock,
                    rng=rng,
                    progress=not args.quiet,
                    final_read=True,
                )
            results.append(res)
    settings = {
        "station": str(args.station),
        "tile": args.tile,
        "cells": int(cells.size),
        "levels": args.levels,
        "g_min_siemens": args.g_min_us * 1e-6,
        "g_max_siemens": args.g_max_us * 1e-6,
        "tolerance_siemens": args.tolerance_us * 1e-6,
        "max_pulses": args.max_pulses,
        "n_reads": args.n_reads,
        "seed": args.seed,
        "schemes": schemes,
    }
    files = _save_program_verify(args.out, f"tile{args.tile}-seed{args.seed}", settings,
                                 results)
    text = "\n".join([
        f"tile {args.tile}: {cells.size} cells, {args.levels} levels "
        f"{args.g_min_us:g}-{args.g_max_us:g} µS, tolerance ±{args.tolerance_us:g} µS",
        format_report(results), *(r.pulse_distribution() for r in results),
        "results: " + ", ".join(str(f) for f in files)])
    emit(args, {**settings, "results": [r.summary() for r in results],
                "files": [str(f) for f in files]}, text)
    return 0


def _save_program_verify(out: Path, stem: str, settings: dict[str, Any],
                         results: list[Any]) -> list[Path]:
    """Write a program-verify run: ``OUT/STEM.json`` (settings and each scheme's summary
    figures, SI units) and ``OUT/STEM.npz`` (each scheme's per-cell arrays, named
    ``<scheme>__<field>``). Returns the two paths."""
    import numpy as np

    from cimlab.cli._common import jsonable

    out.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {}
    for r in results:
        for f in dataclasses.fields(r):
            value = getattr(r, f.name)
            if isinstance(value, np.ndarray):
                arrays[f"{r.scheme}__{f.name}"] = value
    npz = out / f"{stem}.npz"
    np.savez_compressed(npz, **arrays)
    doc = {**settings, "results": [r.summary() for r in results], "arrays": npz.name}
    js = out / f"{stem}.json"
    js.write_text(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    return [js, npz]


def _pv_config(args: argparse.Namespace, scheme: str) -> Any:
    """The program-verify configuration of ``scheme`` from the command-line flags."""
    from cimlab.params import from_dict
    from cimlab.procedures.program_verify import ProgramVerifyConfig

    return from_dict(
        ProgramVerifyConfig,
        {
            "scheme": scheme.replace("-", "_"),
            "tolerance_siemens": args.tolerance_us * 1e-6,
            "max_pulses": args.max_pulses,
            "n_reads": args.n_reads,
        },
        source="command line",
    )


def _in_flag_terms(exc: Any, args: argparse.Namespace) -> Any:
    """A ConfigError about a parameter set from a flag, restated with the flag's name, unit
    and the value the user typed (``--g-max-us 4000``, not ``g_max_siemens = 0.004``)."""
    from cimlab.errors import ConfigError

    field = exc.field.rsplit(".", 1)[-1]
    if field not in _PV_FLAGS:
        return exc
    flag, scale, unit = _PV_FLAGS[field]
    expected = exc.expected
    if unit == "uS":  # conductances in the text [S] -> [uS]
        def us(m: re.Match) -> str:
            return f"{float(m.group(0)) * scale:g}"

        expected = re.sub(rf"(?<=[\[(, =])({_NUM})(?=[\])]? S\b|, )", us, expected)
        expected = re.sub(r"(?<=[\d\]]) S\b", f" {unit}", expected)
    for name, (other, _, _) in _PV_FLAGS.items():
        expected = re.sub(rf"\b{name}\b", other, expected)
    got = getattr(args, flag.lstrip("-").replace("-", "_"))
    return ConfigError("command line", flag, expected, got)
