"""Plan files a user should never have written: each gets one clear line naming the file and
the field, a non-zero exit, and writes nothing; memory stays bounded by the chip's size."""

from __future__ import annotations

from pathlib import Path

import pytest

from cimlab.cli.main import main
from cimlab.errors import CimlabError
from cimlab.procedures.plan import MAX_PLAN_BYTES, load_plan
from tests.fuzz.mutate import one_clear_line, text_mutations

ROOT = Path(__file__).resolve().parents[2]
QUICK = (ROOT / "plans" / "quick.toml").read_text()
GEOMETRY = (32, 256, 64)  # the default chip


def _plan(name_line: str = 'name = "quick"', cells: str = "{ tiles = [0] }") -> str:
    return (f"[plan]\n{name_line}\n\n[[experiment]]\nkind = \"fault_map\"\n"
            f"cells = {cells}\n")


def _cli(tmp_path, capsys, text: str | bytes, *extra: str) -> tuple[int, str]:
    path = tmp_path / "plan.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code = main(["characterize", str(path), "--quiet", *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("text,field", [
    (b"\xff\xfe\x00garbage\x80\x81", "<encoding>"),
    (_plan('name = "' + "n" * 200_000 + '"'), "plan.name"),
    (_plan('name = "../../../x"'), "plan.name"),
    (_plan('name = "/tmp/x"'), "plan.name"),
    (_plan('name = ".hidden"'), "plan.name"),
    ("a = " + "[" * 5000 + "]" * 5000, "<syntax>"),
    (_plan() + "# pad\n" * (MAX_PLAN_BYTES // 6 + 1), "<file>"),
])
def test_bad_plan_files_get_one_line_and_write_nothing(tmp_path, capsys, monkeypatch, text,
                                                       field, tally):
    tally.tried("plan file (CLI)")
    monkeypatch.chdir(tmp_path)
    code, err = _cli(tmp_path, capsys, text)
    assert code != 0
    assert one_clear_line(err), err[:500]
    assert f"'{field}'" in err and "plan.toml" in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["plan.toml"]  # nothing written
    assert not (tmp_path.parent.parent / "x.h5").exists()  # data/../../../x.h5
    tally.handled("plan file (CLI)")


def test_a_directory_as_the_plan_is_one_line(tmp_path, capsys, tally):
    tally.tried("plan file (CLI)")
    code = main(["characterize", str(tmp_path)])
    err = capsys.readouterr().err
    assert code != 0 and one_clear_line(err) and "not a directory" in err
    tally.handled("plan file (CLI)")


def test_repeated_tiles_are_resolved_within_the_chip_memory(tally):
    """tiles = [0]*5000 used to expand to 82 M indices (2 GB) before de-duplication."""
    import tracemalloc

    tally.tried("plan file (sizes)")
    plan_text = _plan(cells="{ tiles = [" + ", ".join(["0"] * 5000) + "], ranges = "
                      "[" + ", ".join(["[0, 524288]"] * 2000) + "] }")
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "plan.toml"
        p.write_text(plan_text)
        tracemalloc.start()
        try:
            (cells,) = load_plan(p).resolve_cells(GEOMETRY)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    n_cells = 32 * 256 * 64
    assert cells.size == n_cells
    assert peak < 16 * n_cells  # a bool per cell, the int64 indices and the uint32 result
    tally.handled("plan file (sizes)")


def test_mutated_plans_are_accepted_or_refused_with_one_line(tmp_path, tally):
    """500 seeded mutations of plans/quick.toml through load + geometry check: each is either
    a valid plan or a CimlabError whose message is one line naming the file; never another
    exception."""
    path = tmp_path / "plan.toml"
    bad = []
    for desc, data in text_mutations(QUICK, seed=2026, n=500):
        tally.tried("plan file (mutations)")
        path.write_bytes(data)
        try:
            load_plan(path).check_geometry(GEOMETRY)
        except CimlabError as exc:
            msg = str(exc)
            if "\n" in msg or len(msg) > 2000 or "plan.toml" not in msg:
                bad.append((desc, msg[:300]))
                continue
        except Exception as exc:
            bad.append((desc, f"{type(exc).__name__}: {str(exc)[:300]}"))
            continue
        tally.handled("plan file (mutations)")
    assert not bad, bad[:5]
