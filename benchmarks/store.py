"""Run store throughput: what crash safety costs, and how fast techC imports and reports.

Three ways of writing the same campaign-shaped data (a BER-like table: 2 label columns, 4
integer and 1 float column; ``--steps`` steps of ``--rows`` rows) into a fresh HDF5 file:

* ``h5py_plain``: h5py datasets resized and written per step, one flush at the end (no crash
  safety: a killed process can lose everything since the last flush or leave a broken file);
* ``store_append``: ``run.append`` per step (categorical labels, flush after every append),
  no step commits;
* ``store_commit``: ``run.append`` + ``run.complete_step`` per step (flush, checksummed commit
  record, fsync): the crash-safe path the procedures use.

Then the read-back time of the table as a DataFrame; ``cimlab compact`` of that store (the
live store stays uncompressed for crash safety, so its write speed is unchanged; compaction is
a separate pass once runs have ended): time, size before and after, read-back time of the
compressed table; and the import of the real techC data set (89,115 rows), its report tables
(no plots) and its compaction. Prints a table and, as its last line, one JSON
object with the figures, the ratios to ``h5py_plain`` and the machine.
Run: ``python benchmarks/store.py [--steps 200 --rows 20000]``.
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

ROOT = Path(__file__).resolve().parents[1]
TECHC = ROOT / "data" / "reference" / "techC" / "relaxdata.min.tsv.gz"


def _columns(rng: np.random.Generator, n: int, k: int) -> dict[str, np.ndarray]:
    return {
        "condition": np.full(n, ("600uA", "55uA", "20uA")[k % 3]),
        "structure": np.where(np.arange(n) % 2 == 0, "1T1R", "2T2R"),
        "cycle": np.full(n, k, dtype=np.int64),
        "cell": np.arange(n, dtype=np.uint32),
        "bit": rng.integers(0, 2, n),
        "read_bit": rng.integers(0, 2, n),
        "g_siemens": rng.normal(20e-6, 1e-6, n),
    }


def plain_h5py(path: Path, steps: int, rows: int) -> float:
    import h5py

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        g = f.create_group("bits")
        cats: dict[str, dict[str, int]] = {"condition": {}, "structure": {}}
        for k in range(steps):
            cols = _columns(rng, rows, k)
            for name, values in cols.items():
                if name in cats:
                    lut = cats[name]
                    values = np.array([lut.setdefault(v, len(lut)) for v in
                                       np.unique(values)])[np.unique(values,
                                                                      return_inverse=True)[1]]
                if name not in g:
                    g.create_dataset(name, shape=(0,), maxshape=(None,), chunks=(8192,),
                                     dtype=values.dtype)
                ds = g[name]
                n0 = ds.shape[0]
                ds.resize((n0 + rows,))
                ds[n0:] = values
        f.flush()
    return time.perf_counter() - t0


def store_write(path: Path, steps: int, rows: int, commit: bool) -> float:
    from cimlab.store import Store

    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with Store.open(path, "x") as store:
        run = store.begin_run("ber", {"bench": True})
        for k in range(steps):
            run.append("bits", _columns(rng, rows, k))
            if commit:
                run.complete_step(f"step-{k:05d}")
        run.finish()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--rows", type=int, default=20000)
    args = ap.parse_args(argv)
    n_rows = args.steps * args.rows
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        figures["h5py_plain_s"] = plain_h5py(tmp / "plain.h5", args.steps, args.rows)
        figures["store_append_s"] = store_write(tmp / "append.h5", args.steps, args.rows, False)
        figures["store_commit_s"] = store_write(tmp / "commit.h5", args.steps, args.rows, True)
        figures["file_mb"] = (tmp / "commit.h5").stat().st_size / 1e6
        from cimlab.store import Store

        t0 = time.perf_counter()
        with Store.open(tmp / "commit.h5", "r") as store:
            df = store.run("last").table("bits")
        figures["read_table_s"] = time.perf_counter() - t0
        assert len(df) == n_rows
        from cimlab.store.compact import compact

        t0 = time.perf_counter()
        res = compact(tmp / "commit.h5")
        figures["compact_s"] = time.perf_counter() - t0
        figures["compact_mb"] = res.bytes_after / 1e6
        t0 = time.perf_counter()
        with Store.open(tmp / "commit.h5", "r") as store:
            df2 = store.run("last").table("bits")
        figures["read_compacted_s"] = time.perf_counter() - t0
        assert df2.equals(df)
        if TECHC.exists():
            from cimlab.procedures.importer import import_techc
            from cimlab.procedures.report import report

            t0 = time.perf_counter()
            import_techc(TECHC, tmp / "techc.h5")
            figures["techc_import_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            report(tmp / "techc.h5", plots=False)
            figures["techc_report_s"] = time.perf_counter() - t0
            res = compact(tmp / "techc.h5")
            figures["techc_store_mb"] = res.bytes_before / 1e6
            figures["techc_compact_mb"] = res.bytes_after / 1e6
    base = figures["h5py_plain_s"]
    print(f"{args.steps} steps x {args.rows} rows = {n_rows} rows, 7 columns")
    print(f"{'method':<16}{'time [s]':>10}{'rows/s':>14}{'x h5py_plain':>14}")
    for key in ("h5py_plain", "store_append", "store_commit"):
        t = figures[f"{key}_s"]
        print(f"{key:<16}{t:>10.3f}{n_rows / t:>14.3g}{t / base:>14.2f}")
    print(f"read back as DataFrame: {figures['read_table_s']:.3f} s; "
          f"file {figures['file_mb']:.1f} MB")
    print(f"compact: {figures['compact_s']:.3f} s, {figures['file_mb']:.1f} -> "
          f"{figures['compact_mb']:.1f} MB; read back compacted: "
          f"{figures['read_compacted_s']:.3f} s")
    if "techc_import_s" in figures:
        print(f"techC import (89,115 rows): {figures['techc_import_s']:.2f} s; "
              f"report tables: {figures['techc_report_s']:.2f} s; store "
              f"{figures['techc_store_mb']:.2f} MB, compacted {figures['techc_compact_mb']:.2f} MB")
    out = {
        "benchmark": "store", "steps": args.steps, "rows_per_step": args.rows,
        **{k: round(v, 4) for k, v in figures.items()},
        "ratio_append_vs_plain": round(figures["store_append_s"] / base, 3),
        "ratio_commit_vs_plain": round(figures["store_commit_s"] / base, 3),
        "rows_per_s_commit": round(n_rows / figures["store_commit_s"]),
        "ratio_size_compacted": round(figures["file_mb"] / figures["compact_mb"], 2),
        "ratio_read_compacted_vs_plain_store": round(figures["read_compacted_s"]
                                                     / figures["read_table_s"], 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
