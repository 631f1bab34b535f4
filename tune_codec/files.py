"""Files written so that a kill never leaves half of one: checkpoints, a search's state, the data cache."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """write(tmp), then rename tmp to path: a kill mid-write leaves the previous file intact. The
    temporary keeps path's suffix (numpy appends .npz otherwise) and the pid (concurrent writers)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)
