"""Binary-switching experiments: bit error rate under programming conditions (paper 003),
stuck-at fault map (paper 004) and SET/RESET endurance cycling."""

from __future__ import annotations

import numpy as np

from cimlab.procedures.plan import BerExp, BinaryCondition, EnduranceExp, FaultMapExp
from cimlab.procedures.protocols import Bench, RunStore
from cimlab.procedures.run import ProcedureResult, ProcedureRun
from cimlab.procedures.verify_config import RESET, SET
from cimlab.stats import robust_sigma


# =========================================================================== BER
def _set_gate(station: Bench, cond: BinaryCondition) -> float:
    return float(station.gate_voltage_for(cond.icc_a))


def _reset_gate(cond: BinaryCondition, v_gate_set: float) -> float:
    """RESET word-line voltage: the condition's, or the SET one (RESET current ~ I_cc)."""
    return float(cond.v_gate_reset) if cond.v_gate_reset is not None else v_gate_set


def sense_reference(g_lrs: np.ndarray, g_hrs: np.ndarray) -> float:
    """1T1R read reference [S] from measured LRS and HRS conductances: the threshold that
    minimises the bit error rate of two lognormal states (paper 003 Fig. 1: resistance
    distributions are lognormal) fitted robustly (median and MAD of ln G, so the ~1 % stuck
    cells do not bend it) -- what a sense-amplifier reference trim does."""
    from scipy.optimize import minimize_scalar
    from scipy.special import ndtr

    def fit(g: np.ndarray) -> tuple[float, float]:
        x = np.log(np.maximum(g, 1e-12))
        mu = float(np.median(x))
        return mu, max(robust_sigma(x), 1e-6)

    (mu_l, s_l), (mu_h, s_h) = fit(g_lrs), fit(g_hrs)
    if mu_l <= mu_h:
        return float(np.exp(0.5 * (mu_l + mu_h)))

    def ber_at(x: float) -> float:
        return 0.5 * (float(ndtr((x - mu_l) / s_l)) + float(ndtr(-(x - mu_h) / s_h)))

    res = minimize_scalar(ber_at, bounds=(mu_h, mu_l), method="bounded",
                          options={"xatol": 1e-9})
    return float(np.exp(res.x))


