"""Progress lines (cimlab.procedures.progress): printed on stderr only when configured and
enabled, at most one per interval, with k/n, the status fields and an ETA."""

from __future__ import annotations

import logging

import pytest

from cimlab.procedures import progress
from cimlab.procedures.progress import Progress, configure, duration, hms


@pytest.fixture(autouse=True)
def _restore():
    before = (progress.SETTINGS.lines, progress.SETTINGS.interval_s)
    yield
    configure(*before)


def _lines(err: str) -> list[str]:
    return [x for x in err.splitlines() if x.startswith("cimlab progress: ")]


def test_lines_every_update_with_status_and_eta(capsys):
    configure(True, 0.0)
    bar = Progress(4, "exp: bake", status=lambda: {"rows": 12})
    for _ in range(4):
        bar.update(1)
    bar.close()
    lines = _lines(capsys.readouterr().err)
    assert lines[0] == "cimlab progress: exp: bake 0/4 (0 %), rows 12, elapsed 0:00:00"
    assert lines[1].startswith("cimlab progress: exp: bake 1/4 (25 %), rows 12, elapsed ")
    assert ", ETA 0:00:0" in lines[1]
    assert lines[-1].endswith(" done") and "4/4 (100 %)" in lines[-1]
    assert "ETA" not in lines[-1]


def test_interval_throttles_and_disabled_or_unconfigured_prints_nothing(capsys):
    configure(True, 3600.0)
    bar = Progress(100, "x")
    for _ in range(100):
        bar.update(1)
    bar.close()
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 2  # the start and the end, nothing between within the hour
    Progress(3, "quiet", enabled=False).update(3)  # -q
    configure(False, 0.0)  # library default: no lines
    bar = Progress(3, "off")
    bar.update(3)
    bar.close()
    assert _lines(capsys.readouterr().err) == []


def test_lines_reach_the_log_without_stderr(caplog, capsys):
    configure(False, 0.0)
    with caplog.at_level(logging.INFO, logger="cimlab.progress"):
        bar = Progress(2, "logged")
        bar.update(2)
        bar.close()
    assert any("logged 2/2 (100 %)" in r.getMessage() for r in caplog.records)
    assert _lines(capsys.readouterr().err) == []


def test_formats_and_bad_interval():
    assert hms(3725) == "1:02:05"
    assert duration(12) == "12.0 s" and duration(600) == "10.0 min"
    assert duration(3 * 3600) == "3.00 h" and duration(3 * 86400) == "3.0 d"
    with pytest.raises(ValueError, match="interval_s"):
        configure(True, -1.0)
