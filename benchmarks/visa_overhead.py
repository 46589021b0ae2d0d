"""VISA overhead of the emulated bench: one 256 x 64 tile through the full stack vs the physics.

Compares, on one tile (16384 cells):

* read: ``ArrayController.read(cells)`` (PyMeasure -> PyVISA -> pyvisa-py -> TCP socket ->
  SCPI parser -> ``ReRAMChip.read``) against ``ReRAMChip.read`` called directly;
* SET pulse: ``ArrayController.pulse_set(cells, v_bl (per cell), v_wl, width)`` against
  ``ReRAMChip.pulse`` called directly.

Each figure is the median of ``--repeats`` runs after a warm-up, the direct and VISA calls
alternated so both see the same machine load; ``ratio(min)`` compares the fastest runs.
Prints a table, both ratios (target: under 3x for a full tile), and as its last line one JSON
object with the figures and the machine. Run: ``python benchmarks/visa_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
from _common import machine_info


def _paired_times(direct, visa, repeats: int) -> dict[str, float]:
    """Wall-clock median and minimum, and CPU time (this process: client, server threads and
    physics together) per call of ``direct`` and ``visa``, alternated so that both see the
    same machine load (the host may be shared)."""
    direct()
    visa()  # warm-up
    td, tv = [], []
    cpu_d = cpu_v = 0.0
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        direct()
        c1, t1 = time.process_time(), time.perf_counter()
        visa()
        c2, t2 = time.process_time(), time.perf_counter()
        td.append(t1 - t0)
        tv.append(t2 - t1)
        cpu_d += c1 - c0
        cpu_v += c2 - c1
    return {"direct": statistics.median(td), "visa": statistics.median(tv),
            "direct_min": min(td), "visa_min": min(tv),
            "direct_cpu": cpu_d / repeats, "visa_cpu": cpu_v / repeats}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=50, help="timed runs per figure (median)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--profile", default="default",
                    help="chip profile (e.g. techa: reads with the 1/f Lorentzian bank)")
    args = ap.parse_args(argv)

    from cimlab.instruments.drivers import ArrayController
    from cimlab.instruments.emulator import EmulatedBench, Timing, make_chip
    from cimlab.instruments.emulator.world import ZERO_C_K

    t_room_k = 25.0 + ZERO_C_K  # the emulated oven's ambient

    direct_chip = make_chip(args.profile, args.seed)
    _n_tiles, rows, cols = direct_chip.geometry
    tile = rows * cols
    cells = np.arange(tile, dtype=np.int64)
    rng = np.random.default_rng(0)
    v_bl = rng.uniform(1.0, 2.0, tile)  # per-cell amplitudes: a program-verify step
    v_wl = float(direct_chip.profile.transistor.v_gate_for_icc(50e-6))
    width = 1e-6

    # the direct calls see the same virtual time steps the emulator charges (the cost of the
    # chip's lazy relaxation process depends on the time between observations)
    timing = Timing()
    dt_read = timing.command_s + tile * timing.cell_read_s
    dt_pulse = timing.command_s + tile * (width + timing.pulse_overhead_s)
    t_direct = [0.0]

    def direct_read():
        direct_chip.read(cells, t_direct[0])
        direct_chip.advance(dt_read, t_room_k)
        t_direct[0] += dt_read

    def direct_pulse():
        direct_chip.pulse(cells, "set", v_bl, v_wl, width, t_direct[0])
        direct_chip.advance(dt_pulse, t_room_k)
        t_direct[0] += dt_pulse

    with EmulatedBench(args.profile, args.seed) as bench:
        arr = ArrayController.open(bench.addresses["array"])
        arr.enable()

        def visa_read():
            arr.read(cells)

        def visa_pulse():
            arr.pulse_set(cells, v_bl, v_wl, width)

        rows_out = []
        for name, direct, visa in (("read tile", direct_read, visa_read),
                                   ("SET pulse tile", direct_pulse, visa_pulse)):
            rows_out.append((name, _paired_times(direct, visa, args.repeats)))
        arr.shutdown()
        arr.adapter.close()

    print(f"VISA overhead, one {rows}x{cols} tile ({tile} cells), {args.repeats} paired runs")
    print(f"{'operation':<16}{'physics [ms]':>13}{'VISA [ms]':>11}{'ratio':>7}"
          f"{'ratio(min)':>12}{'ratio(CPU)':>12}")
    figures = {}
    for name, f in rows_out:
        r, rmin, rcpu = (f["visa"] / f["direct"], f["visa_min"] / f["direct_min"],
                         f["visa_cpu"] / f["direct_cpu"])
        print(f"{name:<16}{f['direct'] * 1e3:>13.3f}{f['visa'] * 1e3:>11.3f}{r:>7.2f}"
              f"{rmin:>12.2f}{rcpu:>12.2f}")
        figures[name] = (f, r, rmin, rcpu)
    ok = all(v[1] < 3.0 for v in figures.values())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print("ratio: medians of wall time; ratio(min): fastest runs; ratio(CPU): CPU time of this "
          "process (client + server threads + physics) per call")
    print(f"target: median ratio < 3 for a full tile -> {'met' if ok else 'NOT met'} "
          f"(load average {load:.1f} on {os.cpu_count()} CPUs)")
    fr, fp = figures["read tile"], figures["SET pulse tile"]
    result = {
        "benchmark": "visa_overhead",
        "cells": tile,
        "profile": args.profile,
        "read_ratio": round(fr[1], 3),
        "pulse_ratio": round(fp[1], 3),
        "read_ratio_min": round(fr[2], 3),
        "pulse_ratio_min": round(fp[2], 3),
        "read_ratio_cpu": round(fr[3], 3),
        "pulse_ratio_cpu": round(fp[3], 3),
        "read_physics_ms": round(fr[0]["direct"] * 1e3, 4),
        "read_visa_ms": round(fr[0]["visa"] * 1e3, 4),
        "pulse_physics_ms": round(fp[0]["direct"] * 1e3, 4),
        "pulse_visa_ms": round(fp[0]["visa"] * 1e3, 4),
        "load_average_1min": round(load, 2),
        "target_ratio": 3.0,
        "target_met": ok,
        "repeats": args.repeats,
        "machine": machine_info(),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
