"""Program a trained network onto the chip (the network side), and read it back.

:func:`program_network` takes a network, its :class:`~cimlab.sim.placement.NetworkPlacement`
and an open station, turns them into a :class:`~cimlab.procedures.network_program.ChipImage`
(cells, targets, the placement and state tables, no torch past this point) and runs the bench
procedure :func:`cimlab.procedures.network_program.program_image`, which writes one resumable
run of kind ``"network_program"`` (its steps are described there). :func:`load_programmed`
rebuilds the network from that run; :func:`record_bn_calibration` and
:func:`apply_bn_calibration` keep in-field BN statistics in the same store.

The emulated chip between commands (state files next to the store, opening the station) is
the station layer's: :mod:`cimlab.instruments.session`. See docs/network-on-chip.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from cimlab.errors import ConfigError
from cimlab.procedures.network_program import (
    RUN_KIND,
    ChipImage,
    check_network_program,
    format_program_summary,
    program_image,
)
from cimlab.procedures.program_verify import ProgramVerifyConfig
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.sim.placement import NetworkPlacement


# --------------------------------------------------------------------------- results
@dataclass
class NetworkProgramResult:
    """What :func:`program_network` did."""

    run_uid: str
    placement: NetworkPlacement
    summary: dict[str, Any]
    g_verify_siemens: np.ndarray
    g_readback_siemens: np.ndarray
    pulses: np.ndarray
    success: np.ndarray
    stuck: np.ndarray
    program_end_s: float
    resumed_steps: list[str] = field(default_factory=list)

    def table(self) -> str:
        return format_program_summary(self.summary)


# --------------------------------------------------------------------------- network <-> table
def state_table(net: nn.Module) -> dict[str, np.ndarray]:
    """Every parameter and floating buffer of ``net`` as (key, index, value) rows."""
    keys, idx, vals = [], [], []
    for k, v in net.state_dict().items():
        if not torch.is_floating_point(v):
            continue
        flat = v.detach().double().reshape(-1).numpy()
        keys.append(np.full(flat.size, k, dtype=object))
        idx.append(np.arange(flat.size, dtype=np.int64))
        vals.append(flat)
    return {"key": np.concatenate(keys), "index": np.concatenate(idx),
            "value": np.concatenate(vals)}


def load_state_table(net: nn.Module, df: Any, source: str = "<store>") -> None:
    """Write a :func:`state_table` (DataFrame) back into ``net`` (shapes checked)."""
    sd = net.state_dict()
    keys = df["key"].astype(str).to_numpy()
    vals = df["value"].to_numpy(dtype=np.float64)
    idx = df["index"].to_numpy(dtype=np.int64)
    for k in np.unique(keys):
        if k not in sd:
            raise ConfigError(source, f"state.{k}", "a parameter of the stored network", k)
        m = keys == k
        t = sd[k]
        if int(m.sum()) != t.numel():
            raise ConfigError(source, f"state.{k}", f"{t.numel()} values", int(m.sum()))
        flat = np.empty(t.numel())
        flat[idx[m]] = vals[m]
        t.copy_(torch.from_numpy(flat).reshape(t.shape).to(t.dtype))


def net_digest(net: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in net.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- programming
def chip_image(net: nn.Module, placement: NetworkPlacement,
               extra_meta: dict[str, Any] | None = None) -> ChipImage:
    """``net`` placed by ``placement`` as the arrays and records the bench procedure
    programs: cells, targets, layer index, parked cells, the ``placement`` and ``state``
    tables, the run's plan record and metadata (network spec, placement, ``extra_meta``)."""
    spec = getattr(net, "spec", None)
    plan = {"network": spec, "network_sha256": net_digest(net),
            "placement": placement.to_meta()}
    meta = {"placement": placement.to_meta(), "network": spec, **(extra_meta or {})}
    return ChipImage(
        geometry=tuple(int(g) for g in placement.geometry), cells=placement.all_cells(),
        target_siemens=placement.all_targets(), layer=_layer_index(placement),
        parked=placement.unused_cells(), chip_tiles=len(placement.used_tiles()), plan=plan,
        tables={"placement": placement.table(), "state": state_table(net)}, meta=meta)


def program_network(
    station: Bench,
    net: nn.Module,
    placement: NetworkPlacement,
    store: RunStore,
    *,
    pv_config: ProgramVerifyConfig | None = None,
    seed: int = 0,
    progress: bool = True,
    resume: bool = True,
    extra_meta: dict[str, Any] | None = None,
) -> NetworkProgramResult:
    """Program ``net`` (placed by ``placement``) onto ``station``'s chip, into ``store``
    (:func:`cimlab.procedures.network_program.program_image`): one resumable run of kind
    ``"network_program"`` whose committed steps are ``placement`` (placement and network
    state tables), ``erase`` (deep RESET of the regions), ``verify`` (program-verify of all
    network cells) and ``readback``. ``pv_config``: a
    :class:`~cimlab.procedures.program_verify.ProgramVerifyConfig` (default: adaptive,
    +-1 uS). Limits are checked before the first pulse (the station raises LimitError)."""
    cfg = pv_config or ProgramVerifyConfig()
    check_program(station, placement, cfg)
    res = program_image(station, chip_image(net, placement, extra_meta), store,
                        pv_config=cfg, seed=seed, progress=progress, resume=resume)
    return NetworkProgramResult(
        run_uid=res.run_uid,
        placement=placement,
        summary=res.summary,
        g_verify_siemens=res.g_verify_siemens,
        g_readback_siemens=res.g_readback_siemens,
        pulses=res.pulses,
        success=res.success,
        stuck=res.stuck,
        program_end_s=res.program_end_s,
        resumed_steps=res.resumed_steps,
    )


