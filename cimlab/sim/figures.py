"""Figure plumbing of the simulator, the mitigations, the demo and the CLI: PNG, PDF or SVG
files through matplotlib's Agg backend (no display needed). What a figure shows stays with its
caller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cimlab.procedures.report.plots import DEFAULT_DPI, save_figure


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Any, path: Path, dpi: int = DEFAULT_DPI) -> Path:
    """Lay ``fig`` out tightly, write it to ``path`` at ``dpi`` and close it; returns the path
    written (the format and dpi of ``--format``/``--dpi`` when a command sets them:
    :func:`cimlab.procedures.report.plots.save_figure`). The folder must exist."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return save_figure(fig, path, dpi)
    finally:
        plt.close(fig)


__all__ = ["pyplot", "save"]
