"""Figure plumbing of the simulator, the mitigations, the demo and the CLI: PNG files through
matplotlib's Agg backend (no display needed). What a figure shows stays with its caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, dpi: int) -> Path:
    """Lay ``fig`` out tightly, write it to ``path`` (PNG) at ``dpi`` and close it; returns
    ``path``. The folder must exist."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


__all__ = ["pyplot", "save"]
