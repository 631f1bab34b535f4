"""A run's numbers by epoch, whatever they were read from (an MLflow run, a trial's reports, pasted debug
blocks): what the doctor's rules read. Pure and below the search, so a search's summary and report can
name a stopped trial's diagnosis too."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from tune_codec.config import FIELDS, Config, make_config
from tune_codec.errors import ConfigError
from tune_codec.names import REASON

# The metrics train() logs that the rules read: the validation block, the codebooks, the learning rate, and
# every loss and discriminator term (their names vary with the config)
READ = (
    "val/in_range",
    "val/out_range",
    "val/range_ratio",
    "val/rms_ratio",
    "val/signal_power",
    "val/noise_power",
    "val/snr_db",
    "val/si_sdr_db",
    "val/mel_distance",
    "val/pesq",
    "val/stoi",
    "vq/perplexity",
    "vq/dead_fraction",
    "opt/lr",
)
READ_PREFIXES = ("loss/", "disc/")


def is_read(key: str) -> bool:
    return key in READ or key.startswith(READ_PREFIXES)


@dataclass
class History:
    """metric -> {epoch: value}, the config the run trained with (when the source holds it) and how it
    ended (a search trial's stop reason, a failed run), when the source says."""

    series: dict[str, dict[int, float]]
    config: Config | None = None
    ended: str = ""
    unit: str = "epoch"  # "block": pasted debug blocks without epoch numbers, numbered in the order pasted

    @property
    def epochs(self) -> list[int]:
        return sorted({e for values in self.series.values() for e in values})

    def points(self, key: str, since: int = 0) -> list[tuple[int, float]]:
        """(epoch, value) of one metric from epoch `since` on, in order."""
        return sorted((e, v) for e, v in self.series.get(key, {}).items() if e >= since)

    def last(self, key: str) -> float | None:
        found = self.points(key)
        return found[-1][1] if found else None

    def learning_rate(self) -> float | None:
        """The config's, else the last one logged (opt/lr) or pasted."""
        return self.config.learning_rate if self.config else self.last("opt/lr")

    def score_metric(self) -> str:
        """What the run kept its best epoch by: its config's best_metric, else SNR (the debug block's)."""
        metric = self.config.best_metric if self.config else "val/snr_db"
        return metric if metric in self.series else "val/snr_db"


def from_rows(rows: Iterable[dict], config: Config | None = None) -> History:
    """From per-epoch dicts (a trial's reports, train()'s metrics): each row's metrics at its "epoch"; the
    last stop reason a row carries (a trial's verdict) is how it ended."""
    series: dict[str, dict[int, float]] = {}
    ended = ""
    for row in rows:
        ended = row.get(REASON) or ended
        if "epoch" not in row:
            continue
        for key, value in row.items():
            if is_read(key) and isinstance(value, int | float) and not isinstance(value, bool):
                series.setdefault(key, {})[int(row["epoch"])] = float(value)
    return History(series, config, ended)


def config_of(params: dict[str, str]) -> Config | None:
    """A run's config from its MLflow params; None when they do not make one (a run of another version)."""
    try:
        return make_config({k: v for k, v in params.items() if k in FIELDS})
    except ConfigError:
        return None


def read_run(client: MlflowClient, run: Run) -> History:
    """An MLflow run (train_codec.py's or a search trial's): the histories of the metrics the rules read, its
    config, and how it ended (its stop_reason tag, else a FAILED status)."""
    series = {
        key: {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        for key in run.data.metrics
        if is_read(key)
    }
    ended = run.data.tags.get("stop_reason") or ("FAILED" if run.info.status == "FAILED" else "")
    return History(series, config_of(run.data.params), ended)


def non_finite(h: History) -> list[tuple[str, int, float]]:
    """(metric, epoch, value) of every NaN or infinite value, by epoch."""
    bad = [(k, e, v) for k, values in h.series.items() for e, v in values.items() if not math.isfinite(v)]
    return sorted(bad, key=lambda item: (item[1], item[0]))