def _layer_index(placement: NetworkPlacement) -> np.ndarray:
    return np.concatenate([np.full(lp.cells.size, i, dtype=np.int64)
                           for i, lp in enumerate(placement.layers.values())])


def check_program(station: Bench, placement: NetworkPlacement,
                  pv_config: ProgramVerifyConfig | None = None) -> None:
    """What :func:`program_network` checks before it writes or sends anything: the
    placement was made for ``station``'s chip, and program-verify's extreme voltages lie
    within the station's limits (ConfigError / LimitError)."""
    check_network_program(station, tuple(placement.geometry), pv_config)


# --------------------------------------------------------------------------- reading back
@dataclass
class StoredNetwork:
    """A programmed network as recorded in the store."""

    run_uid: str
    net: nn.Module
    placement: NetworkPlacement
    meta: dict[str, Any]
    readback_s: np.ndarray


def load_programmed(store: RunStore, run: str | None = None) -> StoredNetwork:
    """The network (digital parts as trained), placement and read-back of the newest
    completed ``network_program`` run (or ``run``, a uid or prefix) of ``store``."""
    from cimlab.sim.nets import rebuild

    src = str(getattr(store, "path", "<store>"))
    if run is None:
        runs = [r for r in store if r.kind == RUN_KIND and r.status == "completed"]
        if not runs:
            raise ConfigError(src, "runs", "a completed network_program run (program the "
                              "network first: cimlab program-net NET.pt --station ... --out "
                              f"{src})", "none")  # fmt: skip
        r = sorted(runs, key=lambda x: x.started_unix)[-1]
    else:
        r = store.run(run)
    meta = r.meta
    spec = meta.get("network")
    if not isinstance(spec, dict) or "name" not in spec:
        raise ConfigError(src, f"runs/{r.uid}@network", "the network spec (name, kwargs)", spec)
    net = rebuild(spec)
    net.eval()
    load_state_table(net, r.table("state"), src)
    placement = NetworkPlacement.from_meta(meta["placement"], r.table("placement"), src)
    rb = r.table("readback")["g_siemens"].to_numpy(dtype=float)
    return StoredNetwork(r.uid, net, placement, meta, rb)


def apply_bn_calibration(store: RunStore, net: nn.Module, after_unix: float = 0.0) -> str | None:
    """Install the newest completed ``bn_calibration`` run's statistics (newer than
    ``after_unix``) into ``net``'s BN layers; returns its uid (None if there is none)."""
    runs = [r for r in store if r.kind == "bn_calibration" and r.status == "completed"
            and r.started_unix >= after_unix]
    if not runs:
        return None
    r = sorted(runs, key=lambda x: x.started_unix)[-1]
    df = r.table("bn_stats")
    mods = dict(net.named_modules())
    for name, g in df.groupby(df["layer"].astype(str)):
        bn = mods.get(name, mods.get(name.removeprefix("net.")))
        if bn is None:
            raise ConfigError(getattr(store, "path", "<store>"), f"runs/{r.uid}/bn_stats.layer",
                              "a BN layer of the stored network", name)
        order = np.argsort(g["channel"].to_numpy())
        bn.running_mean.copy_(torch.from_numpy(g["running_mean"].to_numpy()[order]))
        bn.running_var.copy_(torch.from_numpy(g["running_var"].to_numpy()[order]))
    return r.uid


def record_bn_calibration(store: RunStore, network_run: str, report: Any, *, data: str = "",
                          snapshot: dict | None = None, clock_s: float | None = None,
                          emulator: dict | None = None) -> str:
    """Write a :class:`~cimlab.mitigation.bn_calibration.BNCalibrationReport` as a
    ``bn_calibration`` run (table ``bn_stats``: layer, channel, running_mean, running_var,
    before_mean, before_var; layer names relative to the network). Returns its uid."""
    run = store.begin_run("bn_calibration",
                          {"network_run": network_run, "data": data,
                           "samples": int(report.n_samples), "time_s": clock_s},
                          snapshot=snapshot or {}, resume=False)
    cols: dict[str, list] = {k: [] for k in ("layer", "channel", "running_mean", "running_var",
                                              "before_mean", "before_var")}
    for b, a in zip(report.before, report.after, strict=True):
        c = a.running_mean.numel()
        cols["layer"] += [a.name.removeprefix("net.")] * c
        cols["channel"] += list(range(c))
        cols["running_mean"] += a.running_mean.double().tolist()
        cols["running_var"] += a.running_var.double().tolist()
        cols["before_mean"] += b.running_mean.double().tolist()
        cols["before_var"] += b.running_var.double().tolist()
    run.append("bn_stats", {k: (np.array(v, dtype=object) if k == "layer" else np.asarray(v))
                            for k, v in cols.items()})
    run.set_meta("shift", report.shift)
    run.set_meta("emulator", emulator)
    run.finish("completed")
    return run.uid


__all__ = ["RUN_KIND", "NetworkProgramResult", "StoredNetwork", "apply_bn_calibration",
           "check_program", "chip_image", "load_programmed", "load_state_table",
           "program_network", "record_bn_calibration", "state_table"]
