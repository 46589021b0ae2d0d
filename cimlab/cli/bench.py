"""``cimlab emulator serve`` and ``cimlab station check``: the bench commands.

Heavy imports (NumPy, PyVISA, PyMeasure, the physics) happen inside the handlers; torch is
never imported.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import Any

from cimlab.cli._common import DEFAULT_STATION, add_output_flags, emit, seed_int, usage


def register(sub: Any) -> None:
    """Add ``emulator`` and ``station`` to the ``cimlab`` command."""
    emu = sub.add_parser(
        "emulator",
        help="run the emulated bench as its own process",
        description="The emulated bench: SCPI instruments (array controller, Keithley 2450 SMU, "
        "oven, virtual clock) on 127.0.0.1, reached through PyVISA like LAN instruments.",
    )
    emu_sub = emu.add_subparsers(dest="emulator_command", metavar="COMMAND")
    serve = emu_sub.add_parser(
        "serve",
        help="serve the emulated instruments on the station file's ports until Ctrl-C",
        description="Serve the emulated instruments on the fixed ports of the station file's "
        "[emulator] section (profile, seed, host, ports). Scripts then open a station file "
        "whose instruments have address = \"emulator\" and [emulator] start = false, or "
        "the printed VISA addresses directly. Ctrl-C stops.",
    )
    serve.add_argument("--station", default=DEFAULT_STATION, metavar="FILE",
                       help=f"station file with an [emulator] section (default {DEFAULT_STATION})")
    serve.add_argument("--seed", type=seed_int, default=None,
                       help="override the station file's emulator seed")
    serve.add_argument("--profile", default=None,
                       help="override the station file's chip profile (name or TOML path)")
    serve.add_argument("--state", default=None, metavar="FILE.npz",
                       help="emulated-bench state file: restored at start if it exists (the "
                       "chip continues where it was), written on Ctrl-C")
    serve.set_defaults(func=_serve)
    emu.set_defaults(func=usage(emu))

    st = sub.add_parser(
        "station",
        help="check a station file and its instruments",
        description="Station files: which instrument is at which VISA address, safety limits, "
        "clock.",
    )
    st_sub = st.add_subparsers(dest="station_command", metavar="COMMAND")
    check = st_sub.add_parser(
        "check",
        help="open every instrument, print IDN, limits, clock and geometry",
        description="Validate FILE strictly, open every instrument through PyVISA, print its "
        "*IDN?, the station limits, the clock and the chip geometry, then switch every output "
        "off. Exit status 1 (with the file, field and expected value) if anything is wrong.",
    )
    check.add_argument("file", nargs="?", default=None,
                       help=f"station file or bundled station name (default {DEFAULT_STATION})")
    check.add_argument("--station", default=None, metavar="FILE|NAME",
                       help="the same as FILE (as the other commands spell it)")
    add_output_flags(check, quiet=False)
    check.set_defaults(func=_check)
    st.set_defaults(func=usage(st))


def _serve(args: argparse.Namespace) -> int:
    from cimlab.instruments.emulator import EmulatedBench
    from cimlab.instruments.station import load_station_config
    from cimlab.params import to_dict

    config, _ = load_station_config(args.station)
    emu = config.emulator
    if emu.allow_remote:
        print(f"cimlab: warning: serving on {emu.host} (allow_remote = true): any machine that "
              "reaches it can drive the emulated bench, without authentication",
              file=sys.stderr)
    profile = args.profile or emu.profile
    seed = emu.seed if args.seed is None else args.seed
    ports = to_dict(emu.ports)
    state = Path(args.state) if args.state else None
    try:
        if state is not None and state.exists():
            bench = EmulatedBench.from_state(state, ports=ports, host=emu.host).start()
            profile, seed = bench.profile_label, bench.seed
        else:
            bench = EmulatedBench(profile, seed, ports=ports, host=emu.host).start()
    except OSError as exc:
        print(f"cimlab: error: cannot listen on {emu.host} ports {ports}: {exc}. Is another "
              "emulator running? Change [emulator.ports] in the station file.", file=sys.stderr)
        return 1
    print(f"cimlab emulated bench: profile {profile!r}, seed {seed}, "
          f"chip {'x'.join(str(x) for x in bench.chip.geometry)} (tiles x rows x cols)")
    for name, address in bench.addresses.items():
        print(f"  {name:<6} {address}")
    stop = threading.Event()
    interrupted = False
    try:  # "Ctrl-C stops" is printed inside: from then on an interrupt stops and saves cleanly
        print("Open a station file with address = \"emulator\" and [emulator] start = false. "
              "Ctrl-C stops.", flush=True)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:  # the way to stop it, still an interrupt: exit 130
        print("stopping", file=sys.stderr)
        interrupted = True
    finally:
        bench.stop()
        if state is not None:
            bench.save_state(state)
            print(f"state saved to {state}", file=sys.stderr)
    return 130 if interrupted else 0


def _check(args: argparse.Namespace) -> int:
    from cimlab.instruments.station import Station
    from cimlab.params import to_dict, unit_of

    if args.file and args.station and args.file != args.station:
        print(f"cimlab: error: two station files given ({args.file}, --station "
              f"{args.station}); give one", file=sys.stderr)
        return 2
    args.file = args.station or args.file or DEFAULT_STATION
    lines: list[str] = []
    with Station.open(args.file) as st:
        lines.append(f"station {st.config.station.name!r} ({args.file})")
        lines.append("instruments:")
        for name, idn in st.idn.items():
            lines.append(f"  {name:<6} {st.addresses.get(name, '-'):<36} {idn}")
        n_tiles, rows, cols = st.array.geometry
        lines.append(f"geometry: {n_tiles} tiles x {rows} rows x {cols} cols "
                     f"= {n_tiles * rows * cols} cells")
        now = st.clock.now()
        lines.append(f"clock: {st.config.station.clock} (now {now:.6g} s)")
        lines.append("limits:")
        limits = to_dict(st.limits)
        for key, value in limits.items():
            lines.append(f"  {key:<20} {value:<10g} {unit_of(st.limits, key)}")
        tr = st.calibration.transistor
        lines.append(f"transistor calibration: {tr.model}, k = {tr.k_a_per_v2:g} A/V^2, "
                     f"V_th = {tr.v_th_v:g} V (20 µA -> {tr.v_gate_for(20e-6):.3f} V on the "
                     "word line)")
        v_board = st.array.v_gate_at_icc_max
        if v_board is None:
            icc_board = None
            lines.append("compliance readback: none on this bench (discrete topology): SET "
                         "pulses are checked against the file's transistor calibration only")
        else:
            icc_board = float(tr.icc(v_board))
            lines.append(f"compliance readback: the board reaches limits.set_icc_max_a = "
                         f"{st.limits.set_icc_max_a:g} A at {v_board:.4f} V on the word line "
                         f"(ARR:COMP:GATE?); the calibration gives {icc_board:.4g} A there")
        doc = {
            "station": st.config.station.name, "file": str(args.file),
            "instruments": {name: {"address": st.addresses.get(name), "idn": idn}
                            for name, idn in st.idn.items()},
            "geometry": {"tiles": int(n_tiles), "rows": int(rows), "cols": int(cols)},
            "clock": {"kind": str(st.config.station.clock), "now_s": float(now)},
            "limits": {k: {"value": v, "unit": unit_of(st.limits, k)}
                       for k, v in limits.items()},
            "transistor": {"model": tr.model, "k_a_per_v2": tr.k_a_per_v2,
                           "v_th_v": tr.v_th_v},
            "compliance_readback": None if v_board is None else {
                "v_gate_v": float(v_board), "icc_calibrated_a": icc_board,
                "set_icc_max_a": st.limits.set_icc_max_a},
            "ok": True,
        }
    lines.append("all instruments answered; outputs are off")
    emit(args, doc, "\n".join(lines))
    return 0
