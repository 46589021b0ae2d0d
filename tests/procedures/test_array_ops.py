"""ArrayOps counts what the instruments answered: one query per batched command on the
integrated controller, every relay/generator/SMU query on a discrete bench."""

from __future__ import annotations

import numpy as np

from cimlab.instruments.station import Station
from cimlab.instruments.station_config import resolve_station
from cimlab.procedures.array_ops import ArrayOps


def _exercise(st: Station) -> ArrayOps:
    ops = ArrayOps(st.array)
    cells = np.arange(40, 48)
    ops.pulse(cells, +1, 2.0, st.gate_voltage_for(40e-6), 1e-6)
    ops.read(cells, n_reads=2)
    return ops


def test_integrated_bench_one_round_trip_per_command():
    st = Station.open(resolve_station("emulated"))
    try:
        ops = _exercise(st)
    finally:
        st.close()
    assert ops.commands == 2
    assert ops.round_trips == 2
    assert ops.cell_ops == 8 + 16


def test_discrete_bench_counts_every_instrument_query():
    st = Station.open(resolve_station("emulated-discrete"))
    try:
        before = st.array.round_trips
        ops = _exercise(st)
        answered = st.array.round_trips - before
    finally:
        st.close()
    assert ops.commands == 2
    # each of 8 pulses and 16 reads needs its relays routed and one query answered
    assert ops.round_trips == answered
    assert ops.round_trips >= 2 * (8 + 16)
