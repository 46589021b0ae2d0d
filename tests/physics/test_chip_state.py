"""Chip state: a chip restored from its state (in memory or from a .npz file) continues bit
for bit as the original does; foreign, damaged and newer files are refused with errors that
name the file and the entry."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from cimlab.errors import ConfigError
from cimlab.physics import ReRAMChip
from cimlab.physics.chip import STATE_FORMAT, STATE_VERSION
from cimlab.physics.state import load_npz, save_npz

from .conftest import small_profile

SET_GATE = 1.24  # V, ~55 uA compliance


def _history(chip: ReRAMChip) -> float:
    """Pulses, reads, MVMs (tile caches), a bake (epoch rebase) and wear: returns the time."""
    rng = np.random.default_rng(0)
    cells = np.arange(0, 3000, 3)
    chip.pulse(cells, "set", 2.0, SET_GATE, 1e-6, 1e-3)
    chip.pulse(cells[::2], "reset", rng.uniform(1.0, 2.0, cells[::2].size), 2.5, 1e-6, 2e-3)
    chip.read(cells, 3e-3)
    chip.mvm(0, rng.uniform(0, 0.1, (3, chip.rows)), 4e-3)
    chip.advance(600.0, 423.15)  # a 10 min bake at 150 degC: ~1e6 s equivalent, rebase
    chip.read(cells, 700.0)
    # wear a few cells out (strong SET/RESET cycles) so the fault codes change
    worn = np.arange(4000, 4400)
    for k in range(40):
        chip.pulse(worn, "set", 2.5, 2.95, 1e-6, 702.0 + 2 * k)
        chip.pulse(worn, "reset", 3.0, 2.95, 1e-6, 703.0 + 2 * k)
    chip.mvm(1, rng.uniform(0, 0.1, chip.rows), 790.0)  # tile 1 snapshot after the bake
    chip.cell_current(5, np.linspace(0, 0.3, 4), 800.0)
    chip.truth.conductance(cells[:50], 801.0)
    return 801.0


def _future(chip: ReRAMChip, t: float) -> list[np.ndarray]:
    """The same continuation on any chip: everything it returns must match bit for bit."""
    rng = np.random.default_rng(1)
    cells = np.arange(0, 5000, 7)
    v = rng.uniform(0, 0.1, (4, chip.rows))
    out = [
        chip.read(cells, t + 1.0),
        chip.mvm(1, v, t + 2.0),                        # cached snapshot of tile 1
        chip.mvm(1, v[0], t + 2.5, ir_drop=False),
        chip.pulse(cells, "set", 1.8, SET_GATE, 1e-6, t + 3.0),
        chip.read(cells, t + 4.0),
        chip.mvm(0, v, t + 5.0),                        # tile 0 rebuilt (its cells were pulsed)
        np.atleast_1d(chip.cell_current(11, np.linspace(0, 0.2, 5), t + 6.0)),
        chip.truth.conductance(cells, t + 7.0),
    ]
    chip.advance(3600.0, 398.15)
    out += [chip.read(cells, t + 3608.0), chip.mvm(0, v, t + 3609.0),
            chip.truth.fault_codes(), chip.truth.damage(), chip.truth.cycles(),
            chip.truth.programmed_time(cells), np.array([chip.time_s, chip.equivalent_time_s])]
    return out


def test_restored_chip_continues_bit_identically(tmp_path):
    chip = ReRAMChip(small_profile(2), seed=21)
    t = _history(chip)
    assert np.any(chip.truth.fault_codes() == 2)  # worn cells are part of the state
    state = chip.state_dict()
    from_memory = ReRAMChip.from_state(state)
    path = chip.save(tmp_path / "chip.npz")
    from_file = ReRAMChip.load(path)
    assert from_file.profile == chip.profile and from_file.seed == 21
    assert from_file.geometry == chip.geometry
    expected = _future(chip, t)
    for other in (from_memory, from_file):
        got = _future(other, t)
        for a, b in zip(expected, got, strict=True):
            np.testing.assert_array_equal(a, b)
    # and the states after the continuation are identical too (wires, caches, generators)
    s1, s2 = chip.state_dict(), from_file.state_dict()
    assert s1.keys() == s2.keys()
    for k in s1:
        np.testing.assert_array_equal(s1[k], s2[k], err_msg=k)


def test_the_snapshot_matters_for_bit_identity():
    """A chip that lost its MVM snapshots would answer differently: what the test above
    checks is not vacuous."""
    chip = ReRAMChip(small_profile(2), seed=5)
    t = _history(chip)
    twin = ReRAMChip.from_state(chip.state_dict())
    twin.clear_caches()
    v = np.full(chip.rows, 0.05)
    assert not np.array_equal(chip.mvm(1, v, t + 1), twin.mvm(1, v, t + 1))


def test_state_is_plain_data_and_self_describing():
    chip = ReRAMChip(small_profile(1), seed=[1, 2])
    chip.pulse(np.arange(10), "set", 2.0, SET_GATE, 1e-6, 0.0)
    st = chip.state_dict()
    assert st["format"] == STATE_FORMAT and st["format_version"] == STATE_VERSION
    for k, v in st.items():
        assert isinstance(v, (int, float, str, np.ndarray)), k
        if isinstance(v, np.ndarray):
            assert v.dtype.kind in "biuf", k
    assert json.loads(st["profile"])["geometry"]["n_tiles"] == 1
    assert json.loads(st["rng.ops"])["bit_generator"] == "PCG64"
    assert json.loads(st["seed"]) == [1, 2]
    # the state is a copy: the chip moving on does not change it
    g = st["cells.g_prog"].copy()
    chip.pulse(np.arange(10), "reset", 2.0, 2.5, 1e-6, 1.0)
    np.testing.assert_array_equal(st["cells.g_prog"], g)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    chip = ReRAMChip(small_profile(1), seed=3)
    chip.pulse(np.arange(100), "set", 2.0, SET_GATE, 1e-6, 0.0)
    path = chip.save(tmp_path_factory.mktemp("state") / "chip.npz")
    return path, load_npz(path)


def _write(tmp_path, state, name="bad.npz"):
    return save_npz(tmp_path / name, state)


@pytest.mark.parametrize("change, field, expected", [
    (lambda s: s.pop("format"), "format", "cimlab-chip-state"),
    (lambda s: s.update(format="something-else"), "format", "cimlab-chip-state"),
    (lambda s: s.update(format_version=STATE_VERSION + 1), "format_version", "newer cimlab"),
    (lambda s: s.update(format_version=0), "format_version", "integer in"),
    (lambda s: s.pop("cells.g_prog"), "cells.g_prog", "present"),
    (lambda s: s.update({"cells.g_prog": s["cells.g_prog"][:-1]}), "cells.g_prog", "shape"),
    (lambda s: s.update({"cells.damage": s["cells.damage"].astype(np.float32)}),
     "cells.damage", "float64"),
    (lambda s: s.update({"cells.x_obs": np.full_like(s["cells.x_obs"], np.nan)}),
     "cells.x_obs", "finite"),
    (lambda s: s.update({"cells.fault": np.full_like(s["cells.fault"], 7)}),
     "cells.fault", "fault codes"),
    (lambda s: s.update({"rng.ops": "{not json"}), "rng.ops", "JSON"),
    (lambda s: s.update({"rng.ops": json.dumps({"bit_generator": "MT19937"})}), "rng.ops",
     "PCG64"),
    (lambda s: s.update(profile=json.dumps({"geometry": {"rows": -3}})), "profile.geometry.rows",
     "[1, 4096]"),
    (lambda s: s.update({"cache.tiles": np.array([5], dtype=np.int64)}), "cache.tiles",
     "tile indices"),
    (lambda s: s.update({"clock.time_s": -1.0}), "clock.time_s", ">= 0"),
    (lambda s: s.update(extra=np.zeros(3)), "extra", "no such entry"),
])
def test_bad_state_names_file_and_entry(saved, tmp_path, change, field, expected):
    _path, state = saved
    bad = dict(state)
    change(bad)
    p = _write(tmp_path, bad)
    with pytest.raises(ConfigError) as ei:
        ReRAMChip.load(p)
    assert ei.value.field == field and str(p) in str(ei.value)
    assert expected in str(ei.value)


def test_damaged_foreign_and_pickled_files_are_refused(saved, tmp_path):
    path, _ = saved
    blob = path.read_bytes()
    cases = {
        "truncated.npz": blob[: len(blob) // 2],
        "text.npz": b"this is not an archive\n",
        "empty.npz": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "single.npy", np.zeros(3))
    # an archive with an object array (which only a pickle can hold) is refused, not unpacked
    with open(tmp_path / "objects.npz", "wb") as fh:
        np.savez(fh, format=np.array(STATE_FORMAT), payload=np.array([{"a": 1}], dtype=object))
    for name in [*cases, "single.npy", "objects.npz", "missing.npz"]:
        with pytest.raises(ConfigError) as ei:
            ReRAMChip.load(tmp_path / name)
        assert ei.value.field == "<file>" and name in str(ei.value), name
    # damaged data inside an intact archive directory (bad CRC / deflate stream)
    damaged = bytearray(blob)
    damaged[len(blob) // 3: len(blob) // 3 + 256] = bytes(256)
    (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
    with zipfile.ZipFile(tmp_path / "damaged.npz") as z:
        assert "cells.g_prog.npy" in z.namelist()  # the directory still reads
    with pytest.raises(ConfigError) as ei:
        ReRAMChip.load(tmp_path / "damaged.npz")
    assert ei.value.field == "<file>"


def test_load_state_failure_leaves_the_chip_unchanged(saved):
    _, state = saved
    chip = ReRAMChip(small_profile(1), seed=9)
    before = chip.state_dict()
    bad = dict(state)
    bad["d2d.set_rate"] = bad["d2d.set_rate"][:5]
    with pytest.raises(ConfigError, match=r"d2d\.set_rate"):
        chip.load_state(bad, source="x.npz")
    after = chip.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    chip.load_state(state)  # a good one replaces everything, profile included
    assert chip.time_s == 0.0 and chip.seed == 3


def test_save_is_atomic_and_refuses_objects(tmp_path):
    chip = ReRAMChip(small_profile(1), seed=1)
    p = chip.save(tmp_path / "c.npz")
    assert not (tmp_path / "c.npz.tmp").exists()
    with pytest.raises(TypeError, match="only numeric"):
        save_npz(tmp_path / "c.npz", {"x": np.array([object()])})
    assert ReRAMChip.load(p).seed == 1  # the failed save left the file as it was
