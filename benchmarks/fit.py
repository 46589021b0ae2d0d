"""Benchmark: time to fit a device model to a store of ~1 million cell reads.

Builds a store (not timed) with a relaxation run (N cells x 8 time points, with its verify
log) and a read-fluctuation run (cells x 16 repeats), about 1e6 reads in all, drawn from the
default literature model (cimlab.models.DeviceModel.default(), exact relaxation process),
then times ``cimlab.models.fit.fit_store`` stage by stage: reading the tables from HDF5 and
hashing them, read noise, relaxation, programming, and the whole fit. Target: under 10 s on
2 cores. Prints a table; the last line is one JSON object with the figures.

    python benchmarks/fit.py [--reads 1000000] [--keep STORE.h5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def build_store(path: Path, n_reads: int, seed: int = 1) -> dict:
    from cimlab.models import DeviceModel
    from cimlab.store import Store

    dm = DeviceModel.default().replace(relaxation=DeviceModel.default().relaxation.__class__(
        form="peaked", k0=0.0, k_peak=2.3e-12, g_peak=14e-6, shape_a=0.85, t0_s=5e-3))
    rng = np.random.default_rng(seed)
    times = np.array([0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5])
    n_relax_cells = int(0.8 * n_reads) // times.size
    n_rf_cells = int(0.2 * n_reads) // 16
    levels = dm.window.level_conductances()
    with Store.open(path, mode="a") as st:
        # relaxation: cumulative Gaussian process with independent increments in L(t)
        lv = rng.integers(0, levels.size, n_relax_cells)
        g_prog = levels[lv] + 0.3e-6 * rng.standard_normal(n_relax_cells)
        g0 = dm.sample_read(g_prog, rng)
        run = st.begin_run(kind="relaxation", plan={"bench": n_reads}, seeds={"bench": seed})
        run.append("programmed", {"cell": np.arange(n_relax_cells), "level": lv,
                                  "target_siemens": levels[lv], "g_siemens": g0,
                                  "mode": np.full(n_relax_cells, "verify"),
                                  "time_s": np.zeros(n_relax_cells)})
        x = np.zeros(n_relax_cells)
        L_prev = 0.0
        r = dm.relaxation
        for i, t in enumerate(times):
            L = float(r.decades(t))
            x += np.sqrt(np.asarray(r.rate(g_prog)) * (L - L_prev)) * rng.standard_normal(
                n_relax_cells)
            L_prev = L
            g = dm.sample_read(g_prog + np.asarray(r.drift(g_prog)) * L + x, rng)
            run.append("reads", {"cell": np.arange(n_relax_cells), "level": lv,
                                 "target_siemens": levels[lv], "g0_siemens": g0,
                                 "time_s": np.full(n_relax_cells, t), "g_siemens": g,
                                 "temp_k": np.full(n_relax_cells, 298.15),
                                 "time_index": np.full(n_relax_cells, i)})
        run.complete_step("all")
        run.finish("completed")
        # read fluctuation: 16 repeats per cell, late (relaxation negligible between reads)
        lv2 = rng.integers(0, levels.size, n_rf_cells)
        g2 = levels[lv2] + 1e-6 * rng.standard_normal(n_rf_cells)
        run = st.begin_run(kind="read_fluctuation", plan={"bench": n_reads},
                           seeds={"bench": seed})
        for rep in range(16):
            run.append("reads", {"cell": np.arange(n_rf_cells), "level": lv2,
                                 "target_siemens": levels[lv2], "repeat": np.full(n_rf_cells, rep),
                                 "time_s": np.full(n_rf_cells, 1e4 + rep),
                                 "g_siemens": dm.sample_read(g2, rng)})
        run.complete_step("all")
        run.finish("completed")
    return {"relax_cells": n_relax_cells, "rf_cells": n_rf_cells,
            "reads": n_relax_cells * times.size + n_rf_cells * 16}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reads", type=int, default=1_000_000, help="cell reads in the store")
    ap.add_argument("--keep", type=Path, default=None, help="keep the store at this path")
    args = ap.parse_args()
    from cimlab.models.fit import fit_read_noise, fit_relaxation, fit_tables
    from cimlab.models.fit.store import _relevel, _with_pulse_offset, collect
    from cimlab.store import Store

    tmpdir = tempfile.TemporaryDirectory()
    path = args.keep or Path(tmpdir.name) / "bench.h5"
    if path.exists():
        path.unlink()
    t0 = time.perf_counter()
    sizes = build_store(path, args.reads)
    t_build = time.perf_counter() - t0

    stages = {}
    t0 = time.perf_counter()
    with Store.open(path, mode="r") as st:
        ts = collect(st)
    stages["read tables + sha256"] = time.perf_counter() - t0
    g_ref = 40e-6
    t0 = time.perf_counter()
    rn = fit_read_noise(_relevel(ts.get("read_fluctuation", "reads")), g_ref)
    stages["read noise"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    fit_relaxation(_relevel(_with_pulse_offset(ts.get("relaxation", "reads"),
                                                ts.get("relaxation", "programmed"))),
                   g_ref, read_noise=rn)
    stages["relaxation"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rep = fit_tables(ts)
    stages["fit_tables (all effects)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    from cimlab.models.fit import fit_store

    dm = fit_store(path)
    total = time.perf_counter() - t0
    stages["fit_store (total, from file)"] = total

    print(f"store: {sizes['reads']:,} reads ({sizes['relax_cells']:,} cells x 8 times + "
          f"{sizes['rf_cells']:,} cells x 16 repeats), built in {t_build:.1f} s (not timed)")
    print(f"{'stage':<32} {'time [s]':>9}")
    for k, v in stages.items():
        print(f"{k:<32} {v:9.2f}")
    print(f"fitted: {', '.join(rep.fitted)}; relaxation form {dm.relaxation.form}, "
          f"read noise form {dm.read_noise.form}")
    print(f"target: fit_store < 10 s on 2 cores -> {'met' if total < 10 else 'NOT met'}")
    print(json.dumps({
        "benchmark": "fit", "reads": sizes["reads"], "fit_store_s": round(total, 3),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "target_siemens": 10.0, "met": total < 10.0,
        "reads_per_s": round(sizes["reads"] / total),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform(), "processor": platform.processor(),
                    "omp_threads": os.environ.get("OMP_NUM_THREADS")},
    }))
    tmpdir.cleanup()


if __name__ == "__main__":
    main()
