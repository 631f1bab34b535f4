"""Files written so that a kill never leaves half of one (checkpoints, a search's state, the data cache),
and the folder to check a path's disk at before it exists."""

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


def nearest_existing(path: Path) -> Path:
    """path, or its closest ancestor that exists: where to look at a disk without creating anything."""
    return next(p for p in (path, *path.parents) if p.exists())
