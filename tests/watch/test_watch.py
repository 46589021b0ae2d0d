"""``cimlab watch``: tested over HTTP on 127.0.0.1. Steps committed to a store change the page;
the watch never writes the store; only loopback addresses are accepted."""

from __future__ import annotations

import hashlib
import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from cimlab.cli.main import main
from cimlab.errors import ConfigError
from cimlab.store import Store
from cimlab.watch import Watcher, WatchServer, check_loopback, planned_steps

TEMPS_C = [150.0]
SCHEDULE_S = [60.0, 3600.0, 36000.0]
N_CELLS = 64
PLANNED = len(TEMPS_C) * (2 + 2 * len(SCHEDULE_S))   # program, read 0, (bake, read) per entry
PLAN = {"plan": "bake-watch", "experiment": "bake",
        "section": {"kind": "bake_retention", "temps_c": TEMPS_C, "schedule_s": SCHEDULE_S}}


def _commit_steps(path: Path, steps: list[int]) -> None:
    """Write bake steps like the bake procedure does (reads table of the contract)."""
    gen = np.random.default_rng(1)
    cells = np.arange(N_CELLS, dtype=np.uint32)
    level = cells % 4
    target = 2e-6 + level * 1e-5
    with Store.open(path, "a") as store:
        run = store.begin_run("bake_retention", PLAN, snapshot={"station": "test"},
                              seeds={"procedure": 3})
        for k in steps:
            if k == 0 and "T0-program" not in run.completed_steps:
                run.complete_step("T0-program")
            if k > 0:
                run.append("bakes", {"temp_index": [0], "step": [k], "temp_k": [423.15],
                                     "soak_s": [SCHEDULE_S[k - 1]]})
                run.complete_step(f"T0-bake-{k:03d}")
            t = 0.0 if k == 0 else SCHEDULE_S[k - 1]
            run.append("reads", {
                "cell": cells, "level": level, "target_siemens": target, "step": k,
                "temp_k": 423.15, "bake_time_s": t, "temp_index": 0, "repeat": 0,
                "g_siemens": target - 1e-7 * np.log1p(t) + gen.normal(0, 3e-7, N_CELLS)})
            run.add_instrument_time(100.0)
            run.complete_step(f"T0-read-{k:03d}")


