"""Search-space YAML -> validated search settings and Tune distributions, before Ray starts.

metric: val/snr_db            # what Optuna maximises: val/snr_db, val/si_sdr_db, val/pesq, val/stoi
trials: 12                    # trials Optuna proposes
concurrency: 2                # trials running at once
config: {num_epochs: 12}      # fixed for every trial (any config field)
stop: {grace_epochs: 3, range_ratio: [0.5, 2.0], min_perplexity: 2.0, penalty_db: -30}
asha: {grace_period: 4, reduction_factor: 2}   # or `asha: off`; off by default below 4 epochs
search:                       # config field -> distribution
  rms_weight: {loguniform: [1, 100]}
  mel_weight: {categorical: [0, 1]}
  channels: {fixed: 16}
start: [{rms_weight: 10, ...}]   # points evaluated first (the hand fix)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import yaml
from optuna.distributions import distribution_to_json, json_to_distribution
from ray import tune

from tune_codec.config import BEST_METRICS, FIELDS, PERCEPTUAL, Config, UsageError, coerce, make_config
from tune_codec.stopping import StopRules

DISTRIBUTIONS = ("loguniform", "uniform", "int", "categorical", "fixed")
# fields that shape the decoded data, loaded once for all trials: set them under `config:`
DATA_FIELDS = (
    "sample_rate", "segment_seconds", "valid_fraction", "valid_max_seconds", "silence_db", "strides"
)  # fmt: skip
SETTINGS = ("metric", "trials", "concurrency", "config", "stop", "asha", "search", "start")


class SpaceError(UsageError):
    """A search space that cannot run; the message names the file, the key and what is allowed."""


@dataclass(frozen=True)
class Space:
    """A search: what is searched, and every setting with its default (a space file holds only changes)."""

    base: Config  # defaults plus the space's fixed `config:` values
    search: dict[str, tuple[str, object]]  # field -> (distribution, argument)
    metric: str = "val/snr_db"  # what Optuna maximises
    trials: int = 8
    concurrency: int = 2  # trials at once
    stop: StopRules = StopRules()
    # ASHAScheduler settings; None = off. Off by default where the grace period leaves no epoch to stop at
    asha: dict | None = field(default_factory=lambda: {"grace_period": 3, "reduction_factor": 2})
    start: tuple[dict, ...] = ()  # points evaluated first

    def param_space(self) -> dict:
        """Tune's param_space: every config field, the searched ones as distributions."""
        params = dataclasses.asdict(self.base)
        params.update({name: to_tune(kind, arg) for name, (kind, arg) in self.search.items()})
        return params

    def searched(self) -> list[str]:
        return searched_fields(self.search)


def default(name: str):
    """A setting's default, from the Space dataclass."""
    (f,) = [f for f in dataclasses.fields(Space) if f.name == name]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def searched_fields(search: dict[str, tuple[str, object]]) -> list[str]:
    """The fields with a distribution (not `fixed`)."""
    return [name for name, (kind, _) in search.items() if kind != "fixed"]


def to_tune(kind: str, arg):
    if kind == "loguniform":
        return tune.loguniform(*arg)
    if kind == "uniform":
        return tune.uniform(*arg)
    if kind == "int":
        return tune.randint(arg[0], arg[1] + 1)  # YAML bounds are inclusive
    if kind == "categorical":
        return tune.choice(list(arg))
    return arg  # fixed


def to_optuna(name: str, kind: str, arg) -> optuna.distributions.BaseDistribution:
    """A searched field's distribution as Optuna holds it (categorical choices of the field's type)."""
    if kind in ("loguniform", "uniform"):
        return optuna.distributions.FloatDistribution(*arg, log=kind == "loguniform")
    if kind == "int":
        return optuna.distributions.IntDistribution(*arg)
    return optuna.distributions.CategoricalDistribution([coerce(name, v) for v in arg])


def to_params(search: dict[str, tuple[str, object]]) -> dict[str, str]:
    """The searched fields as MLflow params: search.<field> = Optuna's JSON of its distribution."""
    return {
        f"search.{name}": distribution_to_json(to_optuna(name, kind, arg))
        for name, (kind, arg) in search.items()
        if kind != "fixed"
    }


def from_params(params: dict[str, str]) -> dict[str, optuna.distributions.BaseDistribution]:
    """What to_params wrote, read back."""
    return {
        k.removeprefix("search."): json_to_distribution(v)
        for k, v in params.items()
        if k.startswith("search.")
    }


