"""What the benchmarks record about the machine they ran on (the "machine" entry of their
last JSON line). Imported as ``_common`` by scripts run as ``python benchmarks/<topic>.py``."""

from __future__ import annotations

import os
import platform
from typing import Any


def machine_info(**extra: Any) -> dict[str, Any]:
    """Python version, platform, processor, CPU count, then ``extra`` entries."""
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        **extra,
    }