@pytest.fixture
def served(tmp_path):
    path = tmp_path / "bake.h5"
    _commit_steps(path, [0])
    watcher = Watcher(path, poll_s=0.0)
    server = WatchServer(watcher, "127.0.0.1", 0, refresh_s=2.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield path, server
    server.shutdown()
    server.server_close()
    thread.join(5)


def _get(url: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(url, timeout=60) as resp:
        return resp.status, resp.headers["Content-Type"], resp.read()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_page_follows_committed_steps_and_never_writes(served):
    path, server = served
    status, ctype, body = _get(server.url + "status.json")
    doc = json.loads(body)
    assert status == 200 and ctype == "application/json"
    (run,) = doc["runs"]
    assert run["steps_done"] == 2 and run["steps_planned"] == PLANNED
    assert run["experiment"] == "bake" and run["instrument_time_s"] == pytest.approx(100.0)
    page = _get(server.url)[2].decode()
    assert f"2 / {PLANNED} steps" in page and 'http-equiv="refresh" content="2"' in page
    assert "<script" not in page.lower()

    before = _digest(path)
    for _ in range(3):     # polling alone leaves the file byte for byte as it was
        _get(server.url)
        _get(server.url + "status.json")
    assert _digest(path) == before

    _commit_steps(path, [1, 2])
    doc = json.loads(_get(server.url + "status.json")[2])
    (run,) = doc["runs"]
    assert run["steps_done"] == 6 and run["last_step"] == "T0-read-002"
    assert run["rows"]["reads"] == 3 * N_CELLS
    assert run["instrument_time_s"] == pytest.approx(300.0)
    page = _get(server.url)[2].decode()
    assert f"6 / {PLANNED} steps" in page and "T0-read-002" in page

    names = doc["plots"][run["uid"]]
    assert names, f"no plots drawn; warnings: {doc['warnings']} {run['warnings']}"
    assert all(f'src="/plots/{n}"' in page for n in names)
    status, ctype, png = _get(server.url + "plots/" + names[0])
    assert status == 200 and ctype == "image/png" and png.startswith(b"\x89PNG\r\n\x1a\n")


def test_unknown_paths_and_writing_methods_are_refused(served):
    _, server = served
    with pytest.raises(urllib.error.HTTPError) as e404:
        _get(server.url + "plots/../bake.h5")
    assert e404.value.code == 404
    req = urllib.request.Request(server.url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e501:
        urllib.request.urlopen(req, timeout=30)
    assert e501.value.code == 501


def test_aborted_run_is_a_warning(tmp_path):
    path = tmp_path / "s.h5"
    with Store.open(path, "a") as store:
        run = store.begin_run("relaxation", {"experiment": "relax"})
        run.append("reads", {"cell": [1, 2], "g_siemens": [1e-5, 2e-5]})
        run.complete_step("t0")
        run.append("reads", {"cell": [1, 2], "g_siemens": [1e-5, 2e-5]})
        run.finish("aborted")
    watcher = Watcher(path, poll_s=0.0, plots=False)
    try:
        page = watcher.page(refresh_s=5)
    finally:
        watcher.close()
    assert "aborted: re-run the same command to resume it" in page
    assert "uncommitted rows in reads (2)" in page
    assert "1 steps (plan size not recorded)" in page


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_are_accepted(host):
    assert check_loopback(host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "example.org", ""])
def test_other_addresses_are_refused(host):
    with pytest.raises(ConfigError, match="loopback"):
        check_loopback(host)


def test_cli_refuses_a_public_address_in_one_line(tmp_path, capsys):
    path = tmp_path / "s.h5"
    _commit_steps(path, [0])
    assert main(["watch", str(path), "--host", "0.0.0.0", "--port", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--host" in err[0] and "loopback" in err[0]


def test_planned_steps_prefers_the_recorded_count():
    assert planned_steps("relaxation", {"section": {}}, {"planned_steps": 12}) == 12
    assert planned_steps("bake_retention", PLAN, {}) == PLANNED
    assert planned_steps("ber", {"section": {}}, {}) is None


WRITER = """
import sys
sys.path.insert(0, {root!r})
from tests.watch.test_watch import _commit_steps_open
from cimlab.store import Store
with Store.open({path!r}, "a") as store:
    run = store.begin_run("bake_retention", {plan!r}, snapshot={{}}, seeds={{}})
    for k in range(3):
        sys.stdin.readline()
        _commit_steps_open(run, [k])
        print("committed", k, flush=True)
    sys.stdin.readline()
"""


def _commit_steps_open(run, steps: list[int]) -> None:
    """The writes of :func:`_commit_steps` into a run already open (a writer holding the
    file, as a campaign does for its whole length)."""
    cells = np.arange(N_CELLS, dtype=np.uint32)
    for k in steps:
        if k == 0:
            run.complete_step("T0-program")
        t = 0.0 if k == 0 else SCHEDULE_S[k - 1]
        run.append("reads", {"cell": cells, "level": cells % 4, "target_siemens": 1e-5, "step": k,
                             "temp_k": 423.15, "bake_time_s": t, "temp_index": 0,
                             "repeat": 0, "g_siemens": 1e-5 + 1e-8 * cells})
        run.complete_step(f"T0-read-{k:03d}")


def test_cli_watch_follows_a_writer_that_holds_the_store(tmp_path):
    """Real processes: ``cimlab watch`` starts first; a campaign-like writer then opens the
    store for writing (the watch must not block it) and commits steps while holding the file;
    the page follows each commit."""
    import os
    import subprocess
    import sys
    import time

    root = str(Path(__file__).resolve().parents[2])
    path = tmp_path / "live.h5"
    Store.open(path, "a").close()
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("HDF5_USE_FILE_LOCKING", None)
    watch = subprocess.Popen(
        [sys.executable, "-m", "cimlab.cli.main", "watch", str(path), "--port", "0",
         "--poll", "0.05", "--no-plots"], cwd=root, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    writer = None
    try:
        line = watch.stdout.readline()
        assert "watching" in line, line
        url = line.split(" at ", 1)[1].split(" ", 1)[0]
        json.loads(_get(url + "status.json")[2])      # the watch has the store open now ...
        writer = subprocess.Popen(                      # ... and a writer can still open it
            [sys.executable, "-c", WRITER.format(root=root, path=str(path), plan=PLAN)],
            cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        for k in range(3):
            writer.stdin.write("go\n")
            writer.stdin.flush()
            out = writer.stdout.readline()
            assert out.startswith("committed"), out + writer.stderr.read()
            want = 2 if k == 0 else 2 + k
            deadline = time.monotonic() + 30
            while True:
                runs = json.loads(_get(url + "status.json")[2])["runs"]
                if runs and runs[0]["steps_done"] == want:
                    break
                assert time.monotonic() < deadline, runs
                time.sleep(0.1)
            assert runs[0]["status"] == "running"
            assert runs[0]["rows"]["reads"] == (k + 1) * N_CELLS
        writer.stdin.write("done\n")
        writer.stdin.flush()
        assert writer.wait(30) == 0, writer.stderr.read()
    finally:
        for proc in (writer, watch):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)
