"""``cimlab demo``: the whole loop on the emulated bench, from characterization to field
calibration, with the fitted device model's prediction at every step.

1. Characterize a few tiles of the emulated chip (programming error with verify, read
   fluctuation, relaxation, a short 150 degC bake, stuck-at faults) into ``<out>/demo.h5``.
2. Fit a :class:`~cimlab.models.DeviceModel` to it (``<out>/device_model.json``).
3. Train (or load the cached ``<out>/net.pt``) a small BN-bearing CNN (paper 000's
   6-conv + 3-FC layout at 1/16 width) on the embedded digits, noise-aware (HA-SGD,
   paper 002) so that it survives the chip's relaxation.
4. Place it on the chip (64-row groups, one per tile, :mod:`cimlab.sim.placement`) and
   program every cell with program-verify (:mod:`cimlab.sim.program_net`).
5. Chip-in-the-loop accuracy (:mod:`cimlab.sim.chip_backend`), ``settle_s`` after programming.
6. In-field BN calibration on the chip with 256 training samples (paper 000 Fig. 9: "when the
   weights are written to the CNN for the first time"), accuracy again.
7. A 150 degC bake in the emulated oven (virtual clock), accuracy again (retention loss).
8. BN calibration again ("after long term operation"), accuracy again.

For every step the fitted model predicts the accuracy: the simulator with the same placement
(logical tiles of ``rows_per_mvm x 64``, same DAC/ADC, IR drop, output-referred read noise),
programmed ``mc_trials`` times, aged by the same thermal history (the oven's ramps integrated
piecewise) and BN-calibrated with the same samples. The run ends with a table (step, chip
accuracy, predicted mean ± std, predicted range) and PNG plots; everything is written under
``out``. The same seed gives the same numbers (the emulated chip, training, program-verify and
the Monte Carlo are all seeded).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cimlab.errors import ConfigError
from cimlab.params import check, param

STEPS = ("as programmed", "as programmed + BN cal", "after bake", "after bake + BN cal")

STATION_TEMPLATE = """\
# Station of `cimlab demo`: the built-in emulated bench (written by cimlab.demo).
[station]
name = "cimlab demo (emulated)"
clock = "virtual"

[emulator]
start = true
profile = "{profile}"
seed = {seed}
host = "127.0.0.1"
ports = {{ array = 5025, smu = 5026, oven = 5027, clock = 5028 }}

[instruments.array]
address = "emulator"
backend = "@py"
timeout_s = 60.0

[instruments.oven]
address = "emulator"
backend = "@py"
timeout_s = 10.0

[instruments.clock]
address = "emulator"
backend = "@py"
timeout_s = 10.0

[limits]
set_bl_max_v = 3.0
set_wl_max_v = 3.5
reset_sl_max_v = 3.0
reset_wl_max_v = 5.0
set_icc_max_a = 700e-6
pulse_width_max_s = 1e-3
read_v_max_v = 0.5
mvm_v_max_v = 0.5
smu_v_max_v = 0.5
smu_i_max_a = 1e-3
oven_temp_max_c = 200.0