def load_space(path: Path) -> Space:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as e:
        raise SpaceError(f"{path}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise SpaceError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    try:
        return parse_space(raw)
    except SpaceError as e:
        raise SpaceError(f"{path}: {e}") from None


def parse_space(raw) -> Space:
    if not isinstance(raw, dict):
        raise SpaceError(f"expected a mapping with keys {', '.join(SETTINGS)}")
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        raise SpaceError(f"unknown setting {', '.join(unknown)} (allowed: {', '.join(SETTINGS)})")
    base = checked_config(raw.get("config") or {}, "config")
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        raise SpaceError(f"search: expected a mapping of config fields to distributions, got {search!r}")
    search = {name: parse_distribution(name, spec, base) for name, spec in search.items()}
    if not searched_fields(search):
        raise SpaceError("search: names no field with a distribution to search")
    metric = raw.get("metric", default("metric"))
    if metric not in BEST_METRICS:
        raise SpaceError(f"metric: {metric!r} is not one of {', '.join(BEST_METRICS)}")
    if metric in PERCEPTUAL and not base.perceptual_segments:
        raise SpaceError(f"metric: {metric} is measured on config.perceptual_segments, which is 0")
    if "best_metric" in (raw.get("config") or {}) and base.best_metric != metric:
        raise SpaceError(f"config.best_metric: {base.best_metric} is not the space's metric {metric}")
    base = dataclasses.replace(base, best_metric=metric)  # each trial's best.pt: its best epoch by metric
    trials, concurrency = (positive_int(raw, k, default(k)) for k in ("trials", "concurrency"))
    searched = searched_fields(search)
    start = tuple(parse_start(i, point, searched, base) for i, point in enumerate(raw.get("start") or []))
    if len(start) > trials:
        raise SpaceError(f"start: {len(start)} points but only {trials} trials")
    return Space(
        base=base,
        search=search,
        metric=metric,
        trials=trials,
        concurrency=concurrency,
        stop=parse_stop(raw.get("stop") or {}),
        asha=parse_asha(raw.get("asha", {}), base.num_epochs),
        start=start,
    )


def checked_config(values, where: str, base: Config | None = None) -> Config:
    """base (or the defaults) with `values`, or a SpaceError naming `where`."""
    if not isinstance(values, dict):
        raise SpaceError(f"{where}: expected a mapping of config fields, got {values!r}")
    try:
        return make_config({**(dataclasses.asdict(base) if base else {}), **values})
    except UsageError as e:
        raise SpaceError(f"{where}: {e}") from None


def parse_distribution(name: str, spec, base: Config) -> tuple[str, object]:
    where = f"search.{name}"
    if name not in FIELDS:
        raise SpaceError(f"{where}: {name!r} is not a config field (allowed: {', '.join(FIELDS)})")
    if name in DATA_FIELDS:
        raise SpaceError(f"{where}: {name} shapes the data shared by all trials; set it under config:")
    if name == "best_metric":
        raise SpaceError(f"{where}: best_metric follows the space's metric: (set that instead)")
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise SpaceError(f"{where}: expected one of {{{': ..., '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    ((kind, arg),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: unknown distribution {kind!r} (allowed: {', '.join(DISTRIBUTIONS)})")
    if kind == "fixed":
        return kind, getattr(checked_config({name: arg}, where, base), name)
    if kind == "categorical":
        if not isinstance(arg, list) or not arg:
            raise SpaceError(f"{where}: categorical needs a non-empty list of values, got {arg!r}")
        for value in arg:  # each choice must make a valid config
            checked_config({name: value}, where, base)
        return kind, tuple(arg)
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, int | float) for v in arg)):
        raise SpaceError(f"{where}: {kind} needs [low, high] numbers, got {arg!r}")
    low, high = arg
    if not low < high:
        raise SpaceError(f"{where}: low {low} must be below high {high}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0, got {low}")
    for value in (low, high):  # both ends must make a valid config (learning_rate > 0, weights >= 0)
        checked_config({name: value}, where, base)
    if kind == "int" and not all(float(v).is_integer() for v in arg):
        raise SpaceError(f"{where}: int needs whole-number bounds, got {arg!r}")
    return kind, (int(low), int(high)) if kind == "int" else (float(low), float(high))


def parse_start(i: int, point, searched: list[str], base: Config) -> dict:
    where = f"start[{i}]"
    if not isinstance(point, dict):
        raise SpaceError(f"{where}: expected a mapping of searched fields, got {point!r}")
    wrong = sorted(set(point) ^ set(searched))
    if wrong:
        raise SpaceError(
            f"{where}: must give exactly the searched fields {', '.join(searched)} (not {wrong})"
        )
    checked = checked_config(point, where, base)
    return {k: getattr(checked, k) for k in point}


def positive_int(raw: dict, key: str, default: int) -> int:
    value = raw.get(key, default)
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise SpaceError(f"{key}: {value!r} must be an int >= 1")
    return value


def parse_stop(raw) -> StopRules:
    allowed = [f.name for f in dataclasses.fields(StopRules)]
    if not isinstance(raw, dict) or set(raw) - set(allowed):
        raise SpaceError(f"stop: {raw!r} (allowed keys: {', '.join(allowed)})")
    try:
        return StopRules(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()})
    except (TypeError, ValueError) as e:
        raise SpaceError(f"stop: {e}") from None


def parse_asha(raw, max_epochs: int) -> dict | None:
    if raw is False or raw == "off":
        return None
    defaults = default("asha")
    if not isinstance(raw, dict) or set(raw) - set(defaults):
        raise SpaceError(f"asha: {raw!r} (allowed: off, or keys {', '.join(defaults)})")
    settings = {**defaults, **raw}
    grace, factor = settings["grace_period"], settings["reduction_factor"]
    if "grace_period" not in raw and grace >= max_epochs:  # the default leaves ASHA no epoch to stop at
        return None
    if not (isinstance(grace, int) and 1 <= grace <= max_epochs):
        raise SpaceError(f"asha.grace_period: {grace!r} must be an int from 1 to num_epochs ({max_epochs})")
    if not (isinstance(factor, int | float) and factor > 1):
        raise SpaceError(f"asha.reduction_factor: {factor!r} must be > 1")
    return settings
