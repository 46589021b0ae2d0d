"""Damaged and foreign store files: ``runs``, ``report``, ``fit`` and ``characterize`` answer
with one clear line and a non-zero exit (or work, when the damage is somewhere unused), never
a traceback; a store whose columns lost committed rows is reported damaged, never shown as a
shorter table."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from cimlab.cli.main import main
from tests.fuzz.mutate import one_clear_line

ROOT = Path(__file__).resolve().parents[2]
STATION = str(ROOT / "instruments" / "emulated.toml")
TINY = """[plan]
name = "tiny"
seed = 1
[[experiment]]
kind = "relaxation"
cells = { start = 0, count = 64 }
times_s = [1.0, 10.0]
"""
SEED = 2026


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """A valid store: one relaxation run of 64 cells, and its plan."""
    d = tmp_path_factory.mktemp("tiny")
    plan = d / "tiny.toml"
    plan.write_text(TINY)
    store = d / "tiny.h5"
    assert main(["characterize", str(plan), "--station", STATION, "--out", str(store),
                 "--quiet"]) == 0
    return plan, store


def _run_group(f: h5py.File) -> h5py.Group:
    return f["runs"][next(iter(f["runs"]))]


def _structural() -> Iterator[tuple[str, Callable[[h5py.File], None]]]:
    """Edits a careless script or a foreign tool could make, one at a time."""
    def attr(where: Callable[[h5py.File], h5py.HLObject], key: str, value: object):
        def edit(f: h5py.File) -> None:
            obj = where(f)
            if value is None:
                del obj.attrs[key]
            else:
                obj.attrs[key] = value
        return edit

    def root(f):  # type: ignore[no-untyped-def]
        return f

    yield "format_version = 'one'", attr(root, "format_version", "one")
    yield "format_version = 99", attr(root, "format_version", 99)
    yield "format_version = 1.5", attr(root, "format_version", 1.5)
    yield "format_version = [1, 1]", attr(root, "format_version", np.array([1, 1]))
    yield "format deleted", attr(root, "format", None)
    yield "format = 'other'", attr(root, "format", "other")

    def runs_dataset(f):  # type: ignore[no-untyped-def]
        del f["runs"]
        f["runs"] = np.arange(3)
    yield "/runs a dataset", runs_dataset

    def runs_deleted(f):  # type: ignore[no-untyped-def]
        del f["runs"]
    yield "/runs deleted", runs_deleted

    def stray_dataset(f):  # type: ignore[no-untyped-def]
        f["runs"]["stray"] = np.arange(3)
    yield "a dataset among the runs", stray_dataset

    for key in ("kind", "status", "plan_hash", "started_unix", "stopped_unix",
                "instrument_time_s"):
        yield f"run @{key} deleted", attr(_run_group, key, None)
        yield f"run @{key} an array", attr(_run_group, key, np.zeros((2, 2)))
    yield "run @status = 'bogus'", attr(_run_group, "status", "bogus")
    yield "run @started_unix = 'yesterday'", attr(_run_group, "started_unix", "yesterday")

    def plan_garbage(f):  # type: ignore[no-untyped-def]
        g = _run_group(f)
        del g["plan"]
        g["plan"] = np.array(b"{not json", dtype="S9")
    yield "run plan not JSON", plan_garbage

    for sub in ("steps", "tables"):
        def deleted(f, sub=sub):  # type: ignore[no-untyped-def]
            del _run_group(f)[sub]
        yield f"run/{sub} deleted", deleted

        def as_dataset(f, sub=sub):  # type: ignore[no-untyped-def]
            g = _run_group(f)
            del g[sub]
            g[sub] = np.arange(4)
        yield f"run/{sub} a dataset", as_dataset

    def crc_zeroed(f):  # type: ignore[no-untyped-def]
        crc = _run_group(f)["steps"]["crc"]
        crc[...] = 0
    yield "commit log checksums zeroed", crc_zeroed

    def crc_deleted(f):  # type: ignore[no-untyped-def]
        del _run_group(f)["steps"]["crc"]
    yield "commit log column deleted", crc_deleted

    tables = ("reads", "programmed")
    for t in tables:
        def shortened(f, t=t):  # type: ignore[no-untyped-def]
            _run_group(f)["tables"][t]["g_siemens"].resize((3,))
        yield f"{t}.g_siemens shortened", shortened

        def col_deleted(f, t=t):  # type: ignore[no-untyped-def]
            del _run_group(f)["tables"][t]["cell"]
        yield f"{t}.cell deleted", col_deleted

        def columns_garbage(f, t=t):  # type: ignore[no-untyped-def]
            _run_group(f)["tables"][t].attrs["columns"] = np.bytes_(b"[not json")
        yield f"{t}@columns garbage", columns_garbage

        def table_dataset(f, t=t):  # type: ignore[no-untyped-def]
            g = _run_group(f)["tables"]
            del g[t]
            g[t] = np.arange(5)
        yield f"{t} a dataset", table_dataset

        def col_2d(f, t=t):  # type: ignore[no-untyped-def]
            g = _run_group(f)["tables"][t]
            n = g["g_siemens"].shape[0]
            del g["g_siemens"]
            g["g_siemens"] = np.zeros((n, 2))
        yield f"{t}.g_siemens made 2-D", col_2d

        def index_garbage(f, t=t):  # type: ignore[no-untyped-def]
            _run_group(f)["tables"][t].attrs["index"] = 999
        yield f"{t}@index out of range", index_garbage

    def codes_out_of_range(f):  # type: ignore[no-untyped-def]
        g = _run_group(f)["tables"]["programmed"]
        label_cols = [c for c in json.loads(g.attrs["columns"]) if "_categories" in g
                      and c in g["_categories"]]
        if label_cols:
            g[label_cols[0]][...] = 77
    yield "category codes out of range", codes_out_of_range


def _bytes(data: bytes, seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    for k in range(n):
        b = bytearray(data)
        if k % 4 == 3:
            cut = int(rng.integers(len(b)))
            yield f"cut at byte {cut}", bytes(b[:cut])
            continue
        at = int(rng.integers(len(b) - 256))
        width = int(rng.choice([1, 8, 64, 256]))
        b[at:at + width] = rng.integers(0, 256, width, dtype=np.uint8).tobytes()
        yield f"{width} bytes overwritten at {at}", bytes(b)


COMMANDS = {
    "runs": lambda p: ["runs", str(p)],
    "report": lambda p: ["report", str(p), "--no-plots"],
}


def _outcome(argv: list[str], capsys) -> tuple[bool, str]:
    """(handled, what happened): rc 0, or rc != 0 with one clear line; never an exception."""
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    except Exception as exc:  # a traceback is the finding
        capsys.readouterr()
        return False, f"{type(exc).__name__}: {str(exc)[:200]}"
    err = capsys.readouterr().err
    if code == 0:
        return True, "ok"
    return one_clear_line(err), err.strip()[:300]


def test_structurally_damaged_stores(tiny, tmp_path, capsys, tally):
    _plan, store = tiny
    bad = []
    for desc, edit in _structural():
        p = tmp_path / "s.h5"
        shutil.copy(store, p)
        with h5py.File(p, "a") as f:
            edit(f)
        for name, argv in COMMANDS.items():
            tally.tried(f"store ({name})")
            ok, what = _outcome(argv(p), capsys)
            if ok:
                tally.handled(f"store ({name})")
            else:
                bad.append((desc, name, what))
    assert not bad, bad[:8]


def test_shortened_column_is_reported_not_hidden(tiny, tmp_path, capsys, tally):
    _plan, store = tiny
    p = tmp_path / "s.h5"
    shutil.copy(store, p)
    with h5py.File(p, "a") as f:
        _run_group(f)["tables"]["reads"]["g_siemens"].resize((3,))
    for name, argv in COMMANDS.items():
        tally.tried(f"store ({name})")
        code = main(argv(p))
        err = capsys.readouterr().err
        assert code == 1 and one_clear_line(err), err
        assert "rows were lost" in err and "g_siemens" in err
        tally.handled(f"store ({name})")


@pytest.mark.parametrize("desc", ["format_version = 'one'", "/runs a dataset",
                                  "reads.g_siemens shortened", "run/steps deleted"])
def test_characterize_into_a_damaged_store_is_one_line(tiny, tmp_path, capsys, tally, desc):
    plan, store = tiny
    edit = dict(_structural())[desc]
    p = tmp_path / "s.h5"
    shutil.copy(store, p)
    with h5py.File(p, "a") as f:
        edit(f)
    before = p.read_bytes()
    tally.tried("store (characterize)")
    code = main(["characterize", str(plan), "--station", STATION, "--out", str(p),
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and one_clear_line(err), err
    assert p.read_bytes() == before  # nothing written into a store it cannot trust
    tally.handled("store (characterize)")


def test_byte_damage(tiny, tmp_path, capsys, tally):
    _plan, store = tiny
    data = store.read_bytes()
    bad = []
    for desc, mutated in _bytes(data, SEED, 24):
        p = tmp_path / "b.h5"
        p.write_bytes(mutated)
        for name, argv in COMMANDS.items():
            tally.tried(f"store bytes ({name})")
            ok, what = _outcome(argv(p), capsys)
            if ok:
                tally.handled(f"store bytes ({name})")
            else:
                bad.append((desc, name, what))
    assert not bad, bad[:8]


def _report_or_fit(argv: list[str], capsys) -> tuple[int | None, str, BaseException | None]:
    try:
        code = main(argv)
    except Exception as exc:
        capsys.readouterr()
        return None, "", exc
    return code, capsys.readouterr().err, None


def test_report_of_a_tiny_valid_store_works_or_says_what_to_measure(tiny, tmp_path, capsys,
                                                                     tally):
    """One relaxation run of 64 cells: the report is made (too little data for a statistic is
    said in one line, naming what to measure), never a traceback."""
    _plan, store = tiny
    tally.tried("tiny store (report)")
    code, err, exc = _report_or_fit(["report", str(store), "--out", str(tmp_path / "rep")],
                                    capsys)
    assert exc is None, exc
    assert code == 0 or (one_clear_line(err) and "measure" in err), err
    tally.handled("tiny store (report)")


def test_one_read_per_cell_is_refused_by_the_plan_and_named_by_the_report():
    from cimlab.errors import ConfigError
    from cimlab.procedures.plan import plan_from_mapping

    with pytest.raises(ConfigError, match="repeats"):
        plan_from_mapping({"experiment": [{"kind": "read_fluctuation", "repeats": 1}]})


def test_fit_of_a_tiny_valid_store_says_what_to_measure(tiny, tmp_path, capsys, tally):
    """What ``cimlab fit`` must do with too little data (the fit is the models code): one
    line (cimlab.errors.InsufficientDataError) saying what is missing and what to measure."""
    _plan, store = tiny
    tally.tried("tiny store (fit)")
    code, err, exc = _report_or_fit(["fit", str(store), "--quiet", "--out",
                                     str(tmp_path / "m.json")],
                                    capsys)
    assert exc is None, exc
    assert code == 0 or (one_clear_line(err) and "measure" in err), err
    tally.handled("tiny store (fit)")
