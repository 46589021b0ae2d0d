"""Unattended runs (cimlab.cli._runlog): the run log holds the SCPI traffic, the step commits
and the resume; ``--json`` keeps stdout to one object; progress lines appear on stderr when
stdout is not a terminal; long messages are cut with their length."""

from __future__ import annotations

import json
import logging
import re

import pytest

from cimlab.cli._runlog import LOG_LINE_MAX, default_log_path
from cimlab.cli.main import main
from cimlab.instruments.drivers.visa import LOG_MESSAGE_MAX, shown
from tests.procedures.bench_util import station_file

#: one tiny experiment (a second or two): programming, a settle and two read steps
PLAN = """
[plan]
name = "logged"
seed = 3

[[experiment]]
kind = "read_fluctuation"
cells = { start = 32768, count = 64 }
repeats = 2
settle_s = 10.0
smu_cells = 0
"""

_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR)\s+\S+: ")


@pytest.fixture()
def files(tmp_path):
    st = station_file(tmp_path, seed=4)
    plan = tmp_path / "logged.toml"
    plan.write_text(PLAN)
    return st, plan


def test_characterize_log_has_traffic_and_commits_json_stdout_unchanged(files, tmp_path,
                                                                        capsys):
    st, plan = files
    store, logf = tmp_path / "a.h5", tmp_path / "logs" / "a.log"
    assert main(["characterize", str(plan), "--station", str(st), "--out", str(store),
                 "--json", "--log", str(logf), "--progress-every", "0"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    doc = json.loads(out)  # stdout: exactly one JSON object, nothing from the log
    assert out.count("\n") == 1 and doc["store"] == str(store)
    assert doc["recorded_instrument_time_s"] == pytest.approx(doc["instrument_time_s"],
                                                              rel=0.05)
    assert set(doc["recorded_instrument_s"]) == {"read_fluctuation"}
    text = logf.read_text()
    lines = text.splitlines()
    assert all(_LINE.match(line) for line in lines), [x for x in lines if not _LINE.match(x)]
    # every SCPI write/read with the instrument's role and its time
    assert re.search(r"cimlab\.scpi: array write '\*IDN\?' \d+\.\d{3} ms", text)
    assert re.search(r"cimlab\.scpi: clock read '[-+\d.e]+' \d+\.\d{3} ms", text)
    assert re.search(r"cimlab\.scpi: array write b'ARR:READ\? #", text)
    # big binary blocks are cut, with their length
    assert re.search(r"array read b'.*'\.\.\. \(\d+ bytes\)", text)
    assert max(len(x) for x in lines) < 8 * LOG_MESSAGE_MAX
    # step starts and commits, the runs, the campaign's instrument time and the end
    assert re.search(r"read_fluctuation: step settled committed \(0 rows", text)
    assert re.search(r"read_fluctuation: step reads-000000-000002 starts", text)
    assert re.search(r"read_fluctuation: run \S+ completed: 4 steps now \(0 before\), 193 rows",
                     text)
    assert "campaign logged: instrument time" in text
    assert "finished after" in lines[-1]
    # the command line opens the log
    assert "characterize" in lines[0] and "started" in lines[0]
    # nothing stays configured after the command
    assert not logging.getLogger("cimlab").handlers
    # stdout is not a terminal here: periodic progress lines on stderr
    progress = [x for x in captured.err.splitlines() if x.startswith("cimlab progress: ")]
    assert any(re.search(r"read_fluctuation: reads 2/2 \(100 %\), steps committed 4, rows 193, "
                         r"instrument 10\.\d s, elapsed \d:\d\d:\d\d done", x)
               for x in progress), progress
    assert any("read_fluctuation: reads 0/2 (0 %)" in x for x in progress)


def test_default_log_next_to_store_resume_and_info_level(files, tmp_path, capsys):
    st, plan = files
    store = tmp_path / "b.h5"
    args = ["characterize", str(plan), "--station", str(st), "--out", str(store), "-q"]
    assert main([*args, "--log-level", "info"]) == 0
    logf = default_log_path(store)
    assert logf == tmp_path / "b.h5.log"
    first = logf.read_text()
    assert "cimlab.scpi" not in first  # INFO: no traffic
    assert "read_fluctuation: run" in first and "begins on 64 cells" in first
    # a second call: the completed experiment is skipped, the log appended
    assert main([*args, "--log-level", "info"]) == 0
    text = logf.read_text()
    assert text.startswith(first)
    assert "read_fluctuation: completed before" in text
    summary = capsys.readouterr().out
    assert "all calls" in summary and "(completed before: skipped)" in summary


def test_resume_is_logged(tmp_path):
    """An interrupted run resumed: the log says from which committed step."""
    import numpy as np

    from cimlab.instruments.station import Station
    from cimlab.procedures.run import ProcedureRun
    from cimlab.store import Store

    logf = tmp_path / "r.log"
    handler = logging.FileHandler(logf)
    root = logging.getLogger("cimlab")
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.INFO)
    try:
        with Station.open(station_file(tmp_path)) as st, \
                Store.open(tmp_path / "r.h5", "a") as store:
            cells = np.arange(8, dtype=np.uint32)
            with pytest.raises(KeyboardInterrupt), ProcedureRun(
                    st, store, kind="t", label="demo", plan={"p": 1}, cells=cells,
                    seed=0, progress=False) as run:
                run.skip("s1")
                run.append("reads", {"cell": cells, "g_siemens": run.read(cells)})
                run.complete("s1")
                raise KeyboardInterrupt
            with ProcedureRun(st, store, kind="t", label="demo", plan={"p": 1}, cells=cells,
                              seed=0, progress=False) as run:
                assert run.skip("s1")
                run.finish()
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(old)
    text = logf.read_text()
    assert "demo: step s1 committed (8 rows" in text
    assert "stopped by KeyboardInterrupt" in text
    assert re.search(r"demo: resuming run \S+ \(t\) after 1 committed steps \(last s1\)", text)


def test_refused_plan_leaves_no_default_log(tmp_path, capsys):
    st = station_file(tmp_path, seed=4)
    plan = tmp_path / "bad.toml"
    plan.write_text(PLAN.replace("count = 64", "count = 99999999"))
    out = tmp_path / "new" / "x.h5"
    assert main(["characterize", str(plan), "--station", str(st), "--out", str(out)]) == 1
    assert not default_log_path(out).exists() and not out.exists()
    err = capsys.readouterr().err
    assert err.count("expected cells inside the chip") == 1  # one line, not repeated by the log


def test_shown_cuts_long_messages_with_their_length():
    assert shown("ARR:VRE?") == "'ARR:VRE?'"
    long = b"#565536" + bytes(65536)
    s = shown(long)
    assert s.endswith(f"... ({len(long)} bytes)") and len(s) < 6 * LOG_MESSAGE_MAX
    assert shown("x" * 500).endswith("... (500 characters)")


def test_long_log_messages_are_cut_and_records_flushed_at_once(tmp_path, capsys):
    from cimlab.cli._runlog import run_log

    class A:
        log = str(tmp_path / "l.log")
        no_log = False
        log_level = "debug"
        quiet = True
        progress_lines = False
        progress_every = 30.0

    with run_log(A(), None):
        logging.getLogger("cimlab.test").info("%s", "y" * (3 * LOG_LINE_MAX))
        # flushed as written: what a killed process leaves is on disk already
        assert "yyy" in (tmp_path / "l.log").read_text()
    line = next(x for x in (tmp_path / "l.log").read_text().splitlines() if "yyy" in x)
    assert line.endswith(f"... ({3 * LOG_LINE_MAX} characters)")
    assert len(line) < LOG_LINE_MAX + 200


def test_no_log_writes_nothing(tmp_path):
    from cimlab.cli._runlog import run_log

    class A:
        log = None
        no_log = True
        quiet = True

    with run_log(A(), tmp_path / "x.h5.log") as path:
        logging.getLogger("cimlab.test").warning("not logged to a file")
    assert path is None and list(tmp_path.iterdir()) == []


def test_log_refused_with_several_chips(files, tmp_path, capsys):
    st, plan = files
    assert main(["characterize", str(plan), "--station", str(st), "--chips", "2",
                 "--out", str(tmp_path / "chips"), "--log", str(tmp_path / "x.log")]) == 1
    err = capsys.readouterr().err
    assert "'--log'" in err and "several chips" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "chips").exists()
