"""Cost of the SCPI traffic log (``cimlab --log``, DEBUG) on the emulated bench.

Times, through the full stack of an in-process emulated station, a small query
(``clock.now()``: one ``TIME?`` round trip, the case where a per-message cost shows most) and a
batched read of one 256 x 64 tile (16384 cells, a ~64 kB binary block) with the traffic log
off (the adapters are not wrapped: nothing is paid) and on (every write and read logged to a
file, long messages cut). Each figure is the median of ``--repeats`` calls, off and on
alternated on two stations opened side by side so both see the same machine load. Prints a
table and, as its last line, one JSON object. Run: ``python benchmarks/log_overhead.py``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine_info

STATION = """
[station]
name = "log overhead"
clock = "virtual"
[emulator]
start = true
seed = 1
[instruments.array]
address = "emulator"
[instruments.clock]
address = "emulator"
[limits]
set_bl_max_v = 3.0
set_wl_max_v = 3.5
reset_sl_max_v = 3.0
reset_wl_max_v = 5.0
set_icc_max_a = 7e-4
pulse_width_max_s = 1e-3
read_v_max_v = 0.5
mvm_v_max_v = 0.5
smu_v_max_v = 0.5
smu_i_max_a = 1e-3
oven_temp_max_c = 200.0
[calibration.transistor]
k_a_per_v2 = 2e-4
v_th_v = 0.5
"""


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=200, help="timed calls per figure")
    args = ap.parse_args(argv)

    from cimlab.instruments.station import Station

    tmp = Path(tempfile.mkdtemp())
    station = tmp / "station.toml"
    station.write_text(STATION)
    root = logging.getLogger("cimlab")
    handler = logging.FileHandler(tmp / "traffic.log")
    with Station.open(station) as off:
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        try:
            with Station.open(station) as on:
                cells = np.arange(256 * 64, dtype=np.uint32)
                figures = {}
                for what, call in (("query TIME?", lambda st: st.clock.now()),
                                   ("read 16384 cells", lambda st: st.array.read(cells))):
                    call(off), call(on)  # warm-up
                    t_off, t_on = [], []
                    for _ in range(args.repeats):
                        t0 = time.perf_counter()
                        call(off)
                        t1 = time.perf_counter()
                        call(on)
                        t2 = time.perf_counter()
                        t_off.append(t1 - t0)
                        t_on.append(t2 - t1)
                    figures[what] = {"off_ms": 1e3 * statistics.median(t_off),
                                     "on_ms": 1e3 * statistics.median(t_on)}
        finally:
            root.removeHandler(handler)
            root.setLevel(logging.NOTSET)
            handler.close()
    log_bytes = (tmp / "traffic.log").stat().st_size
    print(f"{'call':18s} {'log off ms':>11s} {'log on ms':>10s} {'overhead':>9s}")
    for what, f in figures.items():
        f["overhead_ms"] = f["on_ms"] - f["off_ms"]
        print(f"{what:18s} {f['off_ms']:11.3f} {f['on_ms']:10.3f} "
              f"{f['overhead_ms'] * 1e3:7.0f} µs")
    doc = {"figures": figures, "log_bytes": log_bytes, "repeats": args.repeats,
           "machine": machine_info()}
    print(json.dumps(doc))
    return doc


if __name__ == "__main__":
    main()