[calibration.transistor]
model = "square_law"
k_a_per_v2 = 2e-4
v_th_v = 0.5
"""


def station_text(seed: int, profile: str = "default") -> str:
    """Station file of an in-process emulated bench (chip ``profile``, emulator ``seed``)."""
    return STATION_TEMPLATE.format(seed=int(seed), profile=str(profile))


@dataclass(frozen=True)
class DemoConfig:
    """Settings of ``cimlab demo`` (``quick`` shrinks everything for tests)."""

    seed: int = param(0, unit="1", lo=0, doc="seed of the emulated chip, training and Monte Carlo")
    quick: bool = param(False, doc="reduced sizes (tests): fewer epochs, test images, BN "
                        "samples and trials")
    width: float = param(0.0625, unit="1", lo=0.0, lo_open=True, doc="paper000-cnn width")
    epochs: int = param(30, unit="1", lo=1, doc="training epochs")
    noise_sigma_rel: float = param(0.15, unit="1", lo=0.0, hi=1.0,
                                   doc="HA-SGD weight noise / wmax (paper 002)")
    rows_per_mvm: int = param(64, unit="1", lo=1, doc="rows driven per MVM")
    settle_s: float = param(60.0, unit="s", lo=0.0, doc="wait after programming")
    bake_temp_c: float = param(150.0, unit="degC", lo=30.0, hi=200.0, doc="bake temperature")
    bake_s: float = param(3600.0, unit="s", lo=0.0, doc="soak time of the bake")
    bake_ramp_k_per_s: float = param(0.5, unit="K/s", lo=0.0, lo_open=True, hi=0.5,
                                     doc="oven ramp rate")
    bn_samples: int = param(256, unit="1", lo=2, doc="BN calibration samples (training set)")
    mc_trials: int = param(30, unit="1", lo=1, doc="simulated programmings per prediction")
    test_samples: int | None = param(None, unit="1", lo=10, doc="test images (None: all 450)")
    batch_size: int = param(150, unit="1", lo=1, doc="evaluation batch")

    def __post_init__(self) -> None:
        check(self)

    @classmethod
    def make(cls, seed: int = 0, quick: bool = False, **changes: Any) -> DemoConfig:
        base = dict(seed=seed, quick=quick)
        if quick:
            base.update(epochs=12, mc_trials=10, test_samples=150, bn_samples=128)
        base.update(changes)
        return cls(**base)


@dataclass
class DemoResult:
    """What the demo measured and predicted (also written to ``<out>/summary.json``)."""

    out: str
    steps: list[dict[str, Any]]
    program_verify: dict[str, Any]
    timing_s: dict[str, float]
    fit: dict[str, Any] = field(default_factory=dict)
    digital_accuracy: float = float("nan")
    mc_accuracies: dict[str, list[float]] = field(default_factory=dict)

    def table(self) -> str:
        head = (f"{'step':26s} {'chip':>7s} {'predicted mean ± std':>22s} "
                f"{'predicted range':>17s} {'in range':>9s} {'sigma off':>9s}")
        lines = [head, "-" * len(head)]
        for s in self.steps:
            lines.append(
                f"{s['step']:26s} {s['chip']:7.3f} {s['pred_mean']:14.3f} ± {s['pred_std']:.3f}"
                f" {s['pred_min']:8.3f} - {s['pred_max']:.3f} "
                f"{'yes' if s['within_range'] else 'NO':>8s} {s['z']:+9.2f}")
        lines.append("-" * len(head))
        n = len(next(iter(self.mc_accuracies.values()), []))
        lines.append(f"predicted: {n} simulated programmings with the device model fitted to "
                     "the characterization (range = lowest - highest; sigma off = (chip - "
                     "predicted mean) / predicted std)")
        lines.extend(mismatch_lines(self.steps))
        lines.append(f"digital (float) network: {self.digital_accuracy:.3f}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {"out": self.out, "steps": self.steps, "program_verify": self.program_verify,
                "timing_s": self.timing_s, "fit": self.fit,
                "digital_accuracy": self.digital_accuracy, "mc_accuracies": self.mc_accuracies}


# --------------------------------------------------------------------------- the plan
#: A step whose chip accuracy is this many predicted std from the mean is called out.
MISMATCH_SIGMA = 1.5

#: Known cause of a chip *above* the prediction (docs/network-on-chip.md, measured on the
#: demo's chip): the fitted model's spread of the g_min cells is wider than the chip's.
KNOWN_CAUSE_ABOVE = (
    "known cause (chip above the prediction): the fitted model's spread at the bottom of the "
    "window (the g_min cells, half of all cells) is wider than the chip's (60 s after verify, "
    "at 2 µS: model ~2.0 µS, chip ~1.6 µS; the model's Gaussian relaxation ignores that the "
    "chip's distribution is bounded near 0 S), so it predicts too much damage; the "
    "simulator fed with the chip's read-back conductances reproduces the chip (0.92 vs 0.92 "
    "after BN cal.), see docs/network-on-chip.md")
NO_KNOWN_CAUSE_BELOW = (
    "chip below the prediction: no known cause; the fitted model misses a loss the chip has")


def mismatch_lines(steps: list[dict[str, Any]]) -> list[str]:
    """Lines naming every step whose chip accuracy is outside the predicted range or more
    than :data:`MISMATCH_SIGMA` predicted std from the mean, with the known cause."""
    bad = [s for s in steps if not s["within_range"] or abs(s["z"]) > MISMATCH_SIGMA]
    lines = [f"MISMATCH {s['step']}: chip {s['chip']:.3f} is {s['z']:+.2f} sigma from the "
             f"predicted mean {s['pred_mean']:.3f}"
             + ("" if s["within_range"] else ", outside the predicted range") for s in bad]
    if any(s["z"] > 0 for s in bad):
        lines.append(KNOWN_CAUSE_ABOVE)
    if any(s["z"] < 0 for s in bad):
        lines.append(NO_KNOWN_CAUSE_BELOW)
    return lines


def characterization_plan(config: DemoConfig, geometry: tuple[int, int, int]) -> dict[str, Any]:
    """A small plan on the chip's last tiles (the network uses the first ones). ``--quick``
    uses the same plan: it costs ~1-2 s (virtual clock, vectorised), and a smaller one fits
    a model too rough for the prediction to mean anything (e.g. a relaxation drift of the
    wrong sign at 2 uS)."""
    n_tiles, rows, cols = geometry
    per_tile = rows * cols
    t = n_tiles - 1
    verify = {"scheme": "adaptive", "tolerance_siemens": 1e-6}
    return {
        "plan": {
            "name": "demo",
            "description": "cimlab demo characterization",
            "seed": 1000 + config.seed,
        },
        "experiment": [
            {"kind": "fault_map", "cells": {"start": t * per_tile, "count": 8192}},
            {
                "kind": "programming_error",
                "modes": ["verify"],
                "cells": {"start": (t - 1) * per_tile, "count": 4096},
                "levels": {"levels": 16, "g_min_siemens": 2e-6, "g_max_siemens": 40e-6},
                "verify": verify,
            },
            {
                "kind": "read_fluctuation",
                "cells": {"start": (t - 2) * per_tile, "count": 1024},
                "repeats": 50,
                "settle_s": 3600.0,
                "verify": verify,
            },
            {
                "kind": "relaxation",
                "cells": {"start": (t - 3) * per_tile, "count": 4096},
                "times_s": [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0],
                "verify": verify,
            },
            {
                "kind": "bake_retention",
                "cells": {"start": (t - 4) * per_tile, "count": 2048},
                "temps_c": [125.0, 150.0],
                "schedule_s": [60.0, 600.0, 3600.0],
                "verify": verify,
            },
        ],
    }


# --------------------------------------------------------------------------- helpers
def _loader(x, y, batch_size: int):
    from torch.utils.data import DataLoader, TensorDataset

    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)


def thermal_history(t_start: float, t_end: float, bakes: list[Any], ambient_c: float,
                    ramp_segments: int = 24) -> list[tuple[float, float]]:
    """(seconds, temp_c) pieces from clock time ``t_start`` to ``t_end``: room time, and each
    oven bake's linear ramps (``ramp_segments`` pieces at their mid temperature) and soak."""
    pieces: list[tuple[float, float]] = []
    t = t_start
    for b in bakes:
        if b.start_s > t:
            pieces.append((b.start_s - t, ambient_c))
        for a, z, ta, tz in ((b.start_s, b.soak_start_s, ambient_c, b.temp_c),
                             (b.soak_start_s, b.soak_end_s, b.temp_c, b.temp_c),
                             (b.soak_end_s, b.end_s, b.temp_c, ambient_c)):
            if z <= a:
                continue
            n = 1 if ta == tz else ramp_segments
            edges = np.linspace(a, z, n + 1)
            for i in range(n):
                frac = (0.5 + i) / n
                pieces.append((float(edges[i + 1] - edges[i]), ta + (tz - ta) * frac))
        t = max(t, b.end_s)
    if t_end > t:
        pieces.append((t_end - t, ambient_c))
    return [(s, c) for s, c in pieces if s > 0]


