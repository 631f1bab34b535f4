"""Loss-weight and learning-rate schedules: what may change during training, a run's per-epoch history,
and the schedule file that replays it (`train_codec.py --schedule FILE`).

A schedule file (what a PBT search exports for its best trial):

    config: {...}            # every config field of the run; num_epochs = the epochs to train
    schedule:                # from each epoch on, these fields take these values
      - {epoch: 1, learning_rate: 0.001, l1_weight: 1.0, rms_weight: 10.0, ...}
      - {epoch: 4, rms_weight: 12.0}
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import yaml

from tune_codec.config import ADVERSARIAL, LOSS_WEIGHTS, Config, make_config
from tune_codec.errors import ScheduleError, UsageError
from tune_codec.files import read_yaml

# what a run may change between epochs: the loss weights and the learning rate (the model, the quantizer,
# the discriminators and the data stay as they were built)
MUTABLE = (*(field for name, field in LOSS_WEIGHTS.items() if name not in ADVERSARIAL), "learning_rate")


Schedule = list[tuple[int, dict]]  # (first epoch, the fields that take new values at it), by epoch


def values(config: Config) -> dict:
    """The mutable fields of config."""
    return {name: getattr(config, name) for name in MUTABLE}


def at_epoch(config: Config, schedule: Schedule, epoch: int) -> Config:
    """config with every change the schedule makes up to `epoch` (1-based)."""
    changes = {}
    for first, fields in schedule:
        if first <= epoch:
            changes.update(fields)
    return dataclasses.replace(config, **changes)


def lr_factor(config: Config, step: int, total_steps: int) -> float:
    """The share of the epoch's learning rate at `step` (0-based) of total_steps: a linear warm-up over
    lr_warmup_steps, then lr_decay from 1 to lr_final at the last step."""
    if step < config.lr_warmup_steps:
        return (step + 1) / config.lr_warmup_steps
    span = max(1, total_steps - 1 - config.lr_warmup_steps)
    progress = min(1.0, (step - config.lr_warmup_steps) / span)
    if config.lr_decay == "exponential":
        return config.lr_final**progress
    if config.lr_decay == "cosine":
        return config.lr_final + (1 - config.lr_final) * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


def fixed_differences(a: Config, b: Config) -> list[str]:
    """The fields other than the mutable ones (and num_epochs) where a and b differ."""
    return [
        name
        for name in dataclasses.asdict(a)
        if name not in (*MUTABLE, "num_epochs") and getattr(a, name) != getattr(b, name)
    ]


def compress(history: list[dict]) -> Schedule:
    """A run's per-epoch values (history[i] = the mutable fields at epoch i + 1) as change points."""
    schedule, current = [], {}
    for epoch, fields in enumerate(history, start=1):
        changed = {k: v for k, v in fields.items() if current.get(k) != v}
        if changed:
            schedule.append((epoch, changed))
            current.update(changed)
    return schedule


def describe(schedule: Schedule, num_epochs: int) -> str:
    """'changed at epochs 4, 7 of 9', or 'unchanged in 9 epochs'."""
    later = [str(epoch) for epoch, _ in schedule if epoch > 1]
    return (
        f"changed at epochs {', '.join(later)} of {num_epochs}"
        if later
        else f"unchanged in {num_epochs} epochs"
    )


def write_schedule(path: Path, config: Config, history: list[dict]) -> None:
    """The schedule file of a run that trained len(history) epochs with these per-epoch values."""
    base = dataclasses.replace(config, num_epochs=len(history), **history[0])
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(base).items()}
    entries = [{"epoch": epoch, **fields} for epoch, fields in compress(history)]
    path.write_text(yaml.safe_dump({"config": plain, "schedule": entries}, sort_keys=False))


def load_schedule(path: Path) -> tuple[Config, Schedule]:
    """A schedule file's config (at epoch 1) and its changes; ScheduleError naming what is wrong."""
    return read_yaml(path, parse_schedule, ScheduleError, f"--schedule {str(path)!r}")


def parse_schedule(raw) -> tuple[Config, Schedule]:
    if not (isinstance(raw, dict) and set(raw) == {"config", "schedule"}):
        raise ScheduleError("expected a mapping with the keys config and schedule")
    if not isinstance(raw["config"], dict):
        raise ScheduleError(f"config: expected a mapping of config fields, got {raw['config']!r}")
    config = make_config(raw["config"])
    entries = raw["schedule"]
    if not (isinstance(entries, list) and entries):
        raise ScheduleError(f"schedule: expected a list of {{epoch: N, <field>: value}}, got {entries!r}")
    schedule, last = [], 0
    for i, entry in enumerate(entries):
        where = f"schedule[{i}]"
        if not (isinstance(entry, dict) and isinstance(entry.get("epoch"), int)):
            raise ScheduleError(f"{where}: expected {{epoch: N, <field>: value, ...}}, got {entry!r}")
        epoch = entry["epoch"]
        if not last < epoch <= config.num_epochs:
            raise ScheduleError(
                f"{where}: epoch {epoch} must be after {last} and at most num_epochs ({config.num_epochs})"
            )
        fields = {k: v for k, v in entry.items() if k != "epoch"}
        fixed = sorted(set(fields) - set(MUTABLE))
        if fixed or not fields:
            raise ScheduleError(
                f"{where}: {', '.join(fixed) or 'no field'}: a schedule changes only {', '.join(MUTABLE)}"
            )
        try:
            checked = make_config({**dataclasses.asdict(config), **fields})
        except UsageError as e:
            raise ScheduleError(f"{where}: {e}") from None
        schedule.append((epoch, {k: getattr(checked, k) for k in fields}))
        last = epoch
    return config, schedule
