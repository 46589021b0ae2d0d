"""The emulator-state session of a station (cimlab.instruments.session): the emulated chip
persists between commands in a plain state file next to the store, a legacy state file is
refused, a missing one is refused for an in-process emulator, and a Ctrl-C while the station
closes is held back until the state is saved."""

from __future__ import annotations

import numpy as np
import pytest

from cimlab.demo import station_text
from cimlab.errors import ConfigError
from cimlab.instruments.session import (
    interrupt_deferred,
    open_station,
    require_chip_state,
    state_path_for,
)


@pytest.fixture()
def station_file(tmp_path):
    p = tmp_path / "station.toml"
    p.write_text(station_text(3))
    return p


def test_emulated_chip_persists_between_commands(station_file, tmp_path):
    store_path = tmp_path / "chip.h5"
    state = state_path_for(store_path)
    cells = np.arange(1000, 1400, dtype=np.uint32)
    with open_station(station_file, state) as st:
        st.array.pulse(cells, "set", 2.0, 0.9, 1e-7)
        st.clock.sleep(100.0)
        g1 = np.asarray(st.array.read(cells))
        t1 = st.clock.now()
    assert state.exists() and state.name == "chip.h5.chip.npz"
    with np.load(state, allow_pickle=False) as z:  # a plain archive: no code runs on load
        assert str(z["format"]) == "cimlab-emulated-bench"
    with open_station(station_file, state) as st:
        assert st.emulator_state["restored"] is True
        assert st.emulator_state["state_file"] == str(state)
        g2 = np.asarray(st.array.read(cells))
        assert st.clock.now() >= t1
    # same cells (read noise ~1 %, negligible relaxation between the two reads at t ~ 100 s)
    assert np.median(np.abs(g2 - g1) / g1) < 0.05
    assert np.median(g1) > 10e-6  # they were SET: not a fresh chip


def test_legacy_emulator_state_is_refused_not_read(station_file, tmp_path):
    store_path = tmp_path / "old.h5"
    legacy = tmp_path / "old.h5.emulator.pkl"
    legacy.write_bytes(b"whatever an older cimlab wrote")
    with pytest.raises(ConfigError) as ei, open_station(station_file, state_path_for(store_path)):
        pass
    assert str(legacy) in str(ei.value) and "program-net" in str(ei.value)
    assert legacy.read_bytes() == b"whatever an older cimlab wrote"
    assert not state_path_for(store_path).exists()


def test_missing_chip_state_is_refused_only_for_an_in_process_emulator(station_file,
                                                                       tmp_path):
    state = state_path_for(tmp_path / "chip.h5")
    with pytest.raises(ConfigError) as ei:
        require_chip_state(station_file, state, "re-run cimlab program-net x.pt")
    msg = str(ei.value)
    assert state.name in msg and "not on this chip" in msg and "program-net x.pt" in msg
    with pytest.raises(ConfigError), open_station(station_file, state, require_state=True):
        pass
    assert not state.exists()  # refused before the emulator started: nothing saved
    # a served emulator (start = false) or a real bench keeps its chip itself: fine
    served = tmp_path / "served.toml"
    served.write_text(station_file.read_text().replace("start = true", "start = false"))
    require_chip_state(served, state)


def test_interrupt_while_closing_is_held_back_then_raised():
    import os
    import signal

    done = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("the block ran to its end")
    assert done == ["the block ran to its end"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with interrupt_deferred():  # no interrupt: nothing raised
        pass
