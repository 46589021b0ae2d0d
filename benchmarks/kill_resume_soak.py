"""Kill/resume soak: every experiment kind killed at many committed-step points, resumed, and
compared value for value with an uninterrupted run on the same seed (the long version of
tests/fuzz/test_kill_resume.py; the promise is in docs/safety.md, "What a resume means").

For each kind (and a campaign holding all of them): one uninterrupted run, then one store
killed ``--kills`` times in a row, each kill at a seeded random committed-step point of the
re-run (SIGKILL while a step's checkpoint is pending, SIGKILL right after a commit, or SIGINT
after a commit, in turn), then re-run to the end and every table compared. Prints one line
per kind and, last, a JSON object: kills, survived (kills after which the final store equals
the uninterrupted one), values_different, negative_times, seconds, machine.

    python benchmarks/kill_resume_soak.py [--kills 6] [--kinds relaxation ber] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import machine_info  # noqa: E402

from tests.fuzz import kill_resume as kr  # noqa: E402

MODES = (("SIGKILL pending", signal.SIGKILL, True), ("SIGKILL commit", signal.SIGKILL, False),
         ("SIGINT commit", signal.SIGINT, False))


def _committed_steps(store: Path) -> int:
    from cimlab.store import Store

    with Store.open(store, mode="r") as s:
        return sum(len(r.steps) for r in s)


def soak(folder: Path, kind: str, kills: int, rng: np.random.Generator) -> dict:
    if kind == "campaign":
        folder.mkdir(parents=True, exist_ok=True)
        plan = folder / "campaign.toml"
        plan.write_text('[plan]\nname = "campaign"\nseed = 11\n' + "".join(
            text for k, text in kr.PLANS.items() if k not in kr.PROFILES))  # one chip profile
        _, station = kr.setup(folder, "relaxation")
    else:
        plan, station = kr.setup(folder, kind)
    t0 = time.perf_counter()
    kr.run_to_end(plan, station, folder / "clean.h5")
    n = _committed_steps(folder / "clean.h5")
    out, done, modes = folder / "killed.h5", 0, []
    for i in range(kills):
        name, sig, pending = MODES[i % len(MODES)]
        have = _committed_steps(out) if out.exists() else 0
        if n - have < 2:
            break
        if kr.kill_at(plan, station, out, int(rng.integers(1, n - have)), pending=pending,
                      sig=sig):
            done += 1
            modes.append(name)
    kr.run_to_end(plan, station, out)
    clean, resumed = kr.tables(folder / "clean.h5"), kr.tables(out)
    diff = kr.differences(clean, resumed)
    return {"kind": kind, "steps": n, "kills": done, "survived": done if diff == 0 else 0,
            "values_different": diff, "negative_times": kr.negative_times(resumed),
            "rows": int(sum(len(df) for df in clean.values())), "modes": modes,
            "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=6, help="kills per kind (default 6)")
    ap.add_argument("--kinds", nargs="*", default=[*sorted(kr.PLANS), "campaign"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="kill-resume-"))
    rows, t0 = [], time.perf_counter()
    print(f"{'kind':18s} {'steps':>5s} {'rows':>7s} {'kills':>5s} {'survived':>8s} "
          f"{'values diff':>11s} {'neg. t':>6s} {'s':>6s}")
    try:
        for kind in args.kinds:
            r = soak(tmp / kind, kind, args.kills, rng)
            rows.append(r)
            print(f"{kind:18s} {r['steps']:5d} {r['rows']:7d} {r['kills']:5d} "
                  f"{r['survived']:8d} {r['values_different']:11d} {r['negative_times']:6d} "
                  f"{r['seconds']:6.1f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps({
        "kills": sum(r["kills"] for r in rows),
        "survived": sum(r["survived"] for r in rows),
        "values_different": sum(r["values_different"] for r in rows),
        "negative_times": sum(r["negative_times"] for r in rows),
        "per_kind": {r["kind"]: {k: r[k] for k in ("kills", "survived", "values_different")}
                     for r in rows},
        "seconds": time.perf_counter() - t0,
        "machine": machine_info(),
    }))


if __name__ == "__main__":
    main()