def train_or_load(config: DemoConfig, ds: Any, path: Path, progress: bool):
    """The noise-aware-trained CNN, from the cache ``path`` when it matches ``config``."""
    import torch

    from cimlab.mitigation.hasgd import RelativeNoise, train_hasgd
    from cimlab.sim.nets import build
    from cimlab.sim.training import TrainConfig, load_checkpoint, save_checkpoint

    key = {"width": config.width, "epochs": config.epochs, "seed": config.seed,
           "noise_sigma_rel": config.noise_sigma_rel, "trainer": "hasgd-L1"}
    if path.is_file():
        try:
            net, ckpt = load_checkpoint(path)
            if ckpt.get("extra", {}).get("demo_key") == key:
                return net, float(ckpt["accuracy"]), True
        except ConfigError:
            pass
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = build("paper000-cnn", ds.in_shape, ds.n_classes, width=config.width, dropout=0.0)
    gen = torch.Generator().manual_seed(config.seed)
    train_hasgd(net, ds, RelativeNoise(config.noise_sigma_rel), samples=1,
                config=TrainConfig(epochs=config.epochs), generator=gen, progress=progress)
    net.eval()
    from cimlab.sim.evaluate import evaluate

    acc = evaluate(net, _loader(ds.x_test, ds.y_test, 256))
    save_checkpoint(path, net, ds, acc, extra={"demo_key": key})
    return net, acc, False


