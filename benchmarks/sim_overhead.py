"""Simulator overhead: converted (analog) forward vs plain PyTorch forward, same net and batch.

Networks: paper 000's CNN at CIFAR size (3x32x32, width 1, random input) and one large
Linear layer (4096 x 4096). Configurations:

* ``prog``: programming error only (effective weights precomputed in program());
* ``full``: 256x64 tiles, 8-bit per-tile ADC, 8-bit DAC, read noise (the default per-forward
  ``weight`` mode: one draw per cell per call, shared by the batch), programming error,
  stuck-at faults and IR drop (every switch on);
* ``full-output``: the same with output-referred read noise (independent per sample);
* ``full-flicker``: ``full`` with a 1/f read-noise spectrum (techA's fitted spectrum,
  docs/physics.md, its 1/f peak moved to the middle of the default window): the frozen offset
  is drawn with the derived arrays (after program()/age()) and folded into the effective
  weights, the per-forward sigmas come from the spectrum (docs/simulator.md, "Read noise
  with a 1/f part").

Also ``program()`` + ``age()`` time for the CNN (the Linear with ``--nets linear``), with
``prepare()`` (the arrays the forward pass reads, which program() and age() leave to the
first forward), scaled to 10 M weights, with and without the 1/f spectrum, and the read-noise
floor: the time of one fresh standard-normal draw per cell of the Linear (what the ``weight``
mode must draw per call), relative to the plain forward. Where aihwkit is importable, the
same networks through aihwkit's inference tile (optional). Ratios are measured in one run
with the same ``torch.set_num_threads`` on both sides, on wall time and on process CPU time
(robust when other processes share the machine); the 1-minute load average before and after
is recorded. ``--device cuda`` runs the same on a GPU (wall time, synchronised).
Usage: ``python benchmarks/sim_overhead.py [--threads 2] [--repeats 5] [--batch 128]
[--device cpu|cuda|auto] [--nets cnn linear] [--linear 4096]``. The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from _common import machine_info
from torch import nn


def _sync() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def best_time(fn, repeats: int) -> tuple[float, float]:
    """Best wall time and best process CPU time [s] of ``repeats`` calls after a warm-up.

    The CPU time (all threads of this process) is the robust figure on a shared machine,
    where other processes inflate the wall time."""
    with torch.no_grad():
        fn()
        _sync()
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            _sync()
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def noise_draw_time(n: int, dev: torch.device, repeats: int) -> tuple[float, float]:
    """Best wall and CPU time [s] of ``n`` fresh standard normals on ``dev`` (one generator)."""
    buf = torch.empty(n, device=dev)
    gen = torch.Generator(device=dev).manual_seed(0)
    return best_time(lambda: torch.randn(buf.shape, generator=gen, out=buf), repeats)


def aihwkit_ratio(net: nn.Module, x: torch.Tensor, plain_s: float, repeats: int):
    try:
        from aihwkit.nn.conversion import convert_to_analog
        from aihwkit.simulator.configs import InferenceRPUConfig
    except Exception:  # not installed: optional comparison
        return None
    anet = convert_to_analog(net, InferenceRPUConfig()).eval()
    t, c = best_time(lambda: anet(x), repeats)
    return {"time_s": t, "ratio": t / plain_s[0], "cpu_s": c, "cpu_ratio": c / plain_s[1]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (both sides)")
    ap.add_argument("--repeats", type=int, default=5, help="timed repeats (best is kept)")
    ap.add_argument("--batch", type=int, default=128, help="batch size")
    ap.add_argument("--linear", type=int, default=4096, help="size of the square Linear layer")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    ap.add_argument("--nets", nargs="+", choices=("cnn", "linear"), default=["cnn", "linear"],
                    help="networks to time (program() + age() on the first)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from dataclasses import replace

    from cimlab.models import DeviceModel
    from cimlab.sim import AnalogConfig, build, convert
    from cimlab.sim.devices import resolve_device

    dev = resolve_device(args.device)
    load_before = os.getloadavg()[0]
    dm = DeviceModel.default()
    # techA's fitted spectrum (docs/physics.md), 1/f peak at the default window's middle
    spec = replace(dm.read_noise_spectrum, g_ref=253e-6, s0=0.142e-6, s1=0.229e-6,
                   a_peak=1.93e-13, g_peak=dm.window.g_mid, g_width=54e-6, alpha0=1.13,
                   f_lo_hz=0.15, f_hi_hz=160.0, source="techA fit, peak moved")  # fmt: skip
    dm_flicker = dm.replace(read_noise_spectrum=spec)
    configs = {
        "prog": AnalogConfig.ideal(dm, programming_error=True),
        "full": AnalogConfig(device=dm, ir_drop=True),
        "full-output": AnalogConfig(device=dm, ir_drop=True, read_noise="output"),
        "full-flicker": AnalogConfig(device=dm_flicker, ir_drop=True),
    }
    torch.manual_seed(0)
    cnn = build("paper000-cnn", (3, 32, 32), 10, width=1.0).eval().to(dev)
    lin = nn.Sequential(nn.Linear(args.linear, args.linear)).eval().to(dev)
    nets = {}
    if "cnn" in args.nets:
        nets["paper000-cnn"] = (cnn, torch.randn(args.batch, 3, 32, 32, device=dev))
    if "linear" in args.nets:
        nets[f"linear{args.linear}"] = (lin, torch.randn(args.batch, args.linear, device=dev))
    rows = []
    result: dict = {"threads": args.threads, "batch": args.batch, "torch": torch.__version__,
                    "device": str(dev),
                    "machine": machine_info(load_1min_before=load_before)}  # fmt: skip
    for net_name, (net, x) in nets.items():
        plain = best_time(lambda net=net, x=x: net(x), args.repeats)
        entry = {"plain_s": plain[0], "plain_cpu_s": plain[1]}
        for cname, cfg in configs.items():
            anet = convert(net, cfg).program(torch.Generator().manual_seed(0))
            t, c = best_time(lambda anet=anet, x=x: anet(x), args.repeats)
            entry[cname] = {"time_s": t, "ratio": t / plain[0], "cpu_s": c,
                            "cpu_ratio": c / plain[1]}  # fmt: skip
            rows.append((net_name, cname, plain, (t, c)))
        if net is lin:  # one fresh standard normal per cell: the weight-mode noise floor
            nt, nc = noise_draw_time(args.linear * args.linear, dev, args.repeats)
            entry["noise_draw"] = {"normals": args.linear**2, "time_s": nt, "cpu_s": nc,
                                   "ratio": nt / plain[0], "cpu_ratio": nc / plain[1]}  # fmt: skip
        ai = aihwkit_ratio(net, x, plain, args.repeats)
        if ai is not None:
            entry["aihwkit"] = ai
            rows.append((net_name, "aihwkit", plain, (ai["time_s"], ai["cpu_s"])))
        result[net_name] = entry

    # program() + age() on the first network (all non-idealities), without and with 1/f
    pa_name, (pa_net, _) = next(iter(nets.items()))
    n_weights = sum(p.numel() for n, p in pa_net.named_parameters() if n.endswith("weight"))
    per10 = 1e7 / n_weights
    for key, cname in (("program_age", "full"), ("program_age_flicker", "full-flicker")):
        # program() and age() leave the derived arrays (IR-drop corrected weights, noise
        # arrays, ADC ranges) to the first forward: prepare() computes them, and is counted
        t_prog = c_prog = t_age = c_age = t_prep = c_prep = float("inf")
        for _ in range(args.repeats):  # best of the repeats (a shared machine's noise)
            anet = convert(pa_net, configs[cname])
            t0, c0 = time.perf_counter(), time.process_time()
            anet.program(torch.Generator().manual_seed(1))
            _sync()
            t_prog = min(t_prog, time.perf_counter() - t0)
            c_prog = min(c_prog, time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            anet.age(3600.0, temp_c=85.0)
            _sync()
            t_age = min(t_age, time.perf_counter() - t0)
            c_age = min(c_age, time.process_time() - c0)
            t0, c0 = time.perf_counter(), time.process_time()
            anet.prepare()
            _sync()
            t_prep = min(t_prep, time.perf_counter() - t0)
            c_prep = min(c_prep, time.process_time() - c0)
        result[key] = {"network": pa_name, "weights": n_weights, "program_s": t_prog,
                       "age_s": t_age, "prepare_s": t_prep, "program_cpu_s": c_prog,
                       "age_cpu_s": c_age, "prepare_cpu_s": c_prep,
                       "per_10M_weights_s": (t_prog + t_age + t_prep) * per10,
                       "per_10M_weights_cpu_s": (c_prog + c_age + c_prep) * per10}  # fmt: skip
    result["machine"]["load_1min_after"] = os.getloadavg()[0]

    print(f"{'network':<14} {'config':<11} {'plain ms':>9} {'analog ms':>10} {'ratio':>6} "
          f"{'plain cpu':>10} {'analog cpu':>11} {'cpu ratio':>9}")  # fmt: skip
    for net_name, cname, (p, pc), (t, c) in rows:
        print(f"{net_name:<14} {cname:<11} {p * 1e3:>9.1f} {t * 1e3:>10.1f} {t / p:>6.2f} "
              f"{pc * 1e3:>10.1f} {c * 1e3:>11.1f} {c / pc:>9.2f}")  # fmt: skip
    for key in ("program_age", "program_age_flicker"):
        pa = result[key]
        print(f"{key}: program() {pa['program_s']:.2f} s (cpu {pa['program_cpu_s']:.2f} s) + "
              f"age() {pa['age_s']:.2f} s (cpu {pa['age_cpu_s']:.2f} s) + prepare() "
              f"{pa['prepare_s']:.2f} s (cpu {pa['prepare_cpu_s']:.2f} s) for "
              f"{n_weights / 1e6:.2f} M weights ({pa_name}, all on): "
              f"{pa['per_10M_weights_s']:.2f} s (cpu {pa['per_10M_weights_cpu_s']:.2f} s) "
              "per 10 M")  # fmt: skip
    nd = result.get(f"linear{args.linear}", {}).get("noise_draw")
    if nd is not None:
        print(f"read-noise floor: {nd['normals'] / 1e6:.1f} M normals per call take "
              f"{nd['time_s'] * 1e3:.1f} ms = {nd['ratio']:.2f}x the plain Linear forward "
              f"(cpu {nd['cpu_ratio']:.2f}x)")
    print(f"load average (1 min) {load_before:.2f} before, "
          f"{result['machine']['load_1min_after']:.2f} after; device {dev}")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
