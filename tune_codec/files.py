"""Files written so that a kill never leaves half of one (checkpoints, a search's state, the data cache),
the folder to check a path's disk at before it exists, and a YAML file read into what it holds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import yaml

from tune_codec.errors import UsageError


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """write(tmp), then rename tmp to path: a kill mid-write leaves the previous file intact. The
    temporary keeps path's suffix (numpy appends .npz otherwise) and the pid (concurrent writers)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{path.suffix}")
    write(tmp)
    os.replace(tmp, path)


def nearest_existing(path: Path) -> Path:
    """path, or its closest ancestor that exists: where to look at a disk without creating anything."""
    return next(p for p in (path, *path.parents) if p.exists())


def read_yaml(path: Path, parse, error: type[UsageError], prefix: str):
    """parse(the YAML in path); a file that cannot be read, is not YAML or does not parse is an `error`
    whose message starts with prefix."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as e:
        raise error(f"{prefix}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise error(f"{prefix}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return parse(raw)
    except UsageError as e:
        raise error(f"{prefix}: {e}") from None
