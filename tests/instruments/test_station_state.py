"""Station.open with an emulator state file: the emulated chip persists between processes
(``[emulator] state`` in the station file, or ``Station.open(..., emulator_state=...)``);
a wrong or damaged state file is refused and left as it is."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.instruments import Station

ROOT = Path(__file__).resolve().parents[2]
EMULATED = ROOT / "instruments" / "emulated.toml"
CELLS = np.arange(100, 600, dtype=np.uint32)


def _station(tmp_path: Path, state: str | None = None, seed: int = 1) -> Path:
    """The default emulated station on a 2-tile chip (profile file next to it)."""
    (tmp_path / "small.toml").write_text("[geometry]\nn_tiles = 2\n")
    text = EMULATED.read_text()
    text = re.sub(r'^profile = "default".*$', f'profile = "{tmp_path / "small.toml"}"', text,
                  count=1, flags=re.M)
    text = re.sub(r"^seed = 1 .*$", f"seed = {seed}", text, count=1, flags=re.M)
    if state is not None:
        text = text.replace("[emulator]\n", f'[emulator]\nstate = "{state}"\n', 1)
    p = tmp_path / "station.toml"
    p.write_text(text)
    return p


def test_station_file_state_key_persists_the_chip(tmp_path):
    p = _station(tmp_path, state="chip.npz")  # relative: next to the station file
    state = tmp_path / "chip.npz"
    with Station.open(p) as st:
        assert st.emulator_state["restored"] is False
        assert st.emulator_state["state_file"] == str(state)
        st.array.pulse_set(CELLS, 2.0, st.gate_voltage_for(55e-6), 1e-6)
        st.clock.sleep(60.0)
        g_prog = st.bench.chip.truth.programmed(CELLS)
        t1 = st.clock.now()
    assert state.exists()
    with Station.open(p) as st:
        assert st.emulator_state["restored"] is True
        assert st.snapshot()["emulator_state"]["restored"] is True
        assert st.clock.now() >= t1  # the virtual clock continues
        np.testing.assert_array_equal(st.bench.chip.truth.programmed(CELLS), g_prog)
        g = np.asarray(st.array.read(CELLS))
        assert np.median(np.abs(g - g_prog) / g_prog) < 0.1  # read noise + relaxation
        assert np.median(g) > 10e-6  # SET cells: not a fresh chip
        # the outputs went off when the first station closed, and stay off in the saved world
        assert st.bench.world.oven_output is False


def test_open_argument_overrides_and_state_is_saved_after_an_error(tmp_path):
    p = _station(tmp_path)
    state = tmp_path / "elsewhere" / "w.npz"
    state.parent.mkdir()
    with pytest.raises(RuntimeError, match="boom"), \
            Station.open(p, emulator_state=state) as st:
        g_fresh = st.bench.chip.truth.programmed(CELLS)
        st.array.pulse_set(CELLS, 2.0, st.gate_voltage_for(55e-6), 1e-6)
        g_prog = st.bench.chip.truth.programmed(CELLS)
        raise RuntimeError("boom")
    # the pulses happened: the chip is what it is, error or not
    with Station.open(p, emulator_state=state) as st:
        np.testing.assert_array_equal(st.bench.chip.truth.programmed(CELLS), g_prog)
    with Station.open(p) as st:  # without a state: a fresh chip
        assert st.emulator_state["state_file"] is None
        # the same seed's as-fabricated chip, not the pulsed one
        np.testing.assert_array_equal(st.bench.chip.truth.programmed(CELLS), g_fresh)
        assert (g_prog != g_fresh).any()  # non-vacuous: the pulses did change the cells


def test_state_of_another_chip_is_refused_and_left_alone(tmp_path):
    p = _station(tmp_path, state="chip.npz")
    with Station.open(p):
        pass
    state = tmp_path / "chip.npz"
    before = state.read_bytes()
    (tmp_path / "other").mkdir()
    other = _station(tmp_path / "other", state=str(state), seed=2)
    with pytest.raises(ConfigError) as ei:
        Station.open(other)
    msg = str(ei.value)
    assert str(state) in msg and "seed 2" in msg and "Delete the state file" in msg
    assert state.read_bytes() == before


def test_damaged_state_is_refused_and_left_alone(tmp_path):
    p = _station(tmp_path)
    state = tmp_path / "w.npz"
    state.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ConfigError) as ei:
        Station.open(p, emulator_state=state)
    assert ei.value.field == "<file>" and str(state) in str(ei.value)
    assert state.read_bytes() == b"PK\x03\x04 not really a zip"


def _served(p: Path) -> Path:
    p.write_text(re.sub(r"^start = true", "start = false", p.read_text(), count=1, flags=re.M))
    return p


def test_state_needs_an_in_process_emulator(tmp_path):
    p = _served(_station(tmp_path, state="chip.npz"))
    with pytest.raises(ConfigError) as ei:
        Station.open(p)
    assert ei.value.field == "emulator.state"
    q = _served(_station(tmp_path))
    with pytest.raises(ConfigError, match=r"emulator\.start"):
        Station.open(q, emulator_state=tmp_path / "w.npz")
