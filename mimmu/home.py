"""The state folder where mimmu keeps its bookkeeping (default .mimmu/, set by MIMMU_HOME)."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """Return the state folder; nothing is created until a caller writes there."""
    return Path(os.environ.get("MIMMU_HOME", ".mimmu")).expanduser()
