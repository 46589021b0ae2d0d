"""Writer process for the SIGKILL test: a resumable run with deterministic data.

Usage: python -m tests.store.crash_writer STORE N_STEPS
Prints "ready" once the run is begun/resumed, then writes as fast as it can, printing each
step id once it is committed (so the test can kill it at a random point after some progress,
however slow the machine).
"""

from __future__ import annotations

import sys

import numpy as np

from cimlab.store import Store

ROWS = 37  # rows per append (not a divisor of the chunk size, so chunks fill unevenly)


def step_data(k: int, part: int) -> dict[str, np.ndarray]:
    """Rows of append ``part`` (0..2) of step ``k``: unique and checkable."""
    j = np.arange(ROWS)
    return {
        "cell": (k * 1000 + part * 100 + j).astype(np.uint32),
        "level": np.full(ROWS, k % 8, dtype=np.int64),
        "time_s": k + part / 10 + j / 1e4,
        "g_siemens": np.sin(k * 1.0 + part + j * 0.01) * 1e-5 + 2e-5,
        "mode": np.where(j % 2 == 0, "verify", "single_shot").astype(object),
    }


def aux_data(k: int) -> dict[str, np.ndarray]:
    return {"step": np.array([k], dtype=np.int64), "energy_j": np.array([k * 1e-12])}


def plan(n_steps: int) -> dict:
    return {"n_steps": n_steps, "rows": ROWS, "what": "crash test"}


def main(path: str, n_steps: int) -> None:
    with Store.open(path, "a") as store:
        run = store.begin_run("crash_test", plan(n_steps), {"station": "none"}, {"procedure": 1})
        print("ready", flush=True)
        done = run.completed_steps
        for k in range(n_steps):
            step = f"step-{k:04d}"
            if step in done:
                continue
            for part in range(3):
                run.append("reads", step_data(k, part))
            if k % 3 == 0:
                run.append("aux", aux_data(k))
            run.add_instrument_time(0.5)
            run.complete_step(step)
            print(step, flush=True)
        run.finish("completed")
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
