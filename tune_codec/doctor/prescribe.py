"""A search space around a run's own config: the fields its findings implicate, searched from the run's value
the way each finding points, the run's config as the first point, ranked on the metric that fits."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from datetime import date
from pathlib import Path

import yaml

from tune_codec.config import DEFAULTS, Config
from tune_codec.doctor.findings import Finding
from tune_codec.names import PERCEPTUAL
from tune_codec.search.space import Space, load_space

# How far a search reaches from the run's value, as a factor: a decade and a half either way for weights,
# further for the learning rate (the seed's 1e-5 is 100x under the default)
SPAN = {"learning_rate": 300.0}
WEIGHT_SPAN = 30.0
# ...and at least this factor past the field's default, the way it points: a learning rate of 100 is
# searched down to 3.3e-4, not to 0.33, which diverges too
PAST_DEFAULT = 3.0
# Where a search of a field the run had at 0 reaches up to: 3x the default, or these where the default is 0
FROM_ZERO = {"gain_db": 6.0, "dead_code_threshold": 1.0, "weight_decay": 0.01}
# The fewest a whole-number field may have (codebook_size: a code is at least one bit)
AT_LEAST = {"codebook_size": 2}
# The loss weights and learning rate, searched around the run where no finding implicates a field
AROUND = {"learning_rate": "around", "rms_weight": "around", "peak_weight": "around", "l1_weight": "around"}
TRIALS, CONCURRENCY = 8, 2
# ASHA compares trials from this many epochs on; a shorter run's trials all run to its end: a codec's first
# epochs' SNR dips while the level settles (the hand fix: -1.4 to -2.6 dB in its first 3), so an early
# rung would stop the trials that fix the level in favour of the failing run
ASHA_FROM = 10


def directions(findings: list[Finding]) -> dict[str, str]:
    """field -> up, down or around, over every finding; where two disagree, around."""
    merged: dict[str, str] = {}
    for finding in findings:
        for name, way in finding.fields.items():
            merged[name] = way if merged.get(name, way) == way else "around"
    return merged


def distribution(name: str, value, way: str) -> dict | None:
    """The distribution of one field around the run's value, which it always contains (the first point is
    the run); None where the field cannot move that way (a weight of 0 cannot go down)."""
    if isinstance(value, bool):
        return {"categorical": [value, not value]}
    if isinstance(value, int):  # widths and sizes: powers of two from the run's
        near = {"up": (value, 2 * value, 4 * value), "down": (value // 4, value // 2, value)}
        choices = sorted(
            {max(AT_LEAST.get(name, 1), v) for v in near.get(way, (value // 2, value, 2 * value))}
        )
        return {"categorical": choices} if len(choices) > 1 else None
    if value == 0:
        if way == "down":
            return None
        top = 3 * (getattr(DEFAULTS, name) or FROM_ZERO.get(name, 1.0))
        return {"uniform": [0.0, float(top)]}
    span = SPAN.get(name, WEIGHT_SPAN)
    far = {"up": span, "down": 1 / span}.get(way)
    if far is None:  # around: as far either way
        return {"loguniform": [rounded(value / math.sqrt(span)), rounded(value * math.sqrt(span))]}
    end = value * far
    if default := getattr(DEFAULTS, name, 0.0):  # a run far off the default: the search reaches past it
        end = min(end, default / PAST_DEFAULT) if way == "down" else max(end, default * PAST_DEFAULT)
    return {"loguniform": sorted([float(value), rounded(end)])}  # the run's value at one end, exactly


def rounded(value: float) -> float:
    return float(f"{value:.3g}")


def prescribe(findings: list[Finding], config: Config) -> dict:
    """The space as a dict (what a space file holds): config: the run's (every field it changed from the
    defaults; num_epochs doubled where a finding says it needs more steps), search: the implicated fields,
    start: the run's values, metric: what most findings rank on."""
    ways = directions(findings)
    epochs = config.num_epochs * (2 if ways.pop("num_epochs", None) == "up" else 1)
    base = dataclasses.replace(config, num_epochs=epochs)
    search = {}
    for name, way in (ways or AROUND).items():
        if spec := distribution(name, getattr(base, name), way):
            search[name] = spec
    if not search:  # nothing the findings point at can move: search around the run
        search = {n: s for n, w in AROUND.items() if (s := distribution(n, getattr(base, n), w))}
    metrics = Counter(f.metric for f in findings if f.metric not in PERCEPTUAL or base.perceptual_segments)
    metric = metrics.most_common(1)[0][0] if metrics else base.best_metric
    changed = {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in dataclasses.asdict(base).items()
        if v != getattr(DEFAULTS, k) and k != "best_metric"
    }
    return {
        "metric": metric,
        "trials": TRIALS,
        "concurrency": CONCURRENCY,
        "config": changed,
        "asha": {"grace_period": epochs // 2, "reduction_factor": 2} if epochs >= ASHA_FROM else "off",
        "search": search,
        "start": [{k: getattr(base, k) for k in search}],
    }


def write_space(path: Path, space: dict, findings: list[Finding], source: str) -> Space:
    """Write the space with a header saying where it came from, and check it as tune_codec.run will."""
    lines = [f"# python -m tune_codec.doctor {source}, {date.today().isoformat()}"]
    lines += [
        f"# finding: {f.name} -> {', '.join(f'{k} {w}' for k, w in f.fields.items())}" for f in findings
    ]
    lines.append("# the run's own config is the first point (start:); its fields are under config:")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n" + yaml.safe_dump(space, sort_keys=False))
    return load_space(path)
