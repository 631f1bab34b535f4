"""A search's trial as one row, built alike from Ray's results (the search's summary) and from MLflow's runs
(the report): its searched values, its best epoch by the space's metric and the scores at that epoch, why it
ended, its diagnosis and what it cost; and the one rule for a trial worth ranking."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tune_codec.names import best_key, label
from tune_codec.search.cost import dollars
from tune_codec.search.stopping import is_useful

# the scores read at each trial's best epoch by the space's metric (the epoch its best.pt holds)
AT_BEST = ("val/snr_db", "val/si_sdr_db", "val/pesq", "val/stoi", "val/range_ratio", "val/rms_ratio")
COPIED = "copied"  # the best epoch of a PBT trial whose best came from another trial's checkpoint


@dataclass
class TrialRow:
    trial: str
    params: dict  # searched field -> value
    epochs: int  # epochs trained
    best_epoch: int | str  # by the space's metric; 0 if it never validated, COPIED
    best: float  # the space's metric at best_epoch
    at_best: dict  # the other AT_BEST scores at best_epoch
    reason: str  # why it ended: a stop rule, ASHA, completed, or how it failed
    failed: bool  # crashed, or its run did not finish
    diagnosis: str  # the doctor's findings for a trial that did not complete; '' otherwise
    device_hours: float
    train_s: float
    kbps: float | None = None  # where the search has a bitrate objective

    @property
    def useful(self) -> bool:
        """Trained to its end or until ASHA stopped it, and scored: not collapsed, not failed."""
        return not self.failed and is_useful(self.reason) and math.isfinite(self.best)

    def columns(self, metric: str, price: float | None = None) -> dict:
        """The row as the summary and the report print it (its cost in dollars at `price` per device-hour)."""
        return {
            "trial": self.trial,
            **self.params,
            "epochs": self.epochs,
            "best epoch": self.best_epoch,
            best_column(metric): self.best,
            **{label(key): value for key, value in self.at_best.items()},
            **({} if self.kbps is None else {"kbps": self.kbps}),
            "device h": self.device_hours,
            **({} if price is None else {"cost": dollars(self.device_hours * price)}),
            "stop reason": self.reason,
            "diagnosis": self.diagnosis,
        }


def best_column(metric: str) -> str:
    """The heading of the space's metric at the best epoch: best SNR dB, best PESQ."""
    return f"best {label(metric)}"


def at_best_epoch(history: dict[str, dict], metric: str, last: dict) -> tuple[int | str, float, dict]:
    """From each AT_BEST score's values by epoch: the best epoch by `metric`, its value, the other scores
    there. A running best in `last` that no epoch of the trial's own reached came from a checkpoint it
    copied (PBT): that epoch is COPIED and the other scores unknown."""
    series = {e: v for e, v in (history.get(metric) or {}).items() if math.isfinite(v)}
    epoch = max(series, key=series.get) if series else 0
    best = series.get(epoch, math.nan)
    copied = last.get(best_key(metric), math.nan)
    if series and copied > best:
        epoch, best = COPIED, copied
    others = {key: (history.get(key) or {}).get(epoch, math.nan) for key in AT_BEST if key != metric}
    return epoch, best, others
