"""ReRAMChip API: arguments, determinism, truth streams, geometry."""

import numpy as np
import pytest

from cimlab.physics import ReRAMChip, load_profile
from tests.physics.conftest import small_profile


def _ops(chip):
    cells = np.arange(0, 1000, 3)
    out = [chip.pulse(cells, "reset", 3.0, 3.0, 1e-6, 1e-6),
           chip.pulse(cells, "set", 1.5, 1.0, 1e-6, 2e-6),
           chip.read(cells, 1.0)]
    chip.advance(10.0, 400.0)
    out.append(chip.read(cells, chip.time_s))
    out.append(chip.mvm(0, np.full((2, chip.rows), 0.1), chip.time_s))
    out.append(np.atleast_1d(chip.cell_current(7, 0.2, chip.time_s)))
    return out


def test_same_seed_same_results_different_seed_independent():
    a = _ops(ReRAMChip(small_profile(1, rows=64, cols=16), seed=42))
    b = _ops(ReRAMChip(small_profile(1, rows=64, cols=16), seed=42))
    c = _ops(ReRAMChip(small_profile(1, rows=64, cols=16), seed=43))
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    # another seed draws another chip: the cell-to-cell deviations of the reads (d2d spread,
    # step and read noise) are uncorrelated between the two, |r| within 4 / sqrt(n)
    da, dc = a[2] - a[2].mean(), c[2] - c[2].mean()
    r = float(np.corrcoef(da, dc)[0, 1])
    assert np.std(da) > 0 and abs(r) < 4 / np.sqrt(da.size), r


def test_truth_accessors_do_not_disturb_the_operation_stream():
    prof = small_profile(1, rows=64, cols=16)
    a, b = ReRAMChip(prof, seed=1), ReRAMChip(prof, seed=1)
    cells = np.arange(500)
    for chip in (a, b):
        chip.pulse(cells, "set", 2.0, 1.0, 1e-6, 1e-6)
    b.truth.stuck_mask()
    b.truth.programmed(cells)
    b.truth.ber("weak")
    b.truth.fault_codes()
    assert np.array_equal(a.read(cells, 10.0), b.read(cells, 10.0))
    # an observation of the hidden process uses its own stream: the operations draw the same
    # numbers (the later read then splits its increment at the observation, same law)
    b.truth.conductance(cells, 20.0)
    ga, gb = a.read(cells, 30.0), b.read(cells, 30.0)
    assert not np.array_equal(ga, gb) and np.corrcoef(ga, gb)[0, 1] > 0.99


def test_geometry_and_indexing():
    chip = ReRAMChip(load_profile("default"), seed=0)
    assert chip.geometry == (32, 256, 64)
    assert chip.n_cells == 32 * 256 * 64
    techb = ReRAMChip("techb", seed=0)
    assert techb.geometry == (8, 128, 32)
    assert techb.profile.name == "techb"


def test_argument_errors(chip4):
    c = np.arange(10)
    with pytest.raises(ValueError, match="polarity"):
        chip4.pulse(c, "form", 1.0, 1.0, 1e-6, 1.0)
    with pytest.raises(IndexError):
        chip4.pulse(np.array([chip4.n_cells]), "set", 1.0, 1.0, 1e-6, 1.0)
    with pytest.raises(IndexError):
        chip4.read(np.array([-1]), 1.0)
    with pytest.raises(TypeError):
        chip4.read(np.array([1.5]), 1.0)
    with pytest.raises(ValueError, match="width_s"):
        chip4.pulse(c, "set", 1.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="v_pulse"):
        chip4.pulse(c, "set", -1.0, 1.0, 1e-6, 1.0)
    with pytest.raises(ValueError, match="v_gate"):
        chip4.pulse(c, "set", 1.0, np.ones(3), 1e-6, 1.0)
    with pytest.raises(ValueError, match="v_read"):
        chip4.read(c, 1.0, v_read=0.0)
    with pytest.raises(TypeError):
        chip4.cell_current(np.array([1, 2]), 0.2, 1.0)
    chip4.read(c, 5.0)
    with pytest.raises(ValueError, match="backwards"):
        chip4.pulse(c, "set", 1.0, 1.0, 1e-6, 4.0)


def test_per_cell_arguments_and_empty_calls(chip4):
    c = np.arange(4)
    e = chip4.pulse(c, "set", np.array([0.5, 1.0, 1.5, 2.0]), 1.2,
                    np.array([1e-7, 1e-6, 1e-6, 1e-6]), 1e-6)
    assert e.shape == (4,) and np.all(e >= 0)
    assert chip4.pulse(np.array([], dtype=int), "set", 1.0, 1.0, 1e-6, 2e-6).shape == (0,)
    assert chip4.read(np.array([], dtype=np.uint32), 3e-6).shape == (0,)
    assert chip4.read(np.uint32(5), 4e-6).shape == (1,)
    # gate below the transistor threshold: no current, no switching, no energy
    g0, t0 = chip4.truth.programmed(c), chip4.truth.programmed_time(c)
    e = chip4.pulse(c, "reset", 3.0, 0.0, 1e-6, 5e-6)
    assert np.all(e == 0) and np.array_equal(chip4.truth.programmed(c), g0)
    assert np.array_equal(chip4.truth.programmed_time(c), t0)