def predict(net: Any, dm: Any, placement_cfg: Any, test: Any, calib_x: Any,
            history: dict[str, list[tuple[float, float]]], trials: int, seed: int,
            progress: bool) -> dict[str, np.ndarray]:
    """The fitted model's prediction of the demo's four accuracies (on chip after
    programming, after BN calibration, after the bake, after BN calibration again): a Monte
    Carlo of ``trials`` programmings in the simulator with the chip's placement, converters
    and IR drop, aged by the same thermal ``history``; per step an array of accuracies."""
    import torch

    from cimlab.mitigation.bn_calibration import calibrate_bn
    from cimlab.sim.convert import convert
    from cimlab.sim.evaluate import evaluate, trial_seeds
    from cimlab.sim.placement import analog_config_for

    cfg = analog_config_for(dm, placement_cfg, 64, read_noise="output")
    out = {s: np.zeros(trials) for s in STEPS}
    seeds = trial_seeds(seed, trials)
    from tqdm.auto import tqdm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for i, s in enumerate(tqdm(seeds, desc="prediction (Monte Carlo)", unit="chip",
                                   disable=not progress, leave=False)):
            anet = convert(net, cfg)
            anet.program(torch.Generator().manual_seed(s))
            for sec, temp in history["settle"]:
                anet.age(sec, temp)
            out[STEPS[0]][i] = evaluate(anet, test)
            calibrate_bn(anet, calib_x)
            out[STEPS[1]][i] = evaluate(anet, test)
            for sec, temp in history["bake"]:
                anet.age(sec, temp)
            out[STEPS[2]][i] = evaluate(anet, test)
            calibrate_bn(anet, calib_x)
            out[STEPS[3]][i] = evaluate(anet, test)
    finally:
        torch.set_num_threads(threads)
    return out


