"""Seeded mutations of valid input files: what a hostile or careless user could hand cimlab.

:func:`text_mutations` rewrites a TOML text (a plan or a station file): a value replaced by
a hostile one, bytes flipped, inserted or cut, a line deleted or repeated. Every mutation is
a pure function of the seed, so a failure names a reproducible input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np

#: Values a careless or hostile user types into a ``key = value`` line.
HOSTILE_VALUES: tuple[str, ...] = (
    "-1", "0", "1e400", "-1e400", "nan", "inf", "9" * 400, "99999999999999999999999",
    "true", '""', '"x"', '"' + "n" * 200_000 + '"', '"../../../x"', '"/etc/passwd"',
    "[" + ", ".join(["0"] * 5000) + "]", "[]", "{}", "[[]]", "1.5", "-0.0",
    "[" * 400 + "]" * 400, "{ a = " * 300 + "1" + " }" * 300, '"\\u0000"', "2026-01-01",
)

_ASSIGN = re.compile(r"^(\s*[A-Za-z0-9_.\"]+\s*=\s*)(.+)$")


def text_mutations(text: str, seed: int, n: int) -> Iterator[tuple[str, bytes]]:
    """``n`` mutations of ``text``: (description, file bytes)."""
    rng = np.random.default_rng(seed)
    lines = text.splitlines()
    assigns = [i for i, line in enumerate(lines) if _ASSIGN.match(line)]
    raw = text.encode()
    for k in range(n):
        op = k % 6
        if op in (0, 1):  # a value replaced by a hostile one (twice as often)
            i = assigns[int(rng.integers(len(assigns)))]
            value = HOSTILE_VALUES[int(rng.integers(len(HOSTILE_VALUES)))]
            new = list(lines)
            new[i] = _ASSIGN.sub(lambda m, v=value: m.group(1) + v, lines[i])
            yield f"line {i + 1} value -> {value[:30]!r}", "\n".join(new).encode()
        elif op == 2:  # bytes flipped
            b = bytearray(raw)
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(len(b)))] = int(rng.integers(0, 256))
            yield "bytes flipped", bytes(b)
        elif op == 3:  # cut short
            cut = int(rng.integers(len(raw)))
            yield f"cut at byte {cut}", raw[:cut]
        elif op == 4:  # a line deleted or repeated
            i = int(rng.integers(len(lines)))
            new = list(lines)
            if rng.integers(2):
                del new[i]
                yield f"line {i + 1} deleted", "\n".join(new).encode()
            else:
                new.insert(i, lines[i])
                yield f"line {i + 1} repeated", "\n".join(new).encode()
        else:  # random bytes, or random bytes in the middle
            junk = rng.integers(0, 256, int(rng.integers(1, 2000)), dtype=np.uint8).tobytes()
            if rng.integers(2):
                yield "random bytes", junk
            else:
                at = int(rng.integers(len(raw)))
                yield f"junk at byte {at}", raw[:at] + junk + raw[at:]


def one_clear_line(stderr: str) -> bool:
    """Whether ``stderr`` is one ``cimlab: error:`` line of reasonable length (no traceback)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return (len(lines) == 1 and lines[0].startswith("cimlab: error:")
            and len(lines[0]) <= 2000 and "Traceback" not in stderr)
