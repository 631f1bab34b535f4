"""A search's trials as rows, what they cost, and the best healthy one: for the search and the benchmarks."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import yaml

from tune_codec.cli import format_table
from tune_codec.config import Config, make_config, to_flags
from tune_codec.doctor.rules import diagnose, headline
from tune_codec.doctor.series import from_rows
from tune_codec.names import COMPLETED, best_key, label
from tune_codec.search.cost import COST, Budget, describe_budget, describe_cost
from tune_codec.search.rows import AT_BEST, TrialRow, at_best_epoch, best_column
from tune_codec.search.space import BITRATE, Space
from tune_codec.search.stopping import is_useful, why_stopped
from tune_codec.training.checkpoint import load_state
from tune_codec.training.schedule import compress, describe, write_schedule

BEST_FILE = "best_config.yaml"
SNR = "val/snr_db"
SCHEDULE_FILE = "best_schedule.yaml"  # a PBT search's: the best trial's weights and learning rate by epoch


@dataclasses.dataclass
class Summary:
    table: str  # one row per trial
    text: str  # the best config and how to train it
    metrics: dict  # logged to the search's parent run
    best: Config | None  # None when every trial collapsed


def summarise(
    results, space: Space, folder: Path, device: str, price: float | None, budget: Budget | None
) -> Summary:
    """Table of trials, what they cost, the best healthy one (by the space's metric, at its best epoch)
    written as YAML and as a train_codec.py command."""
    num_epochs = space.base.num_epochs
    searched = space.searched()
    trials = sorted((trial_row(r, space) for r in results), key=lambda row: row.trial)
    rows = [t.columns(space.metric, price) for t in trials]
    healthy = [t for t in trials if t.useful]
    epochs_run = sum(t.epochs for t in trials)
    epochs_saved = sum(num_epochs - t.epochs for t in trials)
    minutes_saved = epochs_saved * sum(t.train_s for t in trials) / max(epochs_run, 1) / 60
    collapsed = sum(not t.failed and not is_useful(t.reason) for t in trials)
    hours = sum(t.device_hours for t in trials)
    text = (
        f"{len(trials)} trials, {collapsed} stopped for collapse, {epochs_run} epochs trained; "
        f"stopping saved {epochs_saved} of {len(trials) * num_epochs} epochs (~{minutes_saved:.1f} min)\n"
        f"{describe_cost(hours, len(healthy), len(trials), device, price)}\n"
    )
    if budget is not None:
        text += f"{describe_budget(budget, hours, len(trials), space.trials)}\n"
    if any(t.diagnosis for t in trials):
        text += f"each stopped trial's findings in full: python -m tune_codec.doctor {folder}\n"
    metrics = {
        "trials_collapsed": collapsed,
        "epochs_trained": epochs_run,
        "epochs_saved": epochs_saved,
        "minutes_saved": minutes_saved,
        COST: hours,
    }
    if price is not None:
        metrics["cost/dollars"] = hours * price
    if not healthy:
        text += (
            "no trial trained without collapsing: widen the space, lower the learning rate or loosen stop:"
        )
        return Summary(format_table(rows), text, metrics, None)
    quality = best_column(space.metric)
    if space.objectives:
        text += (
            f"the best trial at each bitrate (front: on the Pareto front of {quality} against kbps):\n"
            f"{format_table(front_table([t.columns(space.metric) for t in healthy], quality, searched))}\n"
        )
    top = max(healthy, key=lambda t: t.best)
    result = next(r for r in results if trial_id(r) == top.trial)
    best = make_config(result.config)
    folder.joinpath(BEST_FILE).write_text(
        yaml.safe_dump(
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(best).items()}
        )
    )
    snr = top.best if space.metric == SNR else top.at_best[SNR]
    text += (
        f"best: trial {top.trial}, {best_text(space.metric, top.best)}"
        + (f" (SNR {snr:.2f} dB)" if space.metric != SNR else "")
        + f" ({best.describe()})\n"
        f"config: {folder / BEST_FILE}\n"
    )
    if space.population:  # the weights changed during training: the schedule is the result
        history, path = load_state(Path(result.checkpoint.path))["history"], folder / SCHEDULE_FILE
        write_schedule(path, best, history)
        text += (
            f"schedule: {path} (weights {describe(compress(history), len(history))})\n"
            f"replay it: python train_codec.py --schedule {path}"
        )
    else:
        text += f"train it: python train_codec.py {' '.join(to_flags(best))}"
    metrics["best_snr_db"] = snr
    metrics[best_key(space.metric).replace("val/", "", 1)] = top.best
    return Summary(format_table(rows), text, metrics, best)


def trial_id(result) -> str:
    return (result.metrics or {}).get("trial_id") or Path(result.path).name


def trial_row(result, space: Space) -> TrialRow:
    """A Ray result as the summary's row, from every epoch the trial reported (its result.json)."""
    last = result.metrics or {}
    reported = Path(result.path) / "result.json"
    lines = reported.read_text().splitlines() if reported.exists() else []
    epochs = [json.loads(line) for line in lines if line.strip()] or ([last] if last else [])
    history = {key: {e["epoch"]: e[key] for e in epochs if key in e} for key in AT_BEST}
    best_epoch, best, at_best = at_best_epoch(history, space.metric, last)
    reason = "error" if result.error else why_stopped(last, space.base.num_epochs)
    config = make_config(result.config)
    return TrialRow(
        trial=trial_id(result),
        params={k: result.config[k] for k in space.searched()},
        epochs=int(last.get("epoch", 0)),
        best_epoch=best_epoch,
        best=best,
        at_best=at_best,
        reason=reason,
        failed=result.error is not None,
        diagnosis="" if reason == COMPLETED else headline(diagnose(from_rows(epochs, config))),
        device_hours=last.get(COST, 0.0),
        train_s=last.get("time/train_s", 0.0),
        kbps=last.get(BITRATE, math.nan) if space.objectives else None,
    )


def by_bitrate(rows: list[dict], quality: str) -> list[dict]:
    """The best row at each bitrate, by rising bitrate, each marked as on the Pareto front or not: on it
    when it beats every cheaper bitrate's best (nothing else is both better and cheaper)."""
    best: dict[float, dict] = {}
    for row in rows:
        if row["kbps"] not in best or row[quality] > best[row["kbps"]][quality]:
            best[row["kbps"]] = row
    marked, top = [], -math.inf
    for kbps in sorted(best):
        marked.append({**best[kbps], "_front": best[kbps][quality] > top})
        top = max(top, best[kbps][quality])
    return marked


def front_table(rows: list[dict], quality: str, searched: list[str]) -> list[dict]:
    """The best config at each bitrate, the Pareto front marked."""
    return [
        {
            "kbps": r["kbps"],
            quality: r[quality],
            "front": "yes" if r["_front"] else "",
            "trial": r["trial"],
            **{k: r[k] for k in searched},
        }
        for r in by_bitrate(rows, quality)
    ]


def best_text(metric: str, value: float) -> str:
    """'best validation SNR 4.89 dB', 'best validation PESQ 1.52'."""
    name, _, unit = label(metric).partition(" ")
    return f"best validation {name} {value:.2f}{' ' + unit if unit else ''}"