# --------------------------------------------------------------------------- the demo
def run_demo(config: DemoConfig | None = None, out: str | Path = "data/demo",
             progress: bool = True, log: Any = print) -> DemoResult:
    """Run the whole loop on the emulated bench into ``out``: characterize a few tiles, fit
    a device model, train (or load) a small CNN, place and program it on the chip, measure
    its accuracy on chip, after BN calibration, after a 150 degC bake and after BN
    calibration again, each next to the fitted model's prediction; returns the
    :class:`DemoResult` (also written to ``out/summary.json``)."""
    import torch

    from cimlab.instruments.session import open_station, state_path_for
    from cimlab.mitigation.bn_calibration import calibrate_bn
    from cimlab.models.fit.store import fit_store_report
    from cimlab.procedures import plan_from_mapping, run_plan
    from cimlab.sim.chip_backend import ChipNetwork
    from cimlab.sim.data import load_dataset
    from cimlab.sim.evaluate import evaluate
    from cimlab.sim.placement import PlacementConfig, place_network
    from cimlab.sim.program_net import program_network, record_bn_calibration
    from cimlab.store import Store

    config = config or DemoConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stale = [out / n for n in ("demo.h5", "demo.h5.chip.npz", "demo.h5.emulator.pkl")
             if (out / n).exists()]
    if stale:  # a demo is a fresh chip: never resume one
        log("removing the previous demo's store and emulated chip: "
            + ", ".join(str(f) for f in stale))
        for f in stale:
            f.unlink()
    station_file = out / "station.toml"
    station_file.write_text(station_text(config.seed))
    store_path = out / "demo.h5"
    timing: dict[str, float] = {}
    t_all = time.perf_counter()
    torch_threads = torch.get_num_threads()
    ds = load_dataset("digits")
    n_test = config.test_samples or len(ds.y_test)
    x_test, y_test = ds.x_test[:n_test], ds.y_test[:n_test]
    test = _loader(x_test, y_test, config.batch_size)
    calib_x = ds.x_train[: config.bn_samples]

    # the emulated world is saved next to the store: `cimlab evaluate <out>/demo.h5` and
    # `cimlab bn-calibrate` continue on the demo's chip afterwards
    with open_station(station_file, state_path_for(store_path)) as st, \
            Store.open(store_path, mode="a") as store:
        geometry = tuple(int(g) for g in st.array.geometry)
        # 1. characterization
        t0 = time.perf_counter()
        log("[1/6] characterization (emulated bench, virtual clock)")
        plan = plan_from_mapping(characterization_plan(config, geometry), source="demo-plan")
        camp = run_plan(plan, st, store, progress=progress)
        timing["characterization"] = time.perf_counter() - t0
        # 2. fit
        t0 = time.perf_counter()
        log("[2/6] fit of the device model")
        rep = fit_store_report(store, name=f"demo-seed{config.seed}")
        dm = rep.model
        if dm.programming.mode != "verify":
            dm = dm.replace(programming=dm.programming_for("verify"))
        dm.save(out / "device_model.json")
        timing["fit"] = time.perf_counter() - t0
        # 3. training
        t0 = time.perf_counter()
        log("[3/6] noise-aware training of the CNN on the embedded digits")
        net, digital_acc, cached = train_or_load(config, ds, out / "net.pt", progress)
        torch.set_num_threads(torch_threads)
        digital_acc = evaluate(net, test)
        timing["training" + (" (cached)" if cached else "")] = time.perf_counter() - t0
        # 4. placement + program-verify
        t0 = time.perf_counter()
        log("[4/6] placement and program-verify of every network cell")
        pcfg = PlacementConfig(rows_per_mvm=config.rows_per_mvm)
        placement = place_network(net, geometry, dm, pcfg)
        prog = program_network(st, net, placement, store, seed=config.seed, progress=progress,
                               extra_meta={"demo": asdict(config),
                                           "station_file": str(station_file),
                                           "dataset": {"name": "digits", "image_size": None}})
        timing["program-verify"] = time.perf_counter() - t0
        # 5. chip-in-the-loop steps
        t0 = time.perf_counter()
        log("[5/6] chip-in-the-loop: evaluate, BN calibration, 150 degC bake, BN calibration")
        chip = ChipNetwork(net, placement, st.array)
        st.clock.sleep(config.settle_s)
        t_eval0 = st.clock.now()
        chip_acc: dict[str, float] = {}
        g_maps: dict[str, np.ndarray] = {"programmed": prog.g_verify_siemens}
        tick = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal tick
            now = time.perf_counter()
            timing[f"  {name}"] = now - tick
            tick = now

        g_maps["as programmed"] = chip.read_back()
        chip_acc[STEPS[0]] = evaluate(chip, test)
        lap("chip eval 1")
        calibrate_bn(chip, calib_x, batch_size=config.bn_samples)
        lap("chip BN cal 1")
        chip_acc[STEPS[1]] = evaluate(chip, test)
        lap("chip eval 2")
        st.oven.ramp_rate_k_per_s = config.bake_ramp_k_per_s
        bake = st.oven.bake(config.bake_temp_c, config.bake_s, st.clock)
        t_eval2 = st.clock.now()
        g_maps["after bake"] = chip.read_back()
        lap("bake")
        chip_acc[STEPS[2]] = evaluate(chip, test)
        lap("chip eval 3")
        bn_rep = calibrate_bn(chip, calib_x, batch_size=config.bn_samples)
        record_bn_calibration(store, prog.run_uid, bn_rep, data="digits",
                              clock_s=st.clock.now())
        lap("chip BN cal 2")
        chip_acc[STEPS[3]] = evaluate(chip, test)
        lap("chip eval 4")
        timing["chip-in-the-loop"] = time.perf_counter() - t0
        round_trips = chip.round_trips
        ambient_c = float(bake.ambient_c)
        history = {
            "settle": thermal_history(prog.program_end_s, t_eval0, [], ambient_c),
            "bake": thermal_history(t_eval0, t_eval2, [bake], ambient_c),
        }
        snapshot = st.snapshot()
    # 6. prediction
    t0 = time.perf_counter()
    log(f"[6/6] prediction: {config.mc_trials} simulated programmings with the fitted model")
    mc = predict(net, dm, pcfg, test, calib_x, history, config.mc_trials, config.seed,
                 progress)
    timing["prediction"] = time.perf_counter() - t0
    steps = []
    for s in STEPS:
        a = mc[s]
        sd = float(a.std(ddof=1)) if a.size > 1 else 0.0
        steps.append({"step": s, "chip": float(chip_acc[s]), "pred_mean": float(a.mean()),
                      "pred_std": sd, "pred_min": float(a.min()), "pred_max": float(a.max()),
                      "within_range": bool(a.min() - 1e-12 <= chip_acc[s] <= a.max() + 1e-12),
                      "z": float((chip_acc[s] - a.mean()) / sd) if sd > 0 else 0.0})
    with Store.open(store_path, mode="a") as store:
        run = store.begin_run("demo_steps", {"demo": asdict(config)}, snapshot=snapshot,
                              seeds={"demo": int(config.seed)}, resume=False)
        run.append("accuracy", {k: (np.array([s[k] for s in steps], dtype=object)
                                    if k == "step" else np.array([s[k] for s in steps]))
                                for k in ("step", "chip", "pred_mean", "pred_std", "pred_min",
                                          "pred_max")})
        run.append("predicted", {"step": np.repeat(np.array(STEPS, dtype=object),
                                                   config.mc_trials),
                                 "trial": np.tile(np.arange(config.mc_trials), len(STEPS)),
                                 "accuracy": np.concatenate([mc[s] for s in STEPS])})
        run.set_meta("bake", asdict(bake))
        run.set_meta("thermal_history", history)
        run.finish("completed")
    pv = dict(prog.summary)
    pv["chip_round_trips_inference"] = int(round_trips)
    timing["total"] = time.perf_counter() - t_all
    result = DemoResult(
        out=str(out), steps=steps, program_verify=pv, timing_s=timing,
        fit={"fitted": rep.fitted, "skipped": rep.skipped,
             "campaign_host_s": camp.host_time_s,
             "campaign_instrument_s": camp.instrument_time_s},
        digital_accuracy=float(digital_acc),
        mc_accuracies={s: [float(v) for v in mc[s]] for s in STEPS})
    (out / "summary.json").write_text(json.dumps(result.to_json(), indent=2))
    _plots(out, result, placement, g_maps)
    return result


