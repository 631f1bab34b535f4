"""Why a trial should stop: its output range collapsed, its loss went non-finite, or its codebook died.

The trial itself attaches the verdict to what it reports (`stop/reason`, and a penalised
`search/score`), so the last result Optuna learns from says the trial was bad; Tune's stopper only
reads it. A quiet collapsed output scores about 0 dB SNR, better than a healthy codec's first
epochs (about -3 dB): without the penalty the sampler would chase the collapse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ray import tune

from tune_codec.names import ASHA, CODEBOOK_COLLAPSE, COMPLETED, NON_FINITE, RANGE_COLLAPSE, REASON, SCORE


@dataclass(frozen=True)
class StopRules:
    grace_epochs: int = 3  # epochs before the range and codebook rules apply
    range_ratio: tuple[float, float] = (0.5, 2.0)  # allowed max|out| / max|in| after the grace period
    min_perplexity: float = 2.0  # fewer codes in use than this (per stage, effectively) = collapsed
    penalty_db: float = -30.0  # score reported for a stopped trial

    def __post_init__(self):
        low, high = self.range_ratio
        if not (isinstance(self.grace_epochs, int) and self.grace_epochs >= 0):
            raise ValueError(f"grace_epochs={self.grace_epochs!r} must be an int >= 0")
        if not 0 <= low < 1 < high:
            raise ValueError(f"range_ratio={list(self.range_ratio)} must be [low, high] with low < 1 < high")
        if not self.min_perplexity >= 1:
            raise ValueError(f"min_perplexity={self.min_perplexity!r} must be >= 1")


def stop_reason(metrics: dict, rules: StopRules) -> str | None:
    """None for a healthy epoch, else a short reason."""
    bad = sorted(k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v))
    if bad:
        return f"{NON_FINITE} {', '.join(bad)}"
    if metrics["epoch"] <= rules.grace_epochs:
        return None
    ratio, (low, high) = metrics["val/range_ratio"], rules.range_ratio
    if not low <= ratio <= high:
        return f"{RANGE_COLLAPSE}: ratio {ratio:.3f} outside {low}-{high}"
    if metrics["vq/perplexity"] < rules.min_perplexity:
        return f"{CODEBOOK_COLLAPSE}: perplexity {metrics['vq/perplexity']:.2f} < {rules.min_perplexity}"
    return None


def judge(metrics: dict, rules: StopRules, metric: str) -> dict:
    """metrics plus the verdict: stop/reason ('' when healthy) and search/score."""
    reason = stop_reason(metrics, rules) or ("" if metric in metrics else f"no {metric} this epoch")
    score = rules.penalty_db if reason else metrics[metric]
    return {**metrics, REASON: reason or "", SCORE: score}


class CollapseStopper(tune.Stopper):
    """Stops a trial whose last result carries a stop reason."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        return bool(result.get(REASON))

    def stop_all(self) -> bool:
        return False


def why_stopped(last: dict, num_epochs: int) -> str:
    """The stopper's reason, ASHA's early stop, or 'completed'."""
    epochs = int(last.get("epoch", 0))
    if last.get(REASON):
        return last[REASON]
    return f"{ASHA} {epochs} epochs" if epochs < num_epochs else COMPLETED


def is_useful(stop_reason: str) -> bool:
    """A trial that trained to its end or until ASHA stopped it: not collapsed, not failed."""
    return stop_reason == COMPLETED or stop_reason.startswith(ASHA)
