"""The torch-free name lists of cimlab.cli._common match the packages that own them."""

from __future__ import annotations

from cimlab.cli import _common


def test_net_names_match_sim_nets():
    from cimlab.sim import nets

    assert set(_common.NET_NAMES) == set(nets.NETWORKS)


def test_datasets_match_sim_data():
    from cimlab.sim import data

    assert _common.DATASETS == data.DATASETS


def test_group_without_subcommand_prints_help_and_exits_2(capsys):
    from cimlab.cli.main import main

    for group in ("emulator", "station", "model"):
        assert main([group]) == 2
        assert "usage: cimlab " + group in capsys.readouterr().out
