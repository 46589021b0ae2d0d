"""The generic (tabulated) pulse-response model: monotone, recovers the chip's mean response
on held-out cells, and lets the adaptive loop verify on chips whose pulse response has
another shape than the emulator's default law."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cimlab.instruments.station import Station
from cimlab.procedures.program_verify import (
    RESET,
    SET,
    ArrayOps,
    ProgramVerifyConfig,
    TabulatedResponse,
    measure_pulse_response,
    program_verify,
)
from cimlab.procedures.pulse_response import response_from_dict
from tests.procedures.bench_util import station_file

TILE = 256 * 64
LEVELS = np.linspace(2e-6, 40e-6, 16)


def _station(tmp_path, profile: str, seed: int = 7):
    path = station_file(tmp_path, seed=seed)
    path.write_text(path.read_text().replace('profile = "default"', f'profile = "{profile}"'))
    return Station.open(path)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A station on the default profile and a tabulated model fitted on 1024 cells."""
    with _station(tmp_path_factory.mktemp("pt"), "default") as st:
        cfg = ProgramVerifyConfig(response_model="tabulated")
        ops = ArrayOps(st.array)
        cells = np.arange(TILE, TILE + 1024, dtype=np.uint32)
        model = measure_pulse_response(ops, cells, cfg, np.random.default_rng(0))
        yield st, cfg, model


def test_tabulated_model_round_trips(fitted):
    _st, cfg, model = fitted
    assert cfg.response_model == "tabulated"
    assert isinstance(model, TabulatedResponse)
    back = response_from_dict(model.to_dict())
    g = np.geomspace(0.5e-6, 60e-6, 50)
    np.testing.assert_array_equal(back.mean_after(SET, g), model.mean_after(SET, g))
    np.testing.assert_array_equal(back.mean_after(RESET, g), model.mean_after(RESET, g))


def test_tabulated_model_is_monotone(fitted):
    """After-pulse conductance: non-decreasing in the conductance before (dense evaluation,
    between and beyond the nodes), in SET amplitude and gate, non-increasing in RESET
    amplitude; a SET never predicted to lower G, a RESET never to raise it."""
    _st, _cfg, m = fitted
    g = np.geomspace(0.3e-6, 120e-6, 400)
    s = m.mean_after(SET, g)                       # (g, gates, amps)
    r = m.mean_after(RESET, g)                     # (g, amps)
    tiny = 1e-15
    assert np.all(np.diff(s, axis=0) >= -tiny)
    assert np.all(np.diff(s, axis=1) >= -tiny)
    assert np.all(np.diff(s, axis=2) >= -tiny)
    assert np.all(np.diff(r, axis=0) >= -tiny)
    assert np.all(np.diff(r, axis=1) <= tiny)
    assert np.all(s >= g[:, None, None] - tiny) and np.all(r <= g[:, None] + tiny)
    # and it is not trivially flat: strong pulses move cells across the window
    inside = (g > 30e-6) & (g < 40e-6)
    assert s[g < 3e-6][:, -1, -1].min() > 20e-6 and r[inside][:, -1].max() < 5e-6


def test_tabulated_model_recovers_the_mean_response_on_held_out_cells(fitted):
    """On 1024 cells the model never saw, random pulses (the sweep's settings) from the states
    a random walk visits: the mean observed outcome agrees with the model's prediction in
    every bin of predicted step (per polarity) within 4 standard errors of the two samples
    (the held-out one and the fit's, ~8000 observations per polarity each) plus a resolution
    term of the table (2 % of the bin's mean step: linear interpolation between nodes)."""
    st, cfg, m = fitted
    ops = ArrayOps(st.array)
    cells = np.arange(3 * TILE, 3 * TILE + 1024, dtype=np.uint32)
    rng = np.random.default_rng(11)
    n = cells.size
    ops.pulse(cells, RESET, cfg.v_reset_max, cfg.v_gate_reset, cfg.width_s)
    g = ops.read(cells)
    pred, obs, pol, before = [], [], [], []
    na = m.set_v.size
    for _ in range(16):
        d = np.where(rng.random(n) < 0.5, SET, RESET)
        ks = rng.integers(0, m.set_gate.size * na, n)
        kr = rng.integers(0, m.reset_v.size, n)
        vp = np.where(d == SET, m.set_v[ks % na], m.reset_v[kr])
        vg = np.where(d == SET, m.set_gate[ks // na], cfg.v_gate_reset)
        ops.pulse(cells, d, vp, vg, cfg.width_s)
        g_new = ops.read(cells)
        ps = m.mean_after(SET, g).reshape(n, -1)[np.arange(n), ks]
        pr = m.mean_after(RESET, g)[np.arange(n), kr]
        pred.append(np.where(d == SET, ps, pr))
        obs.append(g_new)
        pol.append(d)
        before.append(g)
        g = g_new
    pred, obs, pol, before = (np.concatenate(x) for x in (pred, obs, pol, before))
    checked = 0
    for p in (SET, RESET):
        sel = pol == p
        step = np.abs(pred[sel] - before[sel])
        moving = step > 0.5e-6                     # pulses the model expects to move a cell
        resid = (obs[sel] - pred[sel])[moving]
        step = step[moving]
        edges = np.quantile(step, np.linspace(0, 1, 6))
        n_fit = m.n_observations / 2 * moving.mean()
        for lo, hi in itertools.pairwise(edges):
            b = (step >= lo) & (step <= hi)
            k = int(b.sum())
            sd = float(np.std(resid[b]))
            se = sd * np.sqrt(1.0 / k + 1.0 / (n_fit / 5))
            bias = float(np.mean(resid[b]))
            assert abs(bias) < 4 * se + 0.02 * float(np.mean(step[b])), (p, lo, hi, bias, se)
            checked += 1
    assert checked == 10


@pytest.mark.parametrize("profile", ["shaped", "stateful"])
def test_adaptive_verifies_on_differently_shaped_chips(tmp_path, profile):
    """The adaptive loop with the tabulated model (fitted on the chip itself) verifies >= 97 %
    of 2048 cells on the power-law-drive chip and on the chip whose switching rate depends on
    the present conductance (where the parametric model's form no longer holds)."""
    with _station(tmp_path, profile, seed=9) as st:
        prof = st.bench.chip.profile
        assert prof.set.drive_power == 3.0 if profile == "shaped" else prof.set.state_power > 0
        cells = np.arange(2 * TILE, 2 * TILE + 2048, dtype=np.uint32)
        tgt = LEVELS[np.random.default_rng(2).permutation(np.arange(cells.size) % 16)]
        cfg = ProgramVerifyConfig(calibration_cells=512, response_model="tabulated")
        res = program_verify(st.array, cells, tgt, cfg, rng=np.random.default_rng(1))
        working = st.bench.chip.truth.fault_codes()[cells] == 0
    assert res.success[working].mean() >= 0.97
    assert res.pulses.mean() < 10
