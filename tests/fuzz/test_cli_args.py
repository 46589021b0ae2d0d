"""Command-line arguments a user should not give: one line naming the option and what is
expected, exit status 2 (a usage error), nothing run."""

from __future__ import annotations

import argparse

import pytest

from cimlab.cli._common import bounded_int, file_path, nonneg_int, seed_int
from cimlab.cli.main import main
from tests.fuzz.mutate import one_clear_line

BAD = [
    (["report", "x.h5", "--max-rows", "-1"], "--max-rows"),
    (["report", "x.h5", "--max-rows", "many"], "--max-rows"),
    (["model", "extrapolate", "{model}", "--draws", "1000000000000"], "--draws"),
    (["model", "extrapolate", "{model}", "--seed", "-1"], "--seed"),
    (["model", "extrapolate", "{model}", "--seed", "9" * 5000], "--seed"),
    (["simulate", "--seed", "-1"], "--seed"),
    (["simulate", "--trials", "0"], "--trials"),
    (["simulate", "--workers", "100000"], "--workers"),
    (["train", "--epochs", "-5"], "--epochs"),
    (["program-verify", "--seed", "-1"], "--seed"),
    (["demo", "--seed", "-3"], "--seed"),
    (["reproduce", "--seed", "-1"], "--seed"),
    (["model", "show", "{dir}"], "model"),
    (["import", "{dir}"], "file"),
    (["nosuchcommand"], "command"),
    (["characterize"], "plan"),
]


@pytest.mark.parametrize("argv,option", BAD, ids=[" ".join(a)[:50] for a, _ in BAD])
def test_bad_arguments_are_one_line(argv, option, tmp_path, capsys, tally):
    tally.tried("CLI argument")
    model = tmp_path / "m.json"
    model.write_text("{}")
    argv = [a.replace("{model}", str(model)).replace("{dir}", str(tmp_path)) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert one_clear_line(err), err
    assert option in err and "--help" in err
    tally.handled("CLI argument")


@pytest.mark.parametrize("cmd", [["runs"], ["report"], ["fit"]])
def test_a_directory_as_the_store_is_one_line(cmd, tmp_path, capsys, tally):
    tally.tried("CLI argument")
    extra = ["--out", str(tmp_path / "m.json")] if cmd == ["fit"] else []
    assert main([*cmd, str(tmp_path), *extra]) == 1
    err = capsys.readouterr().err
    assert one_clear_line(err) and "not a directory" in err, err
    tally.handled("CLI argument")


def test_argument_types():
    assert bounded_int(1, 3)("2") == 2
    for text in ("0", "4", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            bounded_int(1, 3)(text)
    assert nonneg_int("0") == 0 and seed_int(str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(argparse.ArgumentTypeError):
        seed_int(str(2**63))
    with pytest.raises(argparse.ArgumentTypeError, match="directory"):
        file_path(".")
