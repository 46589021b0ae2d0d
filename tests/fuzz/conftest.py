"""The fuzz/fault suite's tally: every input tried and how it was handled.

Each test calls ``tally.tried(kind)`` once per input and ``tally.handled(kind)`` when the
input was refused the way cimlab promises (one clear line and a non-zero exit for a file or
an argument; an SCPI error and a server that keeps serving for the emulator). The counts are
printed at the end of the run (``pytest -s tests/fuzz`` or in the terminal summary) and are
what docs/safety.md reports.
"""

from __future__ import annotations

from collections import Counter

import pytest


class Tally:
    def __init__(self) -> None:
        self.n_tried: Counter[str] = Counter()
        self.n_handled: Counter[str] = Counter()

    def tried(self, kind: str) -> None:
        self.n_tried[kind] += 1

    def handled(self, kind: str) -> None:
        self.n_handled[kind] += 1

    def lines(self) -> list[str]:
        out = [f"{k:<22s} tried {self.n_tried[k]:5d}  handled {self.n_handled[k]:5d}"
               for k in sorted(self.n_tried)]
        out.append(f"{'total':<22s} tried {sum(self.n_tried.values()):5d}  "
                   f"handled {sum(self.n_handled.values()):5d}")
        return out


_TALLY = Tally()


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _TALLY.n_tried:
        terminalreporter.write_sep("-", "fuzz/fault suite: inputs tried / handled")
        for line in _TALLY.lines():
            terminalreporter.write_line(line)
