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
from tune_codec.names import COMPLETED, REASON, best_key
from tune_codec.search.cost import COST, Budget, describe_budget, describe_cost
from tune_codec.search.space import BITRATE, Space
from tune_codec.search.stopping import why_stopped
from tune_codec.training.checkpoint import load_state
from tune_codec.training.schedule import compress, describe, write_schedule

BEST_FILE = "best_config.yaml"
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
    best_column = f"best {label(space.metric)}"
    rows = []
    for r in results:
        m = r.metrics or {}
        rows.append(
            {
                "trial": m.get("trial_id", "?"),
                **{k: r.config[k] for k in searched},
                "epochs": int(m.get("epoch", 0)),
                "SNR dB": m.get("val/snr_db", math.nan),
                "best SNR dB": m.get("val/best_snr_db", math.nan),
                best_column: m.get(best_key(space.metric), math.nan),
                **({"kbps": m.get(BITRATE, math.nan)} if space.objectives else {}),
                "range ratio": m.get("val/range_ratio", math.nan),
                "train s": m.get("time/train_s", 0.0),
                "device h": m.get(COST, 0.0),
                "stopped": "error" if r.error else why_stopped(m, num_epochs),
                "diagnosis": diagnosis(r, num_epochs),
                "_collapsed": bool(m.get(REASON)),
                "_failed": r.error is not None,
                "_config": r.config,
                "_checkpoint": r.checkpoint and Path(r.checkpoint.path),
            }
        )
    rows.sort(key=lambda row: row["trial"])
    healthy = [
        row
        for row in rows
        if not row["_collapsed"] and not row["_failed"] and math.isfinite(row[best_column])
    ]
    epochs_run = sum(row["epochs"] for row in rows)
    epochs_saved = sum(num_epochs - row["epochs"] for row in rows)
    minutes_saved = epochs_saved * sum(row["train s"] for row in rows) / max(epochs_run, 1) / 60
    collapsed = sum(row["_collapsed"] for row in rows)
    hours = sum(row["device h"] for row in rows)
    text = (
        f"{len(rows)} trials, {collapsed} stopped for collapse, {epochs_run} epochs trained; stopping saved "
        f"{epochs_saved} of {len(rows) * num_epochs} epochs (~{minutes_saved:.1f} min)\n"
        f"{describe_cost(hours, len(healthy), len(rows), device, price)}\n"
    )
    if budget is not None:
        text += f"{describe_budget(budget, hours, len(rows), space.trials)}\n"
    if any(row["diagnosis"] for row in rows):
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
    if space.objectives:
        text += (
            f"the best trial at each bitrate (front: on the Pareto front of {best_column} against kbps):\n"
            f"{format_table(front_table(healthy, best_column, searched))}\n"
        )
    best_row = max(healthy, key=lambda row: row[best_column])
    best = make_config(best_row["_config"])
    folder.joinpath(BEST_FILE).write_text(
        yaml.safe_dump(
            {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(best).items()}
        )
    )
    text += (
        f"best: trial {best_row['trial']}, {best_text(space.metric, best_row[best_column])}"
        + (f" (SNR {best_row['best SNR dB']:.2f} dB)" if space.metric != "val/snr_db" else "")
        + f" ({best.describe()})\n"
        f"config: {folder / BEST_FILE}\n"
    )
    if space.population:  # the weights changed during training: the schedule is the result
        history, path = load_state(best_row["_checkpoint"])["history"], folder / SCHEDULE_FILE
        write_schedule(path, best, history)
        text += (
            f"schedule: {path} (weights {describe(compress(history), len(history))})\n"
            f"replay it: python train_codec.py --schedule {path}"
        )
    else:
        text += f"train it: python train_codec.py {' '.join(to_flags(best))}"
    metrics["best_snr_db"] = best_row["best SNR dB"]
    metrics[best_key(space.metric).replace("val/", "", 1)] = best_row[best_column]
    return Summary(format_table(rows), text, metrics, best)


def diagnosis(result, num_epochs: int) -> str:
    """A stopped or failed trial's findings by name (the doctor's), from every epoch it reported; '' for a
    trial that completed."""
    last = result.metrics or {}
    if result.error is None and why_stopped(last, num_epochs) == COMPLETED:
        return ""
    reported = Path(result.path) / "result.json"
    lines = reported.read_text().splitlines() if reported.exists() else []
    rows = [json.loads(line) for line in lines if line.strip()] or [last]
    return headline(diagnose(from_rows(rows, make_config(result.config))))


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


LABELS = {"val/snr_db": "SNR dB", "val/si_sdr_db": "SI-SDR dB", "val/pesq": "PESQ", "val/stoi": "STOI"}


def label(metric: str) -> str:
    """A validation metric as a column heading: val/si_sdr_db -> SI-SDR dB."""
    return LABELS.get(metric, metric)


def best_text(metric: str, value: float) -> str:
    """'best validation SNR 4.89 dB', 'best validation PESQ 1.52'."""
    name, _, unit = label(metric).partition(" ")
    return f"best validation {name} {value:.2f}{' ' + unit if unit else ''}"
