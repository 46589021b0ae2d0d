"""Ctrl-C ends every command with exit status 130, also the servers whose normal way to stop
is Ctrl-C (``cimlab emulator serve``, ``cimlab watch``): a script or shell that runs them sees
the interrupt, not a success."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.procedures.bench_util import free_emulator_ports, station_file

ROOT = Path(__file__).resolve().parents[2]




def _interrupt_when_ready(argv: list[str], ready: str, timeout_s: float = 60.0
                          ) -> tuple[int, str]:
    """Run ``cimlab argv``, send SIGINT once stdout shows ``ready``; (exit status, output)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "cimlab.cli.main", *argv], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if ready in line:
                proc.send_signal(signal.SIGINT)
                break
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, "".join(seen) + out


def test_emulator_serve_exits_130_on_ctrl_c(tmp_path):
    station = station_file(tmp_path, name="served.toml")
    line = free_emulator_ports() + "\n"
    text = station.read_text().replace("seed = 1\n", "seed = 1\n" + line, 1)
    station.write_text(text)
    rc, out = _interrupt_when_ready(["emulator", "serve", "--station", str(station)],
                                    "Ctrl-C stops")
    assert rc == 130, out
    assert "stopping" in out


def test_watch_exits_130_on_ctrl_c(tmp_path):
    from cimlab.store import Store

    path = tmp_path / "s.h5"
    Store.open(path, mode="a").close()
    rc, out = _interrupt_when_ready(["watch", str(path), "--port", "0", "--no-plots"],
                                    "watching")
    assert rc == 130, out
