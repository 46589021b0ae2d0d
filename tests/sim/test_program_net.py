"""Programming a network onto the emulated chip: every cell verified in one vectorised loop,
the run in the store rebuilds the network, a killed run resumes; the CLI commands around it.
(The emulated chip between commands: tests/instruments/test_session.py.)"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

from cimlab.cli.main import main
from cimlab.demo import station_text
from cimlab.instruments.session import state_path_for
from cimlab.instruments.station import Station
from cimlab.sim.nets import build
from cimlab.sim.placement import place_network
from cimlab.sim.program_net import (
    RUN_KIND,
    load_programmed,
    program_network,
)
from cimlab.sim.training import save_checkpoint
from cimlab.store import Store
from tests.cli.test_json_outputs import _json  # stdout as one JSON object (--json)


def tiny_net():
    with torch.random.fork_rng():
        torch.manual_seed(11)
        net = build("paper000-cnn", (1, 8, 8), 10, width=0.03125, dropout=0.0)
    return net.eval()


@pytest.fixture()
def station_file(tmp_path):
    p = tmp_path / "station.toml"
    p.write_text(station_text(3))
    return p


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


def test_program_network_records_everything_and_resumes(station_file, tmp_path):
    net = tiny_net()
    with Station.open(station_file) as st, Store.open(tmp_path / "s.h5", "a") as store:
        placement = place_network(net, tuple(st.array.geometry))
        n = placement.n_cells
        crashing = types.SimpleNamespace(array=FailingArray(st.array, 3), clock=st.clock,
                                         limits=st.limits, path=st.path, snapshot=st.snapshot)
        with pytest.raises(RuntimeError, match="simulated crash"):
            program_network(crashing, net, placement, store, progress=False)
        assert store.run("last").status == "aborted"
        res = program_network(st, net, placement, store, progress=False)
        assert res.resumed_steps == ["erase", "placement"]  # verify restarts, nothing redone
        assert len(store.uids) == 1
        run = store.run(res.run_uid)
        assert run.kind == RUN_KIND and run.status == "completed"
        for table in ("placement", "programmed", "readback", "state"):
            assert table in run.tables
        assert run.n_rows("placement") == run.n_rows("programmed") == n
        s = res.summary
        # paper-level program-verify quality on every network cell (stuck cells aside)
        assert s["success_rate_responsive"] > 0.99
        assert s["success_rate"] > 0.97
        assert s["pulses_mean"] < 10
        assert s["round_trips"] < 4 * 80  # a couple of commands per iteration, not per cell
        # the store alone rebuilds the network and its placement
        stored = load_programmed(store)
        np.testing.assert_array_equal(stored.placement.all_cells(), placement.all_cells())
        np.testing.assert_allclose(stored.placement.all_targets(), placement.all_targets())
        x = torch.randn(4, 1, 8, 8)
        torch.testing.assert_close(stored.net(x), net(x))
        g = run.table("programmed")
        assert np.all(g["cell"].to_numpy() == placement.all_cells())


@pytest.mark.slow
def test_cli_program_evaluate_bn_calibrate(station_file, tmp_path, capsys):
    net = tiny_net()
    ckpt = save_checkpoint(tmp_path / "tiny.pt", net, {"name": "digits", "image_size": None},
                           0.0)
    store = tmp_path / "net.h5"
    capsys.readouterr()
    assert main(["program-net", str(ckpt), "--station", str(station_file), "--out", str(store),
                 "--json", "-q"]) == 0
    doc = _json(capsys)
    assert doc["store"] == str(store) and doc["summary"]["success_rate"] > 0.9
    # without its emulated-chip state the network is not on the chip: refused, not a blank
    # chip measured at chance
    state = state_path_for(store)
    kept = state.rename(tmp_path / "kept.npz")
    capsys.readouterr()
    assert main(["evaluate", str(store), "--samples", "60", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "emulated chip's state" in err and state.name in err and "program-net" in err
    assert str(ckpt) in err and not state.exists()
    kept.rename(state)
    assert main(["evaluate", str(store), "--samples", "60", "--json", "-q"]) == 0
    assert 0 <= _json(capsys)["accuracy"] <= 1
    assert main(["bn-calibrate", str(store), "--samples", "64", "--json", "-q"]) == 0
    assert _json(capsys)["samples"] == 64
    assert main(["evaluate", str(store), "--samples", "60", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("chip-in-the-loop accuracy") == 1
    with Store.open(store, "r") as s:
        kinds = [r.kind for r in s]
        assert kinds.count("chip_evaluation") == 2 and "bn_calibration" in kinds
        evals = [r for r in s if r.kind == "chip_evaluation"]
        assert evals[-1].table("accuracy")["bn_run"].astype(str).iloc[0] != "trained"


def test_program_net_too_large_network_names_the_file_and_writes_nothing(station_file,
                                                                          tmp_path, capsys):
    with torch.random.fork_rng():
        torch.manual_seed(1)
        big = build("paper000-cnn", (1, 8, 8), 10, width=0.25, dropout=0.0).eval()
    ckpt = save_checkpoint(tmp_path / "big.pt", big, {"name": "digits", "image_size": None},
                           0.0)
    before = sorted(p.name for p in tmp_path.iterdir())
    store = tmp_path / "chip.h5"
    assert main(["program-net", str(ckpt), "--station", str(station_file), "--out",
                 str(store), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert str(ckpt) in err and "<input>" not in err
    assert "32 available" in err and "--width 0.0625" in err
    # checked before anything was created: no store, no emulated-chip state
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not store.exists() and not state_path_for(store).exists()


@pytest.mark.parametrize("command", ["evaluate", "bn-calibrate"])
def test_mistyped_store_is_an_error_and_creates_nothing(tmp_path, capsys, command):
    typo = tmp_path / "typo.h5"
    assert main([command, str(typo)]) == 1
    err = capsys.readouterr().err
    assert str(typo) in err and "no such file" in err
    assert list(tmp_path.iterdir()) == []


def test_bn_calibration_with_progress_equals_calibrate_bn():
    from cimlab.cli.chipnet import calibrate_bn_with_progress
    from cimlab.mitigation.bn_calibration import calibrate_bn

    x = torch.randn(40, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    a, b = tiny_net(), tiny_net()
    ra = calibrate_bn(a, x, batch_size=16)
    rb = calibrate_bn_with_progress(b, x, batch_size=16, progress=False)
    assert ra.layers == rb.layers and ra.n_samples == rb.n_samples
    for sa, sb in zip(ra.after, rb.after, strict=True):
        torch.testing.assert_close(sa.running_mean, sb.running_mean)
        torch.testing.assert_close(sa.running_var, sb.running_var)


def test_help_shows_defaults(capsys):
    for command, flags in (("program-net", ("--first-tile", "--seed")),
                           ("evaluate", ("--bn", "--batch-size", "--quiet")),
                           ("bn-calibrate", ("--samples", "--quiet"))):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        for flag in flags:
            assert flag in text, (command, flag)
        if command != "bn-calibrate":
            assert text.count("(default") >= 3, command
    # the defaults themselves
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default auto)" in text and "(default 150)" in text
