"""The fuzz/fault suite's tally: every input tried and how it was handled.

Each test calls ``tally.tried(kind)`` once per input and ``tally.handled(kind)`` when the
input was refused the way cimlab promises (one clear line and a non-zero exit for a file or
an argument; an SCPI error and a server that keeps serving for the emulator). The counts are
printed at the end of the run (``pytest -s tests/fuzz`` or in the terminal summary; with
``-n 2`` each worker's counts are sent to the controller and summed there, see
tests/conftest.py) and are what docs/safety.md reports.
"""

from __future__ import annotations

from collections import Counter


class Tally:
    def __init__(self) -> None:
        self.n_tried: Counter[str] = Counter()
        self.n_handled: Counter[str] = Counter()

    def tried(self, kind: str) -> None:
        self.n_tried[kind] += 1

    def handled(self, kind: str) -> None:
        self.n_handled[kind] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain dicts (what a pytest-xdist worker can send to the controller)."""
        return {"tried": dict(self.n_tried), "handled": dict(self.n_handled)}

    def merge(self, counts: dict[str, dict[str, int]] | None) -> None:
        """Add another process's :meth:`as_dict` counts."""
        if counts:
            self.n_tried.update(counts.get("tried", {}))
            self.n_handled.update(counts.get("handled", {}))

    def lines(self) -> list[str]:
        out = [f"{k:<22s} tried {self.n_tried[k]:5d}  handled {self.n_handled[k]:5d}"
               for k in sorted(self.n_tried)]
        out.append(f"{'total':<22s} tried {sum(self.n_tried.values()):5d}  "
                   f"handled {sum(self.n_handled.values()):5d}")
        return out


#: The session's tally (one per process: each pytest-xdist worker has its own).
TALLY = Tally()
