"""What a search will do, settled before it starts: the command line checked against the space, the storage
path and a resumed search's saved state."""

from __future__ import annotations

import dataclasses
import errno
import math
import os
import shutil
from pathlib import Path

from tune_codec.errors import UsageError
from tune_codec.files import nearest_existing
from tune_codec.search import study
from tune_codec.search.cost import Budget, check_price, parse_budget
from tune_codec.search.space import Space
from tune_codec.tracking import read_state, state_path
from tune_codec.training.checkpoint import checkpoint_bytes


@dataclasses.dataclass
class Plan:
    """What the command line and the cluster settle for a search; the parsed arguments stay as given."""

    space: Space  # with --trials and --concurrency
    folder: Path  # the Ray experiment folder
    budget: Budget | None
    gpus_per_trial: float = 0.0  # --gpus-per-trial, or the cluster's GPUs shared (cluster.place)


def check_args(args, space: Space) -> Plan:
    """The space with the command line's overrides, the experiment folder and the budget; UsageError if
    unusable."""
    for name in ("trials", "concurrency"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name} {value} must be >= 1")
    if args.max_failures < 0:
        raise UsageError(f"--max-failures {args.max_failures} must be >= 0")
    for name in ("cpus_per_trial", "gpus_per_trial"):
        value = getattr(args, name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} {value} must be >= 0")
    if args.gpus_per_trial and args.gpus_per_trial > 1 and not args.gpus_per_trial.is_integer():
        raise UsageError(f"--gpus-per-trial {args.gpus_per_trial:g}: more than 1 GPU must be a whole number")
    check_price(args.price_per_gpu_hour)
    budget = parse_budget(args.budget, args.price_per_gpu_hour) if args.budget else None
    if budget and space.population:
        raise UsageError(f"--budget: a {space.scheduler} population trains together; size it with --trials")
    space = dataclasses.replace(
        space, trials=args.trials or space.trials, concurrency=args.concurrency or space.concurrency
    )
    folder = (args.storage_path / (args.name or args.space.stem)).resolve()
    exists = state_path(folder).exists()
    if args.resume and not exists:
        raise UsageError(f"--resume: no search to continue in {str(folder)!r}")
    if exists and not args.resume:
        raise UsageError(
            f"{str(folder)!r} already holds a search; pass --resume to continue it or --name for a new one"
        )
    if args.resume:  # the restored searcher keeps the budget, sampler and seed it started with
        saved = read_state(state_path(folder))
        for name, given, started in (
            ("--budget", budget and budget.text, saved.get("budget")),
            ("--price-per-gpu-hour", args.price_per_gpu_hour, saved.get("price_per_gpu_hour")),
            ("--sampler", args.sampler, saved.get("sampler", args.sampler)),  # states before --sampler
            ("--seed", args.seed, saved.get("seed", args.seed)),
            # searches from before stored studies, and populations, have none
            ("--study-storage", args.study_storage, saved.get("study_storage") or args.study_storage),
        ):
            if given != started:
                raise UsageError(f"{name} {given}: the search was started with {started}; a resume keeps it")
    if not space.population and (not args.resume or saved.get("study_storage")):
        study.check_study(args.study_storage, folder.name, args.resume)
    return Plan(space, folder, budget)


def check_storage(folder: Path, space: Space) -> None:
    """The storage path must be writable and have room for every trial's checkpoint."""
    root = folder.parent
    existing = nearest_existing(root)  # checked without creating root
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
        probe = existing / f".tune-codec-probe-{os.getpid()}"
        probe.write_bytes(bytes(2**16))
        probe.unlink()
    except OSError as e:
        raise UsageError(f"--storage-path {str(root)!r} is not writable ({e.strerror or e})") from None
    need = (space.trials * space.checkpoints_kept + space.concurrency) * checkpoint_bytes(space.base)
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UsageError(
            f"--storage-path {str(root)!r} has {free / 2**20:.1f} MiB free; {space.trials} trials' "
            f"checkpoints need about {need / 2**20:.1f} MiB"
        )
