"""The README's commands and snippets stay true: every `cimlab ...` line parses with the real
argument parser, and the Python snippets run."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from cimlab.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def _cimlab_lines() -> list[str]:
    lines = []
    for block in _blocks(""):
        for line in block.splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("cimlab "):
                lines.append(line)
    return lines


def test_readme_names_commands():
    assert len(_cimlab_lines()) >= 15


@pytest.mark.parametrize("line", _cimlab_lines())
def test_readme_command_parses(line: str):
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert callable(args.func), line


def test_readme_python_snippets_run(monkeypatch, tmp_path):
    import torch
    from torch import nn

    monkeypatch.chdir(ROOT)
    snippets = _blocks("python")
    assert len(snippets) == 2
    bench, sim = snippets
    ns: dict = {}
    exec(compile(bench, "README.md (bench snippet)", "exec"), ns)
    assert ns["g"].shape == (256,) and (ns["g"] > 0).all()

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 4))
    ns = {"net": net}
    exec(compile(sim, "README.md (simulator snippet)", "exec"), ns)
    y = ns["anet"](torch.rand(5, 16))
    assert y.shape == (5, 4) and torch.isfinite(y).all()