def ber(station: Bench, store: RunStore, exp: BerExp, cells: np.ndarray, seed: int, *,
        plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Bit error rate under each programming condition, 1T1R and 2T2R (paper 003, Table I).

    Cells are split per condition (fresh cells, so wear from one condition does not bias
    another) and per structure. Each cycle writes a new random pattern: with ``precondition``
    every cell is first put in the state opposite to its bit (so each programmed bit is a
    switching event, as in paper 003's cycled arrays), then programmed (SET = LRS = bit 0 at
    ``gate_voltage_for(icc)``, RESET = HRS = bit 1) and read: one batched command per
    polarity and one batched read. 1T1R reads against a reference conductance ``g_ref_siemens``
    (default: :func:`sense_reference` fitted to cycle 0 of that condition, what a
    sense-amplifier reference trim does), 2T2R compares the two cells (paper 003 ref. [9]).

    ``bits``: condition, structure, cycle, cell, bit, read_bit, g_siemens (+ cell_b, g_b_siemens
    for the
    complementary cell of a 2T2R pair; -1/NaN for 1T1R; + g_pre_siemens, g_b_pre_siemens: the read
    after
    the precondition pulse, in the opposite state; NaN without ``precondition``), from which
    :func:`cimlab.procedures.report.stuck_cells` finds the cells that never switched.
    ``conditions``: condition, icc_a,
    v_reset, width_s, energy_per_bit_j (mean programming energy of one bit; 1T1R: one pulse,
    2T2R: two), energy_set_j, energy_reset_j, v_gate, g_ref_siemens.
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        per_cond = np.array_split(ctx.cells[: exp.cells_needed()], len(exp.conditions))
        bar = ctx.bar(len(exp.conditions) * exp.cycles, "BER")
        totals = {}
        for ci, cond in enumerate(exp.conditions):
            cc = per_cond[ci]
            layout = {}
            pos = 0
            for s in exp.structures:
                k = exp.bits * (1 if s == "1T1R" else 2)
                layout[s] = cc[pos: pos + k]
                pos += k
            v_gate_set = _set_gate(station, cond)
            g_ref = exp.g_ref_siemens
            stats = {"e_set": [], "e_reset": [], "e_bit_1t1r": [], "e_bit_2t2r": []}
            if g_ref is None and ctx.has_rows("conditions", condition=cond.name):
                df = ctx.run.table("conditions")
                g_ref = float(df.loc[df["condition"] == cond.name, "g_ref_siemens"].iloc[-1])
            for cyc in range(exp.cycles):
                step = f"{cond.name}-cycle-{cyc:06d}"
                if ctx.skip(step):
                    bar.update(1)
                    continue
                rng = np.random.default_rng([ctx.seed, ci, cyc])
                prog_cells, prog_dir = [], []
                bits = {}
                for s, sc in layout.items():
                    b = rng.integers(0, 2, exp.bits).astype(np.int8)
                    bits[s] = b
                    if s == "1T1R":
                        prog_cells.append(sc)
                        prog_dir.append(np.where(b == 0, SET, RESET))
                    else:
                        a, bb = sc[0::2], sc[1::2]
                        prog_cells += [a, bb]
                        prog_dir += [np.where(b == 0, SET, RESET), np.where(b == 0, RESET, SET)]
                pc = np.concatenate(prog_cells)
                pd = np.concatenate(prog_dir)
                vp = np.where(pd > 0, cond.v_set, cond.v_reset)
                v_gate_reset = _reset_gate(cond, v_gate_set)
                vg = np.where(pd > 0, v_gate_set, v_gate_reset)
                g_pre = np.full(pc.size, np.nan)
                if exp.precondition:  # every programmed bit is a switching event
                    ctx.pulse(pc, -pd, np.where(pd > 0, cond.v_reset, cond.v_set),
                              np.where(pd > 0, v_gate_reset, v_gate_set), cond.width_s)
                    # read the opposite state too (one batched read): every cell is then seen
                    # after a SET and after a RESET in each cycle, so cells that never switch
                    # (stuck, paper 004) are found from this run alone (report.stuck_cells)
                    g_pre = ctx.read(pc)
                e = ctx.pulse(pc, pd, vp, vg, cond.width_s)
                g = ctx.read(pc)
                # map back (pc is the concatenation in layout order)
                off = 0
                cols: dict[str, list] = {
                    k: []
                    for k in (
                        "condition",
                        "structure",
                        "cycle",
                        "cell",
                        "bit",
                        "read_bit",
                        "g_siemens",
                        "cell_b",
                        "g_b_siemens",
                        "g_pre_siemens",
                        "g_b_pre_siemens",
                    )
                }
                stats["e_set"].append(e[pd > 0])
                stats["e_reset"].append(e[pd < 0])
                for s in exp.structures:
                    b = bits[s]
                    if s == "1T1R":
                        gi = g[off: off + exp.bits]
                        ei = e[off: off + exp.bits]
                        off += exp.bits
                        if g_ref is None:
                            g_ref = sense_reference(gi[b == 0], gi[b == 1])
                        rb = (gi < g_ref).astype(np.int8)
                        cols["cell"].append(layout[s])
                        cols["g_siemens"].append(gi)
                        cols["cell_b"].append(np.full(exp.bits, -1, dtype=np.int64))
                        cols["g_b_siemens"].append(np.full(exp.bits, np.nan))
                        cols["g_pre_siemens"].append(g_pre[off - exp.bits: off])
                        cols["g_b_pre_siemens"].append(np.full(exp.bits, np.nan))
                        stats["e_bit_1t1r"].append(ei)
                    else:
                        ga = g[off: off + exp.bits]
                        gb = g[off + exp.bits: off + 2 * exp.bits]
                        ea = e[off: off + exp.bits]
                        eb = e[off + exp.bits: off + 2 * exp.bits]
                        off += 2 * exp.bits
                        rb = (ga < gb).astype(np.int8)
                        cols["cell"].append(layout[s][0::2])
                        cols["g_siemens"].append(ga)
                        cols["cell_b"].append(layout[s][1::2].astype(np.int64))
                        cols["g_b_siemens"].append(gb)
                        cols["g_pre_siemens"].append(g_pre[off - 2 * exp.bits: off - exp.bits])
                        cols["g_b_pre_siemens"].append(g_pre[off - exp.bits: off])
                        stats["e_bit_2t2r"].append(ea + eb)
                    cols["condition"].append(np.full(exp.bits, cond.name))
                    cols["structure"].append(np.full(exp.bits, s))
                    cols["cycle"].append(np.full(exp.bits, cyc))
                    cols["bit"].append(b)
                    cols["read_bit"].append(rb)
                if cyc == 0 and not ctx.has_rows("conditions", condition=cond.name):
                    e1 = np.concatenate(stats["e_bit_1t1r"]) if stats["e_bit_1t1r"] else None
                    e2 = np.concatenate(stats["e_bit_2t2r"]) if stats["e_bit_2t2r"] else None
                    ctx.append("conditions", {
                        "condition": np.array([cond.name]), "icc_a": np.array([cond.icc_a]),
                        "v_reset": np.array([cond.v_reset]), "width_s": np.array([cond.width_s]),
                        "energy_per_bit_j": np.array([float(np.mean(e1 if e1 is not None else
                                                                     e2 / 2))]),
                        "energy_per_bit_2t2r_j": np.array([float(np.mean(e2)) if e2 is not None
                                                           else np.nan]),
                        "energy_set_j": np.array([float(np.mean(np.concatenate(stats["e_set"])))]),
                        "energy_reset_j": np.array([float(np.mean(
                            np.concatenate(stats["e_reset"])))]),
                        "v_gate": np.array([v_gate_set]),
                        "g_ref_siemens": np.array([g_ref if g_ref is not None else np.nan])})
                ctx.append("bits", {k: np.concatenate(v) for k, v in cols.items()})
                ctx.complete(step)
                bar.update(1)
            totals[cond.name] = g_ref
        bar.close()
        return ctx.finish(g_ref_siemens=totals)


# =========================================================================== fault map
def fault_map(station: Bench, store: RunStore, exp: FaultMapExp, cells: np.ndarray, seed: int, *,
              plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """Find stuck-on / stuck-off cells with ``repeats`` strong SET/RESET probes.

    A cell that never opens a window of ``min_window_siemens`` between its SET and RESET reads is
    stuck: stuck-on above ``g_split_siemens``, stuck-off below. ``faults``: cell, state
    ("ok"/"stuck_on"/"stuck_off"), g_after_set_siemens, g_after_reset_siemens (last probe).
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        cond = exp.condition
        v_gate_set = _set_gate(station, cond)
        batches = [ctx.cells[i: i + exp.batch] for i in range(0, ctx.cells.size, exp.batch)]
        bar = ctx.bar(len(batches), "fault map")
        for b, c in enumerate(batches):
            step = f"batch-{b:04d}"
            if ctx.skip(step):
                bar.update(1)
                continue
            switched = np.zeros(c.size, dtype=bool)
            for _ in range(exp.repeats):
                ctx.pulse(c, SET, cond.v_set, v_gate_set, cond.width_s)
                g_set = ctx.read(c)
                ctx.pulse(c, RESET, cond.v_reset, _reset_gate(cond, v_gate_set), cond.width_s)
                g_reset = ctx.read(c)
                switched |= (g_set - g_reset) >= exp.min_window_siemens
            level = 0.5 * (g_set + g_reset)
            state = np.where(switched, "ok", np.where(level > exp.g_split_siemens, "stuck_on",
                                                      "stuck_off"))
            ctx.append("faults", {"cell": c, "state": state, "g_after_set_siemens": g_set,
                                  "g_after_reset_siemens": g_reset})
            ctx.complete(step)
            bar.update(1)
        bar.close()
        return ctx.finish()


# =========================================================================== endurance
def endurance(station: Bench, store: RunStore, exp: EnduranceExp, cells: np.ndarray, seed: int, *,
              plan_name: str = "", progress: bool = True) -> ProcedureResult:
    """SET/RESET cycling per condition; window (G_LRS, G_HRS) read at log-spaced cycles.

    Cells are split per condition. ``cycles``: condition, cycle, cell, g_lrs_siemens, g_hrs_siemens.
    A cycle without a read costs two round trips (SET batch, RESET batch), one with a read
    four.
    """
    with ProcedureRun.for_experiment(station, store, exp, cells, seed, plan_name=plan_name,
                                     progress=progress) as ctx:
        per_cond = np.array_split(ctx.cells, len(exp.conditions))
        reads = set(exp.read_cycles().tolist())
        marks = sorted(reads)
        bar = ctx.bar(len(exp.conditions) * exp.cycles, "endurance")
        for ci, cond in enumerate(exp.conditions):
            c = per_cond[ci]
            vg = _set_gate(station, cond)
            start = 0
            for m in marks:
                step = f"{cond.name}-to-{m:09d}"
                if ctx.skip(step):
                    bar.update(m + 1 - start)
                    start = m + 1
                    continue
                for cyc in range(start, m + 1):
                    ctx.pulse(c, SET, cond.v_set, vg, cond.width_s)
                    if cyc == m:
                        g_lrs = ctx.read(c)
                    ctx.pulse(c, RESET, cond.v_reset, _reset_gate(cond, vg), cond.width_s)
                    if cyc == m:
                        g_hrs = ctx.read(c)
                ctx.append(
                    "cycles",
                    {
                        "condition": np.full(c.size, cond.name),
                        "cycle": np.full(c.size, m),
                        "cell": c,
                        "g_lrs_siemens": g_lrs,
                        "g_hrs_siemens": g_hrs,
                    },
                )
                ctx.complete(step)
                bar.update(m + 1 - start)
                start = m + 1
        bar.close()
        return ctx.finish()


