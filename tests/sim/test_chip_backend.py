"""Chip-in-the-loop backend: with an ideal emulated chip it computes what the simulator
computes with the same (read-back) conductances; one MVM round trip per (chip tile, batch)."""

from __future__ import annotations

import numpy as np
import pytest
import tomli_w
import torch
from torch import nn

from cimlab.demo import station_text
from cimlab.instruments.station import Station
from cimlab.params import to_dict
from cimlab.physics import load_profile
from cimlab.sim.chip_backend import ChipConfig, ChipNetwork
from cimlab.sim.convert import convert
from cimlab.sim.placement import analog_config_for, place_network
from cimlab.sim.program_net import program_network
from cimlab.store import Store


def ideal_profile(path) -> str:
    """The default chip without read noise, relaxation, stuck cells and (practically) wires."""
    d = to_dict(load_profile("default"))
    d["name"] = "ideal-test"
    d["read"].update(sigma_floor=0.0, rel=0.0)
    d["relaxation"].update(b_peak=0.0, m_max=0.0)
    d["faults"].update(p_stuck=0.0)
    d["wires"].update(r_mean_ohm=1e-3, r_var_ohm2=0.0, r_min_ohm=1e-4)
    path.write_text(tomli_w.dumps(d))
    return str(path)


def net_for_test() -> nn.Module:
    torch.manual_seed(5)
    net = nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), nn.ReLU(),
        nn.Conv2d(6, 40, 3, padding=1, bias=False), nn.BatchNorm2d(40), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(40 * 16, 20), nn.ReLU(), nn.Linear(20, 10),
    )
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.eval()


@pytest.fixture(scope="module")
def ideal_chip(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ideal")
    prof = ideal_profile(tmp / "ideal.toml")
    st_file = tmp / "station.toml"
    st_file.write_text(station_text(7, prof))
    net = net_for_test()
    with Station.open(st_file) as st, Store.open(tmp / "s.h5", "a") as store:
        placement = place_network(net, tuple(st.array.geometry))
        res = program_network(st, net, placement, store, progress=False)
        yield st, net, placement, res


def sim_with_cells(net, placement, g, **changes):
    """The simulator's network with the chip's read-back conductances as its cells."""
    cfg = analog_config_for(None, placement.config, placement.geometry[2], read_noise=None,
                            ir_drop=False, programming_error=False, stuck=False, **changes)
    anet = convert(net, cfg)
    anet.program(torch.Generator().manual_seed(0))
    pos = 0
    for name, lp in placement.layers.items():
        layer = anet.layers[name]
        n = lp.cells.size
        gg = torch.as_tensor(g[pos:pos + n], dtype=layer.g_target.dtype)
        gg = gg.reshape(layer.g_target.shape)
        layer.set_cells(gg)  # install the chip's measured cells in the simulator
        pos += n
    return anet


@pytest.mark.parametrize("mode", ["two_phase", "bipolar"])
def test_ideal_chip_equals_simulator_with_the_same_cells(ideal_chip, mode):
    st, net, placement, res = ideal_chip
    assert res.summary["success_rate"] > 0.98
    chip = ChipNetwork(net, placement, st.array, ChipConfig(input_mode=mode))
    g = chip.read_back()
    anet = sim_with_cells(net, placement, g)
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))  # signed input
    with torch.no_grad():
        y_chip = chip(x)
        y_sim = anet(x)
    # float32 transport of voltages/currents can move a partial sum across an ADC (8 bit)
    # rounding boundary, and such a one-LSB difference propagates to later layers: compare
    # each layer on the same input, allowing at most one LSB per row tile, rarely
    feats = {}
    hooks = [anet.layers[n].register_forward_hook(
        lambda m, i, o, n=n: feats.__setitem__(n, i[0])) for n in placement.layers]
    with torch.no_grad():
        y_sim = anet(x)
        y_chip = chip(x)
    for h in hooks:
        h.remove()
    cases = [(n, feats[n]) for n in chip.layers]
    # small inputs put the bias row's input s beyond the DAC range: extra bias vector path
    cases += [(n, feats[n] * 1e-3) for n, lay in chip.layers.items() if lay.layout.has_bias]
    assert any(lay.bias_s / float(feats[n].abs().max() * 1e-3) > 1
               for n, lay in chip.layers.items() if lay.layout.has_bias)
    for name, xi in cases:
        layer = chip.layers[name]
        with torch.no_grad():
            a, b = layer(xi).double(), anet.layers[name](xi).double()
        xr = float(xi.abs().max())
        f = layer.mapping.slice_factors(dtype=torch.float64).numpy()
        lsb = layer.adc_ranges(xr, f).sum(axis=(0, 1)) / 127.0  # per output, all row tiles
        shape = (1, -1) + (1,) * (a.dim() - 2)
        bound = torch.as_tensor(lsb).reshape(shape) * 1.01
        d = (a - b).abs()
        assert bool((d <= bound).all()), name
        assert float((d > 1e-6 * b.abs().max()).double().mean()) < 0.02, name
    assert float((y_chip.argmax(1) == y_sim.argmax(1)).float().mean()) >= 0.9
    # without converters the agreement is float32-exact
    chip_nc = ChipNetwork(net, placement, st.array,
                          ChipConfig(input_mode=mode, dac_bits=None, adc_bits=None))
    chip_nc.set_conductances(g)
    anet_nc = sim_with_cells(net, placement, g, dac_bits=None, adc_bits=None)
    with torch.no_grad():
        np.testing.assert_allclose(chip_nc(x).numpy(), anet_nc(x).numpy(), rtol=2e-4,
                                   atol=2e-4 * float(anet_nc(x).abs().max()))
    # effective weights come from the read-back and match the simulator's
    for name, layer in chip.layers.items():
        torch.testing.assert_close(layer.effective_weight().double(),
                                   anet.layers[name].effective_weight().double(),
                                   rtol=1e-5, atol=1e-7)


