"""``cimlab simulate`` end to end on the embedded digits (small checkpoint, few trials)."""

from __future__ import annotations

import json

import pytest
import torch

from cimlab.cli.main import main
from cimlab.sim import build, load_dataset, save_checkpoint, train
from cimlab.sim.training import TrainConfig


def _checkpoint(tmp_path):
    ds = load_dataset("digits")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = build("paper001-mnist", ds.in_shape, ds.n_classes)
    train(net, ds, TrainConfig(epochs=2), generator=torch.Generator().manual_seed(0),
          progress=False)  # fmt: skip
    return save_checkpoint(tmp_path / "net.pt", net, ds, 0.0)


def test_simulate_prints_distribution_and_writes_png(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    png = tmp_path / "acc.png"
    rc = main(["simulate", "--net", str(ckpt), "--trials", "3", "--test-samples", "120",
               "--adc-bits", "6", "--png", str(png), "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "mean" in out and "median" in out
    result = json.loads((tmp_path / "results.json").read_text())
    assert len(result["accuracies"]) == 3
    assert png.read_bytes()[:4] == b"\x89PNG"
    rc = main(["simulate", "--net", str(ckpt), "--trials", "1", "--test-samples", "60",
               "--per-layer", "--out", str(tmp_path), "--quiet", "--json"])  # fmt: skip
    assert rc == 0
    rows = json.loads(capsys.readouterr().out)["per_layer"]
    assert [r["injected"] for r in rows] == ["0", "3", "6", "10"]


def test_simulate_bad_net_names_the_problem(tmp_path, capsys):
    assert main(["simulate", "--net", str(tmp_path / "missing.pt")]) == 1
    assert "--net" in capsys.readouterr().err


def test_simulate_unknown_device_is_one_clear_error(tmp_path, capsys):
    assert main(["simulate", "--net", str(tmp_path / "x.pt"), "--device", "tpu9"]) == 1
    assert "--device" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_simulate_on_cuda(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    rc = main(["simulate", "--net", str(ckpt), "--trials", "2", "--test-samples", "120",
               "--device", "cuda", "--png", str(tmp_path / "a.png"), "--quiet"])  # fmt: skip
    assert rc == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["accuracies"]) == 2
