"""``cimlab program-verify``: program a tile with a scheme and report what the cells hold.

Every scheme starts from a deep RESET of the tile; the report gives the verify loop's stopping
rule (the verify read in band: secondary) next to what the cells hold at fixed delays after the
tile is finished (``--hold``, fresh averaged reads through the instruments, issue 13) and every
pulse (calibration sweeps included).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from cimlab.cli._common import (
    DEFAULT_STATION,
    add_output_flags,
    emit,
    positive_float,
    seed_int,
)
from cimlab.cli._runlog import add_log_flags, run_log

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


def _delays(text: str) -> tuple[float, ...]:
    """An argparse type: comma-separated delays [s] >= 0, or 'none'."""
    if text.strip().lower() in ("none", ""):
        return ()
    try:
        vals = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected seconds separated by commas (e.g. 0,60,3600) or 'none', got {text[:40]!r}"
        ) from None
    if any(not (v >= 0 and v != float("inf")) for v in vals):
        raise argparse.ArgumentTypeError(f"expected finite delays >= 0 s, got {text[:40]}")
    return tuple(sorted(set(vals)))


def register(sub: Any) -> None:
    """Add ``program-verify`` to the ``cimlab`` parser."""
    q = sub.add_parser(
        "program-verify",
        help="program a tile to N conductance levels and report what the cells hold at "
        "delays after it is finished, all pulses, energy and time",
        description=(
            "Program every cell of a tile to one of N levels spread over the conductance "
            "window (balanced, shuffled with --seed) with the chosen scheme(s), each from a "
            "deep RESET of the tile, then read the tile (8 reads averaged) at the --hold "
            "delays after it is finished: the fraction of cells within ±tolerance then is "
            "what the cells hold when a network uses them. Also reported: pulses per cell "
            "(every pulse, calibration sweeps included), energy, round trips, instrument, "
            "waiting and host time, and the verify read in band (the loop's stopping rule, "
            "a secondary figure: every pulse restarts relaxation, docs/procedures.md). "
            "Stuck cells (paper 004) cannot be programmed by any scheme; they are detected "
            "and left out of the fractions. The results are saved under --out."
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
        choices=("adaptive", "ispp", "single-shot", "settle", "settle-bake"),
        help="scheme (repeat to compare several on the same tile, each starting from a "
        "deep RESET; default adaptive). settle: adaptive verify, then one day of "
        "room-temperature waiting with checks densest near the end and re-pulses of the "
        "cells that would not hold; settle-bake: the same over ~3 years of room-temperature-"
        "equivalent time in ~5 h, with bakes up to 150 C in the station's oven (each as "
        "cool as its wait allows; --ea-ev). On a real bench these take that long",
    )
    q.add_argument(
        "--hold", type=_delays, default=(0.0, 1.0, 60.0), metavar="SECONDS,...",
        help="delays after the tile is finished at which it is read (8 reads averaged) to "
        "report the fraction of cells within tolerance, e.g. 0,60,3600,86400 (the bench "
        "waits that long; default 0,1,60; 'none': no reads)",
    )
    q.add_argument(
        "--response-model", choices=("tabulated", "parametric"), default="tabulated",
        help="pulse-response model of adaptive and the settles: tabulated (learned from a "
        "measured sweep, monotone, no physical form) or parametric (the fraction-of-the-way "
        "law); default %(default)s",
    )
    q.add_argument(
        "--ea-ev", type=positive_float, default=1.1,
        help="activation energy of relaxation [eV] for settle-bake's bake equivalence: your "
        "fitted model's (cimlab model show MODEL, retention ea_ev); default %(default)s, "
        "the low end of HfOx (DESIGN.md)",
    )
    q.add_argument(
        "--pulse-budget", type=float, default=0.0, metavar="PULSES",
        help="settle schemes: most pulses per cell over the tile, calibration sweep "
        "included (0: no cap; default %(default)s)",
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


def _program_verify(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from cimlab.errors import ConfigError
    from cimlab.instruments.limits import check_limit, check_pulse, check_pulse_extremes
    from cimlab.instruments.station import Station
    from cimlab.params import from_dict
    from cimlab.procedures.delayed_tolerance import format_held, within_tolerance_at
    from cimlab.procedures.plan import LevelSet, ProgrammingErrorExp
    from cimlab.procedures.program_verify import (
        ArrayOps,
        format_report,
        measure_gate_curve,
        program_single_shot,
        program_verify,
    )
    from cimlab.procedures.settle_verify import (
        SettleConfig,
        program_settle_verify,
        tempered_bake_settle,
    )
    from cimlab.procedures.verify_result import pulse_distribution

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
    results: list[Any] = []
    summaries: list[dict[str, Any]] = []
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
            if scheme == "settle-bake":  # the oven's hottest bake, before the first pulse
                if st.oven is None:
                    raise ConfigError(st.path, "instruments.oven", "an oven (or chuck) for "
                                      "--scheme settle-bake", None)
                check_limit(st.limits, "oven_temp_max_c", tempered_bake_settle().bake_temp_c,
                            what="settle-bake's hottest bake [C]",
                            context="program-verify --scheme settle-bake", station=st.path)
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
            elif name.startswith("settle"):
                bake = name == "settle_bake"
                sc = (tempered_bake_settle(args.ea_ev, mean_pulse_budget=args.pulse_budget)
                      if bake else SettleConfig(mean_pulse_budget=args.pulse_budget))
                res = program_settle_verify(ops, cells, target, cfg, sc, clock=st.clock,
                                            oven=st.oven if bake else None, rng=rng,
                                            progress=not args.quiet)
                res.scheme = name
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
            summary = res.summary()
            # every pulse through the instruments (calibration sweeps included)
            summary["pulses_per_cell_all"] = ops.pulses_sent / cells.size
            summary.setdefault("round_trips", ops.round_trips)
            if args.hold:
                held = within_tolerance_at(ops, st.clock, cells, target, cfg.tolerance_siemens,
                                           delays_s=args.hold, mask=~res.detected_stuck())
                summary["held_within_tol_at_s"] = held.measured
            results.append(res)
            summaries.append(summary)
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
        "response_model": args.response_model,
        "hold_delays_s": list(args.hold),
    }
    files = _save_program_verify(args.out, f"tile{args.tile}-seed{args.seed}", settings,
                                 results, summaries)
    text = "\n".join([
        f"tile {args.tile}: {cells.size} cells, {args.levels} levels "
        f"{args.g_min_us:g}-{args.g_max_us:g} µS, tolerance ±{args.tolerance_us:g} µS",
        format_report(summaries), format_held(summaries),
        *(pulse_distribution(r.scheme, r.pulses) for r in results),
        "results: " + ", ".join(str(f) for f in files)])
    emit(args, {**settings, "results": summaries,
                "files": [str(f) for f in files]}, text)
    return 0



def _save_program_verify(out: Path, stem: str, settings: dict[str, Any],
                         results: list[Any], summaries: list[dict[str, Any]]) -> list[Path]:
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
    doc = {**settings, "results": summaries, "arrays": npz.name}
    js = out / f"{stem}.json"
    js.write_text(json.dumps(jsonable(doc), indent=2, allow_nan=False) + "\n")
    return [js, npz]


def _pv_config(args: argparse.Namespace, scheme: str) -> Any:
    """The program-verify configuration of ``scheme`` from the command-line flags."""
    from cimlab.params import from_dict
    from cimlab.procedures.program_verify import ProgramVerifyConfig
    from cimlab.procedures.settle_verify import TEMPERED_BAKE_CALIBRATION_CELLS

    settle = scheme.startswith("settle")
    extra: dict[str, Any] = {"response_model": args.response_model}
    if scheme == "settle-bake":
        extra["calibration_cells"] = TEMPERED_BAKE_CALIBRATION_CELLS
    return from_dict(
        ProgramVerifyConfig,
        {
            "scheme": "adaptive" if settle else scheme.replace("-", "_"),
            "tolerance_siemens": args.tolerance_us * 1e-6,
            "max_pulses": args.max_pulses,
            "n_reads": args.n_reads,
            **extra,
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
