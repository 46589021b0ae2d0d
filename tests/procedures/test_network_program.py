"""Programming a network's cells as a bench procedure on arrays (no torch): every cell
verified, the image's tables written, a crashed run resumed after its committed steps, and
the geometry and the limits checked before anything is written or sent."""

from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from cimlab.errors import ConfigError, LimitError
from cimlab.instruments.station import Station
from cimlab.procedures.network_program import RUN_KIND, ChipImage, program_image
from cimlab.procedures.program_verify import ProgramVerifyConfig
from cimlab.store import Store
from tests.procedures.bench_util import station_file


def image(geometry, n=512, seed=3):
    rng = np.random.default_rng(seed)
    cells = np.arange(n, dtype=np.uint32)
    target = rng.uniform(4e-6, 36e-6, n)
    return ChipImage(
        geometry=geometry,
        cells=cells,
        target_siemens=target,
        layer=np.repeat([0, 1], n // 2),
        parked=np.arange(n, n + 64),
        chip_tiles=1,
        plan={"network": "test image", "n": n},
        tables={"placement": {"cell": cells.astype(np.int64), "target_siemens": target}},
        meta={"network": {"name": "test"}},
    )


class FailingArray:
    """The station's array, raising on the ``fail_at``-th pulse command (a killed run)."""

    def __init__(self, array, fail_at):
        self._array, self._n, self._fail_at = array, 0, fail_at

    def pulse(self, *a, **k):
        self._n += 1
        if self._n == self._fail_at:
            raise RuntimeError("simulated crash")
        return self._array.pulse(*a, **k)

    def __getattr__(self, name):
        return getattr(self._array, name)


def test_program_image_verifies_every_cell_and_resumes(tmp_path):
    with Station.open(station_file(tmp_path)) as st, Store.open(tmp_path / "s.h5", "a") as s:
        img = image(tuple(int(g) for g in st.array.geometry))
        crashing = types.SimpleNamespace(array=FailingArray(st.array, 3), clock=st.clock,
                                         limits=st.limits, path=st.path, snapshot=st.snapshot)
        with pytest.raises(RuntimeError, match="simulated crash"):
            program_image(crashing, img, s, progress=False)
        assert s.run("last").status == "aborted"
        res = program_image(st, img, s, progress=False)
        assert res.resumed_steps == ["erase", "placement"]
        assert len(s.uids) == 1
        run = s.run(res.run_uid)
        assert run.kind == RUN_KIND and run.status == "completed"
        assert run.n_rows("placement") == run.n_rows("programmed") == img.cells.size
        assert run.n_rows("parked") == img.parked.size
        assert run.meta["network"] == {"name": "test"}
        prog = run.table("programmed")
        np.testing.assert_array_equal(prog["cell"].to_numpy(), img.cells)
        np.testing.assert_array_equal(prog["level"].to_numpy(), img.layer)
        # what the bench answered: verify reads inside +-1 uS of the targets for every cell
        # the procedure calls a success, and nearly every responsive cell succeeds
        ok = res.success
        assert np.all(np.abs(res.g_verify_siemens[ok] - img.target_siemens[ok]) <= 1e-6)
        assert res.summary["success_rate_responsive"] > 0.98
        assert res.summary["chip_tiles"] == 1
        assert np.isclose(res.summary["readback_within_tol"],
                          np.mean(np.abs(res.g_readback_siemens - img.target_siemens) <= 1e-6))


def test_wrong_geometry_and_limits_are_refused_before_anything_is_written(tmp_path):
    with Station.open(station_file(tmp_path)) as st, Store.open(tmp_path / "s.h5", "a") as s:
        n_tiles, rows, cols = (int(g) for g in st.array.geometry)
        with pytest.raises(ConfigError, match=r"placement\.geometry"):
            program_image(st, image((n_tiles, rows, cols // 2)), s, progress=False)
        too_hot = ProgramVerifyConfig(v_reset_max=3.5)  # the test station allows 3.0 V
        with pytest.raises(LimitError, match="reset_sl_max_v"):
            program_image(st, image((n_tiles, rows, cols)), s, pv_config=too_hot,
                          progress=False)
        assert s.uids == []


def test_image_arrays_must_agree():
    with pytest.raises(ConfigError, match=r"image\.target_siemens"):
        ChipImage(geometry=(1, 4, 4), cells=np.arange(4), target_siemens=np.ones(3),
                  layer=np.zeros(4), parked=np.arange(0), chip_tiles=1, plan={})


def test_procedure_does_not_load_torch():
    probe = "import sys, cimlab.procedures.network_program\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
