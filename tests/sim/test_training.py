"""Training loop, evaluation and checkpoints."""

from __future__ import annotations

import pytest
import torch

from cimlab.errors import ConfigError
from cimlab.sim import data, nets, training


@pytest.fixture(scope="module")
def digits():
    return data.load_dataset("digits")


def _fit(digits, seed, name="paper001-mnist", epochs=4):
    torch.manual_seed(seed)
    net = nets.build(name, digits.in_shape, 10)
    hist = training.train(
        net,
        digits,
        training.default_config(net, epochs),
        generator=torch.Generator().manual_seed(seed),
        progress=False,
    )
    return net, hist


def test_training_learns_and_is_reproducible(digits):
    torch.set_num_threads(1)
    net, hist = _fit(digits, 0)
    assert list(hist.columns) == ["epoch", "loss", "test_acc", "lr", "time_s"]
    assert hist.loss.iloc[-1] < hist.loss.iloc[0]
    # chance is 0.1; this net reaches ~0.85-0.9 after 4 epochs on the digits
    assert hist.test_acc.iloc[-1] > 0.6
    assert training.evaluate(net, digits) == pytest.approx(hist.test_acc.iloc[-1])
    _, hist2 = _fit(digits, 0)
    assert hist2.test_acc.tolist() == hist.test_acc.tolist()


def test_bnn_latent_weights_are_clipped(digits):
    torch.manual_seed(0)
    net = nets.build("paper003-bnn-mlp", digits.in_shape, 10, hidden=64)
    cfg = training.TrainConfig(epochs=1, lr=0.5)  # huge steps would push weights past 1
    training.train(net, digits, cfg, progress=False)
    for m in net.modules():
        if hasattr(m, "binary_weight"):
            assert float(m.weight.detach().abs().max()) <= 1.0


def test_checkpoint_roundtrip(tmp_path, digits):
    net, _ = _fit(digits, 1, epochs=1)
    acc = training.evaluate(net, digits)
    path = training.save_checkpoint(tmp_path / "net.pt", net, digits, acc)
    loaded, ckpt = training.load_checkpoint(path)
    assert ckpt["name"] == "paper001-mnist" and ckpt["dataset"]["name"] == "digits"
    assert ckpt["accuracy"] == pytest.approx(acc)
    assert training.evaluate(loaded, digits) == pytest.approx(acc)
    assert not loaded.training


def test_checkpoint_errors(tmp_path):
    with pytest.raises(ConfigError, match="existing file"):
        training.load_checkpoint(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"name": "lenet"}, bad)
    with pytest.raises(ConfigError, match="kwargs"):
        training.load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="checkpoint"):
        training.load_checkpoint(junk)


def test_config_validation():
    with pytest.raises(ConfigError):
        training.TrainConfig(epochs=0)
    with pytest.raises(ConfigError):
        training.TrainConfig(optimizer="rmsprop")


def test_cimlab_train_command_writes_a_checkpoint(tmp_path, capsys):
    from cimlab.cli.main import main

    out = tmp_path / "toy.pt"
    rc = main(
        [
            "train",
            "--net",
            "paper001-mnist",
            "--data",
            "digits",
            "--epochs",
            "2",
            "--out",
            str(out),
            "--quiet",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and str(out) in text
    net, ckpt = training.load_checkpoint(out)
    assert ckpt["extra"]["seed"] == 3 and ckpt["kwargs"]["in_shape"] == [1, 8, 8]
    ds = data.load_dataset("digits")
    assert training.evaluate(net, ds) == pytest.approx(ckpt["accuracy"])
    # a missing MNIST folder is a clear error, not a download
    rc = main(
        [
            "train",
            "--net",
            "lenet",
            "--data",
            "mnist",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "x.pt"),
        ]
    )
    assert rc == 1
    assert "train-images-idx3-ubyte" in capsys.readouterr().err