def test_one_round_trip_per_chip_tile_and_batch(ideal_chip):
    st, net, placement, _ = ideal_chip
    chip = ChipNetwork(net, placement, st.array)
    chip.read_back()
    chip.backend.keep_log = True
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    n_before = len(bench_log(st))
    with torch.no_grad():
        chip(x)
    per_layer = {name: len({t[2] for t in lp.tiles}) for name, lp in placement.layers.items()}
    assert chip.round_trips == sum(per_layer.values())
    for name, n in per_layer.items():
        assert sum(1 for lay, _, _ in chip.backend.log if lay == name) == n
    # the emulated controller saw exactly those MVM commands, nothing per vector
    mvms = [m for m in bench_log(st)[n_before:] if "MVM" in m.upper()]
    assert len(mvms) == chip.round_trips
    # the first conv's two phases and the im2col vectors travel in one command
    assert chip.backend.log[0][2] == 2 * 32 * 64
    # disabling a layer makes it digital: no MVM for it
    chip.set_injection([n for n in placement.layers if n != "0"])
    rt = chip.round_trips
    with torch.no_grad():
        chip(x)
    assert chip.round_trips - rt == sum(per_layer.values()) - per_layer["0"]


def bench_log(st) -> list[str]:
    return st.bench.log("array")


def test_row_windows_give_the_full_width_currents_with_less_traffic(ideal_chip):
    """Sending only the driven rows (ARR:MVM:ROWS?) changes nothing but the traffic: the
    same layer outputs as full-width vectors (ARR:MVM?) on the ideal chip, the same round
    trips, and at most a quarter of the bytes for this net (64-row logical tiles on 256-row
    chip tiles; the first conv drives 10 rows)."""
    st, net, placement, _ = ideal_chip
    x = torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    outs, sent = {}, {}
    write = st.array.write_bytes
    for windows in (True, False):
        chip = ChipNetwork(net, placement, st.array,
                           ChipConfig(row_windows=windows, dac_bits=None, adc_bits=None))
        chip.read_back()
        n0 = len(bench_log(st))
        rt0 = chip.round_trips
        sent[windows] = 0

        def counting(data, windows=windows):
            sent[windows] += len(data)
            return write(data)

        st.array.write_bytes = counting
        try:
            with torch.no_grad():
                outs[windows] = chip(x).double()
        finally:
            st.array.write_bytes = write
        msgs = [m for m in bench_log(st)[n0:] if "MVM" in m.upper()]
        assert len(msgs) == chip.round_trips - rt0
        assert all(("MVM:ROWS" in m.upper()) == windows for m in msgs)
    torch.testing.assert_close(outs[True], outs[False], rtol=1e-5,
                               atol=1e-5 * float(outs[False].abs().max()))
    assert sent[True] < 0.25 * sent[False], sent
