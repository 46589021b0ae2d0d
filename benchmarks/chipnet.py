"""Chip-in-the-loop cost: a network on the emulated chip vs the same network in the simulator.

Programs the demo's CNN (paper000-cnn at width 1/16: 49 444 cells on 22 chip tiles) onto the
emulated bench, then times, on the 450 digits test images in batches of 150:

* the chip-in-the-loop evaluation (ChipNetwork: DAC, one ARR:MVM? round trip per chip tile and
  batch through PyVISA, host ADC/BN) with warm tile caches, and with the caches rebuilt (the
  emulator's exact IR-drop solution after the chip's state changed);
* the simulator's evaluation of the same network (same logical tiles, converters, noise);
* program-verify of all cells;
* the exact IR-drop transfer matrix of one 256 x 64 tile: the structured block elimination the
  emulator uses vs the sparse-LU nodal solution it replaced (best of 3 each).

Both sides get one compute thread (torch intra-op threads and, through threadpoolctl, the BLAS
used by the emulator), so the ratio compares equal resources.

Prints a table and, as the last line, one JSON object (ratios measured in this run, the
absolute times and the machine). Run: ``python benchmarks/chipnet.py``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path


def _transfer_build_times() -> tuple[float, float]:
    """Best-of-3 wall times [s] of the two exact transfer-matrix builds for a 256 x 64 tile."""
    import numpy as np

    from cimlab.physics import crossbar

    rng = np.random.default_rng(0)
    g = rng.uniform(1e-6, 5e-5, (256, 64))
    r_row, r_col = crossbar.draw_wires(256, 64, 2.0, 0.5, 0.1, rng)
    out = []
    for fn in (crossbar.transfer_matrix, crossbar.transfer_matrix_sparse):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            fn(g, r_row, r_col)
            best = min(best, time.perf_counter() - t0)
        out.append(best)
    return out[0], out[1]


def main() -> dict:
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from cimlab.demo import station_text
    from cimlab.instruments.session import open_station
    from cimlab.sim.chip_backend import ChipConfig, ChipNetwork
    from cimlab.sim.convert import convert
    from cimlab.sim.data import load_dataset
    from cimlab.sim.evaluate import evaluate
    from cimlab.sim.nets import build
    from cimlab.sim.placement import analog_config_for, place_network
    from cimlab.sim.program_net import program_network
    from cimlab.store import Store

    torch.set_num_threads(1)
    try:  # the emulator's BLAS on one thread too (as torch); threadpoolctl comes with sklearn
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
        blas_threads = 1
    except ImportError:  # pragma: no cover
        blas_threads = None
    t_struct, t_sparse = _transfer_build_times()
    ds = load_dataset("digits")
    test = DataLoader(TensorDataset(ds.x_test, ds.y_test), batch_size=150)
    torch.manual_seed(0)
    net = build("paper000-cnn", ds.in_shape, 10, width=0.0625, dropout=0.0).eval()
    with tempfile.TemporaryDirectory() as tmp:
        st_file = Path(tmp) / "station.toml"
        st_file.write_text(station_text(0))
        with open_station(st_file) as st, Store.open(Path(tmp) / "b.h5", "a") as store:
            placement = place_network(net, tuple(st.array.geometry))
            t0 = time.perf_counter()
            res = program_network(st, net, placement, store, progress=False)
            t_prog = time.perf_counter() - t0
            st.clock.sleep(3600.0)
            chip = ChipNetwork(net, placement, st.array)
            g_back = chip.read_back()
            t0 = time.perf_counter()
            evaluate(chip, test)  # tile caches rebuilt after programming
            t_cold = time.perf_counter() - t0
            rt0, v0 = chip.round_trips, chip.backend.vectors
            t0 = time.perf_counter()
            evaluate(chip, test)
            t_warm = time.perf_counter() - t0
            rt, vec = chip.round_trips - rt0, chip.backend.vectors - v0
            # the same evaluation with full-width vectors (ARR:MVM?, protocol 1.2): what
            # sending only the driven rows (ARR:MVM:ROWS?) saves
            chip_full = ChipNetwork(net, placement, st.array, ChipConfig(row_windows=False))
            chip_full.set_conductances(g_back)
            evaluate(chip_full, test)  # its own warm-up, as the windowed chip had
            t0 = time.perf_counter()
            evaluate(chip_full, test)
            t_full = time.perf_counter() - t0
    cfg = analog_config_for(None, placement.config, 64, read_noise="output")
    anet = convert(net, cfg)
    anet.program(torch.Generator().manual_seed(0))
    evaluate(anet, test)
    t0 = time.perf_counter()
    evaluate(anet, test)
    t_sim = time.perf_counter() - t0
    n = len(ds.y_test)
    result = {
        "cells": placement.n_cells, "chip_tiles": len(placement.used_tiles()),
        "images": n, "round_trips_per_eval": rt, "mvm_vectors_per_eval": vec,
        "chip_eval_warm_s": t_warm, "chip_eval_cold_s": t_cold, "sim_eval_s": t_sim,
        "chip_eval_warm_full_width_s": t_full,
        "ratio_chip_warm_full_width_vs_sim": t_full / t_sim,
        "ratio_chip_warm_vs_sim": t_warm / t_sim, "ratio_chip_cold_vs_sim": t_cold / t_sim,
        "mvm_vectors_per_s_warm": vec / t_warm, "program_verify_host_s": t_prog,
        "program_verify_cells_per_s": placement.n_cells / t_prog,
        "pv_success_rate": res.summary["success_rate"],
        "pv_pulses_mean": res.summary["pulses_mean"],
        "transfer_matrix_256x64_structured_s": t_struct,
        "transfer_matrix_256x64_sparse_lu_s": t_sparse,
        "load_average_1min": os.getloadavg()[0],
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "blas_threads": blas_threads,
                    "platform": platform.platform(), "python": platform.python_version()},
    }
    print(f"{'what':44s} {'value':>12s}")
    rows = [("network cells / chip tiles", f"{placement.n_cells} / {result['chip_tiles']}"),
            ("program-verify of all cells [s host]", f"{t_prog:.2f}"),
            (f"chip eval, {n} images, warm caches [s]", f"{t_warm:.2f}"),
            (f"chip eval, {n} images, caches rebuilt [s]", f"{t_cold:.2f}"),
            (f"simulator eval, {n} images [s]", f"{t_sim:.3f}"),
            ("chip (warm) / simulator", f"{t_warm / t_sim:.1f}x"),
            ("chip eval warm, full-width ARR:MVM? [s]", f"{t_full:.2f}"),
            ("  full-width (warm) / simulator", f"{t_full / t_sim:.1f}x"),
            ("MVM round trips per eval", f"{rt}"),
            ("MVM vectors per eval", f"{vec}"),
            ("MVM vectors per second (warm)", f"{vec / t_warm:.0f}"),
            ("IR-drop T, 256x64: structured [s]", f"{t_struct:.3f}"),
            ("IR-drop T, 256x64: sparse LU (before) [s]", f"{t_sparse:.3f}"),
            ("load average (1 min)", f"{os.getloadavg()[0]:.1f}")]
    for a, b in rows:
        print(f"{a:44s} {b:>12s}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
