"""Sweep scaling: a Monte Carlo over programmings run serially and on a local Dask cluster
of 1 and 2 worker processes (cimlab.parallel), with the per-task overhead of the engine.

The sweep: paper 000's CNN (width 1, digits, 8-bit ADC/DAC, programming error, read noise,
stuck cells), ``--trials`` independent programmings, each evaluated on the 450 test images
(``cimlab.sim.monte_carlo(..., engine=...)``). The values are checked identical on every
engine. The per-task overhead is measured with ``--tiny`` no-op tasks. Speed-ups depend on
what else runs on the machine: the 1-minute load average before and after each timing is
printed beside it (a load above the core count means the workers share cores with others).
Usage: ``python benchmarks/sweep_scaling.py [--trials 8] [--tiny 200]``. The last line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from _common import machine_info


def noop(x: int) -> int:
    return x


def main() -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--tiny", type=int, default=200, help="no-op tasks for the overhead")
    ap.add_argument("--width", type=float, default=1.0)
    args = ap.parse_args()

    from cimlab.parallel import DaskEngine, SerialEngine
    from cimlab.sim.config import AnalogConfig
    from cimlab.sim.convert import convert
    from cimlab.sim.data import load_dataset
    from cimlab.sim.evaluate import monte_carlo
    from cimlab.sim.nets import build

    ds = load_dataset("digits")
    loader = [(ds.x_test[i:i + 150], ds.y_test[i:i + 150]) for i in range(0, len(ds.y_test), 150)]
    torch.manual_seed(0)
    net = build("paper000-cnn", ds.in_shape, 10, width=args.width, dropout=0.0).eval()
    anet = convert(net, AnalogConfig(adc_bits=8))

    rows, timings, values = [], {}, {}

    def timed(label: str, engine) -> None:
        la0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        res = monte_carlo(anet, loader, args.trials, seed=1, engine=engine)
        dt = time.perf_counter() - t0
        la1 = os.getloadavg()[0]
        timings[label] = dt
        values[label] = res.accuracies
        rows.append((label, dt, (la0 + la1) / 2))

    monte_carlo(anet, loader, 1, seed=99, engine=SerialEngine())  # warm-up
    timed("serial", SerialEngine())
    overhead = {}
    for w in (1, 2):
        t0 = time.perf_counter()
        with DaskEngine(workers=w) as eng:
            start = time.perf_counter() - t0
            eng.map(noop, range(20))  # warm
            t1 = time.perf_counter()
            eng.map(noop, range(args.tiny))
            overhead[w] = (time.perf_counter() - t1) / args.tiny
            # warm-up: every worker imports torch and cimlab once (not part of the sweep)
            monte_carlo(anet, loader, 2 * w, seed=99, engine=eng)
            timed(f"dask {w} worker{'s' if w > 1 else ''}", eng)
        rows[-1] = (*rows[-1], start)
    same = all(np.array_equal(values["serial"], v) for v in values.values())
    base = timings["serial"]
    print(f"Monte Carlo: {args.trials} programmings of paper000-cnn (width {args.width}), "
          f"{len(ds.y_test)} test images each; {os.cpu_count()} CPUs")
    print(f"{'engine':18s} {'time [s]':>9s} {'speed-up':>9s} {'load avg':>9s} {'start [s]':>10s}")
    for r in rows:
        start = f"{r[3]:10.2f}" if len(r) > 3 else f"{'':10s}"
        print(f"{r[0]:18s} {r[1]:9.2f} {base / r[1]:8.2f}x {r[2]:9.2f} {start}")
    print(f"engine overhead per task: 1 worker {overhead[1] * 1e3:.2f} ms, 2 workers "
          f"{overhead[2] * 1e3:.2f} ms (no-op tasks)")
    print(f"values identical on every engine: {same}")
    result = {
        "engine": "dask.distributed", "trials": args.trials, "serial_s": base,
        "dask_1_worker_s": timings["dask 1 worker"], "dask_2_workers_s": timings["dask 2 workers"],
        "speedup_1_worker": base / timings["dask 1 worker"],
        "speedup_2_workers": base / timings["dask 2 workers"],
        "overhead_per_task_ms_1_worker": overhead[1] * 1e3,
        "overhead_per_task_ms_2_workers": overhead[2] * 1e3,
        "load_average_1min": {r[0]: r[2] for r in rows},
        "values_identical": same,
        "machine": machine_info(torch_threads_per_task=1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
