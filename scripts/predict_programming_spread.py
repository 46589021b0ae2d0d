"""Does a fitted model predict another store's measured programming spread at that store's
own read times?  Per verify level: the measured s.d. of ``g - target`` with its 95 % interval
(chi-square, normal approximation), against the model's

    sigma^2(t) = sigma_prog(g)^2 + relax_var(g, t) - relax_var(g, t_prog) + sigma_read(g)^2

where ``t`` is the level's mean time from last pulse to read in the store and ``t_prog`` the
model's own ``programming.time_s``. Used for the two-bench comparison in docs/instruments.md:

    python scripts/predict_programming_spread.py integrated_model.json discrete_quick.h5
"""

from __future__ import annotations

import argparse

import numpy as np

from cimlab.models.device_model import DeviceModel
from cimlab.models.fit._stats import group_moments
from cimlab.models.fit.store import collect
from cimlab.store import Store


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="fitted model (.json)")
    ap.add_argument("store", help="store with a programming_error run")
    ap.add_argument("--mode", default="verify", help="programming mode (default: verify)")
    args = ap.parse_args()
    model = DeviceModel.load(args.model)
    with Store.open(args.store, mode="r") as s:
        df = collect(s).get("programming_error", "programmed")
    if df is None:
        raise SystemExit(f"{args.store}: no completed programming_error run")
    df = df[df["mode"].astype(str) == args.mode]
    df = df.assign(err=df["g_siemens"] - df["target_siemens"])
    mom = group_moments(df, ["level"], "err", extra_means=["target_siemens", "time_s"])
    p, rx = model.programming_for(args.mode), model.relaxation
    print("level  target [uS]  read after [s]  measured s.d. [uS] (95 %)   predicted [uS]")
    inside = 0
    for _, r in mom.iterrows():
        g, t, n = float(r["target_siemens"]), float(r["time_s"]), float(r["n"])
        var = (p.sigma(g) ** 2 + rx.variance(g, t) - rx.variance(g, p.time_s)
               + model.read_noise.sigma(g) ** 2)
        pred = float(np.sqrt(max(var, 0.0)))
        sd = float(np.sqrt(r["var"]))
        half = 1.96 / np.sqrt(2.0 * (n - 1.0))
        lo, hi = sd * (1.0 - half), sd * (1.0 + half)
        inside += lo <= pred <= hi
        print(f"{int(r['level']):5d} {g * 1e6:12.2f} {t:15.3f} {sd * 1e6:10.3f} "
              f"({lo * 1e6:.3f}-{hi * 1e6:.3f}) {pred * 1e6:12.3f}")
    print(f"{inside} of {len(mom)} levels: prediction inside the measured 95 % interval")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
