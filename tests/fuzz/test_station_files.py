"""Mutated station files through the station parser (what ``cimlab station check`` runs
first): each is a valid station or one clear line naming the file; never another exception.

Where a mutation is not handled the test fails with the count."""

from __future__ import annotations

from pathlib import Path

import pytest

from cimlab.cli.main import main
from cimlab.errors import CimlabError
from cimlab.instruments.station import load_station_config
from tests.fuzz.mutate import one_clear_line, text_mutations

ROOT = Path(__file__).resolve().parents[2]
EMULATED = (ROOT / "instruments" / "emulated.toml").read_text()
#: Named cases of issue 11 a strict station parser must refuse.
NAMED = {
    "random bytes": b"\xff\xfe\x00\x80garbage",
    "deep nesting": ("a = " + "[" * 3000 + "]" * 3000).encode(),
    "host 0.0.0.0": EMULATED.replace('host = "127.0.0.1"', 'host = "0.0.0.0"').encode(),
}


def _check(path: Path) -> str | None:
    """None when handled (valid, or a CimlabError of one line naming the file), else what
    happened."""
    try:
        load_station_config(path)
    except CimlabError as exc:
        msg = str(exc)
        if "\n" in msg or len(msg) > 2000 or path.name not in msg:
            return f"message: {msg[:200]}"
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    return None


def test_mutated_station_files(tmp_path, tally):
    path = tmp_path / "station.toml"
    bad = []
    for desc, data in text_mutations(EMULATED, seed=11, n=300):
        tally.tried("station file")
        path.write_bytes(data)
        what = _check(path)
        if what is None:
            tally.handled("station file")
        else:
            bad.append((desc, what))
    assert not bad, f"{len(bad)} of 300 mutated station files not handled, e.g. {bad[:3]}"


@pytest.mark.parametrize("name", list(NAMED))
def test_named_station_inputs_via_station_check(name, tmp_path, capsys, tally):
    tally.tried("station file (CLI)")
    path = tmp_path / "station.toml"
    path.write_bytes(NAMED[name])
    code = main(["station", "check", str(path)])
    err = capsys.readouterr().err
    assert code != 0 and one_clear_line(err), f"exit {code}, {err[-200:]!r}"
    tally.handled("station file (CLI)")
