"""The quick characterization plan on the emulated bench: wall time, instrument time, overhead.

Runs ``plans/quick.toml`` (fault map, 16 levels x 4096 cells programming error single
shot and verify, 100 reads x 1024 cells read fluctuation + SMU reads, relaxation, 3 BER
conditions x 16384 bits in 1T1R and 2T2R, endurance, a 6-step 150 C bake) through the full
stack (procedures -> PyMeasure drivers -> PyVISA/pyvisa-py -> TCP -> emulated instruments ->
physics) into a fresh HDF5 store, and reports per experiment and in total: host wall time,
virtual instrument time, round trips, cell operations (cell pulses + cell reads) and host
time per cell operation. Target: the whole plan under 60 s wall on 2 cores.

Prints a table and, as its last line, one JSON object with the figures and the machine.
Run: ``python benchmarks/campaign.py [--plan plans/quick.toml]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import machine_info

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=str(ROOT / "plans" / "quick.toml"))
    ap.add_argument("--station", default=str(ROOT / "instruments" / "emulated.toml"))
    ap.add_argument("--target-s", type=float, default=60.0, help="wall-time target [s]")
    args = ap.parse_args(argv)

    from cimlab.instruments.station import Station
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import load_plan

    plan = load_plan(args.plan)
    t_wall0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "quick.h5"
        t_open0 = time.perf_counter()
        with Station.open(args.station) as st:
            t_open = time.perf_counter() - t_open0
            result = run_plan(plan, st, store, progress=False)
        size_mb = store.stat().st_size / 1e6
    wall = time.perf_counter() - t_wall0

    print(f"plan {args.plan}: {len(result.results)} experiments")
    print(result.table())
    per_op_us = result.host_time_s / max(result.cell_operations, 1) * 1e6
    print(f"station open (chip + emulator + VISA): {t_open:.2f} s; store {size_mb:.1f} MB")
    print(f"wall time (open + plan + close): {wall:.2f} s; target < {args.target_siemens:g} s -> "
          f"{'met' if wall < args.target_siemens else 'NOT met'}")
    out = {
        "benchmark": "campaign",
        "plan": Path(args.plan).name,
        "wall_s": round(wall, 3),
        "plan_host_s": round(result.host_time_s, 3),
        "station_open_s": round(t_open, 3),
        "instrument_s": round(result.instrument_time_s, 3),
        "instrument_h": round(result.instrument_time_s / 3600.0, 2),
        "round_trips": result.round_trips,
        "cell_operations": result.cell_operations,
        "host_us_per_cell_operation": round(per_op_us, 3),
        "experiments": {r.name: {"host_s": round(r.host_time_s, 3),
                                 "instrument_s": round(r.instrument_time_s, 3),
                                 "round_trips": r.round_trips,
                                 "cell_operations": r.cell_operations}
                        for r in result.results},
        "store_mb": round(size_mb, 2),
        "target_wall_s": args.target_siemens,
        "target_met": wall < args.target_siemens,
        "machine": machine_info(omp_num_threads=os.environ.get("OMP_NUM_THREADS", "")),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