def _plots(out: Path, result: DemoResult, placement: Any, g_maps: dict[str, np.ndarray]) -> None:
    from cimlab.sim import figures

    plt = figures.pyplot()
    # accuracy per step: chip vs prediction
    fig, ax = plt.subplots(figsize=(9.5, 4.2))
    xs = np.arange(len(result.steps))
    for i, s in enumerate(result.steps):
        acc = result.mc_accuracies[s["step"]]
        ax.scatter(np.full(len(acc), i) + np.linspace(-0.12, 0.12, len(acc)), acc, s=10,
                   color="0.65", zorder=1, label="simulated chips" if i == 0 else None)
    ax.errorbar(xs, [s["pred_mean"] for s in result.steps],
                yerr=[s["pred_std"] for s in result.steps], fmt="s", color="tab:blue",
                capsize=5, label="predicted mean ± std (fitted model)", zorder=2)
    ax.plot(xs, [s["chip"] for s in result.steps], "o-", color="tab:red", ms=8,
            label="emulated chip (measured)", zorder=3)
    ax.axhline(result.digital_accuracy, color="k", ls=":", lw=1, label="digital network")
    ax.set_xticks(xs, [s["step"].replace(" + ", "\n+ ") for s in result.steps], fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("cimlab demo: network on the chip vs the fitted model's prediction")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figures.save(fig, out / "accuracy_steps.png", dpi=120)

    # conductance maps of the four fullest chip tiles + error histograms
    cells = placement.all_cells().astype(np.int64) // (placement.geometry[1]
                                                         * placement.geometry[2])
    counts = np.bincount(cells, minlength=placement.geometry[0])
    tiles = sorted(np.argsort(-counts, kind="stable")[:4].tolist())  # the fullest tiles
    rl = placement.config.rows_per_mvm
    fig, axes = plt.subplots(1, len(tiles) + 1, figsize=(3.2 * (len(tiles) + 1), 4.2))
    for ax, t in zip(axes[:-1], tiles, strict=False):
        m = placement.tile_map(t, g_maps["as programmed"])[-rl:]
        im = ax.imshow(m * 1e6, aspect="auto", cmap="viridis", vmin=0, vmax=45)
        ax.set_title(f"chip tile {t} (bottom {rl} rows)", fontsize=8)
        ax.set_xlabel("column")
        ax.set_ylabel("row in group")
    fig.colorbar(im, ax=axes[-2], label="G [µS]")
    fig.suptitle(f"read-back conductance of the {len(tiles)} fullest of the "
                 f"{len(placement.used_tiles())} chip tiles the network uses", fontsize=9)
    tgt = placement.all_targets()
    ax = axes[-1]
    bins = np.linspace(-12, 12, 97)
    for key, color in (("programmed", "tab:green"), ("as programmed", "tab:blue"),
                       ("after bake", "tab:red")):
        ax.hist((g_maps[key] - tgt) * 1e6, bins=bins, histtype="step", color=color,
                label={"programmed": "last verify read", "as programmed": "read-back",
                       "after bake": "after bake"}[key])
    ax.set_yscale("log")
    ax.set_xlabel("G − target [µS]")
    ax.set_ylabel("cells per 0.25 µS bin")
    ax.set_title(f"error of the network's {tgt.size} cells", fontsize=8)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
              frameon=False)
    figures.save(fig, out / "conductance_maps.png", dpi=110)


__all__ = ["STEPS", "DemoConfig", "DemoResult", "characterization_plan", "run_demo",
           "thermal_history"]
