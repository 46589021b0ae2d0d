"""Round trips and host time per cell on the two bundled emulated benches.

For each topology (``emulated``: array controller; ``emulated-discrete``: switch matrix +
pulse generator + SMU) open the bundled station, then pulse (SET) and read ``--cells`` cells
of tile 0 through the station's array (the CellArray the procedures use). Round trips are
counted where they happen, in the emulated instruments' message logs: every program message
holding a query is one answer the host waited for. Prints a table, then one JSON line.

    python benchmarks/discrete_bench.py [--cells 256]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from _common import machine_info

from cimlab.instruments.station import Station


def _queries(station: Station) -> int:
    bench = station.bench
    return sum(sum("?" in m for m in bench.log(name)) for name in bench.instruments)


def measure(name: str, n: int) -> dict[str, float]:
    with Station.open(name) as st:
        cells = np.arange(n)
        vg = st.gate_voltage_for(55e-6)
        out: dict[str, float] = {}
        for op, fn in (("pulse", lambda: st.array.pulse(cells, "set", 2.0, vg, 1e-6)),
                       ("read", lambda: st.array.read(cells))):
            q0, t0 = _queries(st), time.perf_counter()
            fn()
            dt, dq = time.perf_counter() - t0, _queries(st) - q0
            out[f"{op}_round_trips_per_cell"] = dq / n
            out[f"{op}_host_s_per_cell"] = dt / n
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", type=int, default=256, help="cells pulsed and read")
    args = ap.parse_args()
    rows = {name: measure(name, args.cells) for name in ("emulated", "emulated-discrete")}
    print(f"{'station':<20} {'op':<6} {'round trips/cell':>17} {'host us/cell':>13}")
    for name, r in rows.items():
        for op in ("pulse", "read"):
            print(f"{name:<20} {op:<6} {r[f'{op}_round_trips_per_cell']:>17.4f} "
                  f"{1e6 * r[f'{op}_host_s_per_cell']:>13.1f}")
    ratio = {op: rows["emulated-discrete"][f"{op}_host_s_per_cell"]
             / rows["emulated"][f"{op}_host_s_per_cell"] for op in ("pulse", "read")}
    print(json.dumps({"cells": args.cells, "stations": rows,
                      "discrete_over_integrated_host_time": ratio,
                      "machine": machine_info()}))


if __name__ == "__main__":
    main()
