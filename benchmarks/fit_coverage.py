"""Soak: fit round trip (characterize through the emulated bench -> fit) over seeds and profiles.

For each (profile, seed): run a reduced campaign (the plan of tests/models/test_roundtrip.py:
fault map, programming error, read fluctuation, relaxation, BER, bakes at 125/175 C) into a
store through PyVISA, fit it with :func:`cimlab.models.fit.fit_store_report`, and check every
parameter that has a true value in the chip profile *and* whose fitted form is the physics'
form: read noise s0/s1 (quadrature), relaxation k_peak/g_peak/shape_a (peaked), retention
ea_ev/tau0_s; the relaxation onset t0_s in every fit (every rate form shares its clock).
Counted per parameter: fits, 95 % CI covers the truth, zero-width CIs; per profile: crashes
(any exception, with its one-line message).

Goal (issue 12): coverage >= 90 % for every parameter, no crash, no zero-width CI.
Slow (tens of seconds per fit on 2 cores): run what time allows.

    python benchmarks/fit_coverage.py [--profiles default techb narrow] [--seeds 10]

Prints a table; the last line is one JSON object with the counts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _profile_arg(name: str) -> str:
    from cimlab.physics.profile import BUNDLED_PROFILES, profile_path

    return name if name in BUNDLED_PROFILES else str(profile_path(name))


def truths(profile) -> dict[str, dict[str, float]]:
    """True parameter values of ``profile`` in the device model's parametrisation."""
    from cimlab.models.effects import K_B_EV

    p = profile
    ea = p.retention.ea_ev
    return {
        "read_noise": {"s0": p.read.sigma_floor, "s1": p.read.rel * p.window.g_max},
        "relaxation": {"t0_s": p.relaxation.tau_s, "k_peak": p.relaxation.b_peak,
                       "g_peak": p.relaxation.g_peak, "shape_a": p.relaxation.shape_a},
        "retention": {"ea_ev": ea,
                      "tau0_s": p.relaxation.tau_s * math.exp(-ea / (K_B_EV * p.window.t_room_k))},
    }


PHYSICS_FORM = {"read_noise": "quadrature", "relaxation": "peaked", "retention": None}
#: Parameters with the same meaning in every form of their effect, counted in every fit: the
#: relaxation onset t0 is the clock ``log10(1 + t / t0)`` that every variance-rate form shares
ANY_FORM = {"relaxation.t0_s"}


def one(profile: str, seed: int, tmp: Path) -> dict:
    """Round trip of one seed: {"crash": msg | None, "params": {effect.name: (covers, zero)}}."""
    from cimlab.instruments.station import Station
    from cimlab.models.fit import fit_store_report
    from cimlab.procedures.campaign import run_plan
    from cimlab.procedures.plan import plan_from_mapping
    from tests.models.test_roundtrip import _plan, _station_file

    prof_arg = _profile_arg(profile)
    plan_doc = _plan(prof_arg)
    plan_doc["plan"]["name"] = f"coverage-{profile}-{seed}"
    plan_doc["plan"]["seed"] = seed
    plan = plan_from_mapping(plan_doc, source=f"coverage-{profile}")
    out: dict = {"crash": None, "params": {}}
    try:
        with Station.open(_station_file(tmp, prof_arg, seed=100 + seed)) as st:
            chip_profile = st.bench.chip.profile
            run_plan(plan, st, tmp / "store.h5", progress=False)
        dm = fit_store_report(tmp / "store.h5").model
    except Exception as exc:
        out["crash"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        return out
    for eff_name, params in truths(chip_profile).items():
        eff = getattr(dm, eff_name)
        want = PHYSICS_FORM[eff_name]
        if eff.fit is None:
            continue
        physics_form = want is None or getattr(eff, "form", None) == want
        for name, truth in params.items():
            ci = eff.fit.ci95.get(name)
            if ci is None or not (physics_form or f"{eff_name}.{name}" in ANY_FORM):
                continue
            out["params"][f"{eff_name}.{name}"] = (bool(ci[0] <= truth <= ci[1]),
                                                   bool(not ci[1] > ci[0]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profiles", nargs="+", default=["default", "techb", "narrow"])
    ap.add_argument("--seeds", type=int, default=10, help="seeds per profile (0..N-1)")
    ap.add_argument("--first-seed", type=int, default=0)
    a = ap.parse_args(argv)
    results: dict = {}
    t_start = time.perf_counter()
    for profile in a.profiles:
        res = {"fits": 0, "crashes": [], "params": {}}
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            t = time.perf_counter()
            with tempfile.TemporaryDirectory() as d:
                r = one(profile, seed, Path(d))
            res["fits"] += 1
            if r["crash"]:
                res["crashes"].append({"seed": seed, "error": r["crash"]})
            for k, (cov, zero) in r["params"].items():
                c = res["params"].setdefault(k, {"n": 0, "covered": 0, "zero_width": 0})
                c["n"] += 1
                c["covered"] += int(cov)
                c["zero_width"] += int(zero)
            print(f"# {profile} seed {seed}: {'CRASH ' + r['crash'] if r['crash'] else 'ok'} "
                  f"({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)
        results[profile] = res
    print(f"{'profile':<9} {'parameter':<22} {'fits':>5} {'covered':>8} {'zero-width':>10}")
    for profile, res in results.items():
        for k, c in sorted(res["params"].items()):
            print(f"{profile:<9} {k:<22} {c['n']:>5} {c['covered']:>8} {c['zero_width']:>10}")
        print(f"{profile:<9} {'crashes':<22} {res['fits']:>5} {len(res['crashes']):>8}")
        for cr in res["crashes"]:
            print(f"    seed {cr['seed']}: {cr['error']}")
    secs = round(time.perf_counter() - t_start, 1)
    print(json.dumps({"benchmark": "fit_coverage", "seconds": secs,
                      "results": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
