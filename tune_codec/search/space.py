"""Search-space YAML -> validated search settings and Tune distributions, before Ray starts.

metric: val/snr_db            # what trials are ranked on: val/snr_db, val/si_sdr_db, val/pesq, val/stoi;
                              # or [val/pesq, codec/kbps]: Optuna's multi-objective search of a Pareto front
trials: 12                    # trials Optuna proposes (with pbt: the population)
concurrency: 2                # trials running at once
base: cpu-demo                # the config trials start from: a named config or a YAML file beside this one
config: {num_epochs: 12}      # fixed for every trial (any config field), changing the base
stop: {grace_epochs: 3, range_ratio: [0.5, 2.0], min_perplexity: 2.0, penalty_db: -30}
scheduler: asha               # asha, pbt or pb2 (Population Based Training: weights change during training)
asha: {grace_period: 4, reduction_factor: 2}   # or `asha: off`; off by default below 4 epochs
pbt: {perturbation_interval: 3, quantile_fraction: 0.25, resample_probability: 0.25}
search:                       # config field -> distribution (with pbt: the first values and the mutations)
  rms_weight: {loguniform: [1, 100]}
  mel_weight: {categorical: [0, 1]}
  channels: {fixed: 16}
start: [{rms_weight: 10, ...}]   # points evaluated first (the hand fix)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import optuna
from optuna.distributions import distribution_to_json, json_to_distribution
from ray import tune

from tune_codec.config import (
    FIELDS,
    Config,
    coerce,
    flag_text,
    for_model,
    load_config,
    make_config,
    size_owner,
)
from tune_codec.errors import SpaceError, UsageError
from tune_codec.files import read_yaml
from tune_codec.names import BEST_METRICS, PERCEPTUAL
from tune_codec.search.stopping import StopRules
from tune_codec.training.schedule import MUTABLE

DISTRIBUTIONS = ("loguniform", "uniform", "int", "categorical", "fixed")
SETTINGS = (
    "metric",
    "trials",
    "concurrency",
    "base",
    "config",
    "stop",
    "scheduler",
    "asha",
    "pbt",
    "search",
    "start",
)
SCHEDULERS = ("asha", "pbt", "pb2")
BITRATE = "codec/kbps"  # a second objective, minimised; the validation metrics are maximised


@dataclass(frozen=True)
class Space:
    """A search: what is searched, and every setting with its default (a space file holds only changes)."""

    base: Config  # defaults plus the space's fixed `config:` values
    search: dict[str, tuple[str, object]]  # field -> (distribution, argument)
    metric: str = "val/snr_db"  # what trials are ranked on (maximised)
    objectives: tuple[str, ...] = ()  # multi-objective: (metric, BITRATE); () = the metric alone
    trials: int = 8
    concurrency: int = 2  # trials at once
    stop: StopRules = StopRules()
    # ASHAScheduler settings; None = off. Off by default where the grace period leaves no epoch to stop at
    asha: dict | None = field(default_factory=lambda: {"grace_period": 3, "reduction_factor": 2})
    scheduler: str = "asha"  # or pbt, pb2: Population Based Training (then asha is None)
    pbt: dict = field(
        default_factory=lambda: {
            "perturbation_interval": 3,
            "quantile_fraction": 0.25,
            "resample_probability": 0.25,
        }
    )
    start: tuple[dict, ...] = ()  # points evaluated first

    def param_space(self) -> dict:
        """Tune's param_space: every config field, the searched ones as distributions."""
        params = dataclasses.asdict(self.base)
        params.update({name: to_tune(kind, arg) for name, (kind, arg) in self.search.items()})
        return params

    def searched(self) -> list[str]:
        return searched_fields(self.search)

    @property
    def population(self) -> bool:
        """Population Based Training: the loss weights and learning rate change during training."""
        return self.scheduler in ("pbt", "pb2")

    @property
    def checkpoint_every(self) -> int:
        """Epochs between a trial's checkpoints. A population keeps every one (num_to_keep=None): a worse
        trial may copy it after its owner has trained on, and Tune would have deleted it."""
        return self.pbt["perturbation_interval"] if self.population else 1

    @property
    def checkpoints_kept(self) -> int:
        """Checkpoints a trial holds at most (a finishing trial holds one more for a moment)."""
        return math.ceil(self.base.num_epochs / self.checkpoint_every) if self.population else 1


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


def choice(name: str, value):
    """A categorical value as the searchers hold it: the field's type, or for strides its flag text
    ("2,4,8"), since Optuna's choices are scalars."""
    value = coerce(name, value)
    return flag_text(value) if isinstance(value, tuple) else value


def to_optuna(name: str, kind: str, arg) -> optuna.distributions.BaseDistribution:
    """A searched field's distribution as Optuna holds it (categorical choices of the field's type)."""
    if kind in ("loguniform", "uniform"):
        return optuna.distributions.FloatDistribution(*arg, log=kind == "loguniform")
    if kind == "int":
        return optuna.distributions.IntDistribution(*arg)
    return optuna.distributions.CategoricalDistribution([choice(name, v) for v in arg])


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


SPACES = Path(__file__).parents[1] / "search_spaces"  # the bundled spaces: the source tree's search_spaces/


def bundled_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES.glob("*.yaml"))


def load_space(name_or_path: str | Path) -> Space:
    """A bundled space by name (amplitude, perceptual, ...) or a search-space YAML file."""
    path = SPACES / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
        if not path.exists():
            raise SpaceError(
                f"{str(name_or_path)!r} is neither a bundled search space ({', '.join(bundled_spaces())}) "
                "nor a file"
            )
    return read_yaml(path, lambda raw: parse_space(raw, path), SpaceError, str(name_or_path))


def parse_space(raw, path: Path | None = None) -> Space:
    if not isinstance(raw, dict):
        raise SpaceError(f"expected a mapping with keys {', '.join(SETTINGS)}")
    unknown = sorted(set(raw) - set(SETTINGS))
    if unknown:
        raise SpaceError(f"unknown setting {', '.join(unknown)} (allowed: {', '.join(SETTINGS)})")
    named = None
    if "base" in raw:
        try:
            named = load_config(str(raw["base"]), relative_to=path)
        except UsageError as e:
            raise SpaceError(f"base: {e}") from None
    base = checked_config(raw.get("config") or {}, "config", named)
    search = raw.get("search") or {}
    if not isinstance(search, dict):
        raise SpaceError(f"search: expected a mapping of config fields to distributions, got {search!r}")
    search = {name: parse_distribution(name, spec, base) for name, spec in search.items()}
    check_models(search, base)
    if not searched_fields(search):
        raise SpaceError("search: names no field with a distribution to search")
    metric, objectives = parse_metric(raw.get("metric", default("metric")))
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
    scheduler = raw.get("scheduler", default("scheduler"))
    if scheduler not in SCHEDULERS:
        raise SpaceError(f"scheduler: {scheduler!r} is not one of {', '.join(SCHEDULERS)}")
    asha_set = raw.get("asha", "off") not in ("off", False)  # `asha: off` fits every search
    if scheduler != "asha" and asha_set:
        raise SpaceError(f"asha: a {scheduler} search has no ASHA; leave asha: out")
    if scheduler == "asha" and "pbt" in raw:
        raise SpaceError("pbt: needs scheduler: pbt or pb2")
    if objectives and (asha_set or scheduler != "asha"):
        raise SpaceError(
            f"metric: a search of {' and '.join(objectives)} ranks trials on both; ASHA and PBT rank on one "
            "(leave scheduler: and asha: out)"
        )
    if scheduler != "asha":
        check_population(search, scheduler, base.num_epochs)
    return Space(
        base=base,
        search=search,
        metric=metric,
        objectives=objectives,
        trials=trials,
        concurrency=concurrency,
        stop=parse_stop(raw.get("stop") or {}),
        asha=None if objectives or scheduler != "asha" else parse_asha(raw.get("asha", {}), base.num_epochs),
        scheduler=scheduler,
        pbt=parse_pbt(raw.get("pbt") or {}, base.num_epochs),
        start=start,
    )


def parse_metric(raw) -> tuple[str, tuple[str, ...]]:
    """metric: one validation metric, or [that metric, codec/kbps] for a multi-objective search."""
    names = raw if isinstance(raw, list) else [raw]
    if not (1 <= len(names) <= 2 and names[0] in BEST_METRICS and names[1:] in ([], [BITRATE])):
        raise SpaceError(
            f"metric: {raw!r} must be one of {', '.join(BEST_METRICS)}, or a list of one and {BITRATE}"
        )
    return names[0], tuple(names) if len(names) == 2 else ()


def check_population(search: dict, scheduler: str, num_epochs: int) -> None:
    """PBT changes what it searches during training: only the loss weights and the learning rate can
    change in a model being trained; PB2's Gaussian process needs continuous ranges."""
    for name, (kind, _) in search.items():
        if kind != "fixed" and name not in MUTABLE:
            raise SpaceError(
                f"search.{name}: {scheduler} changes the searched fields during training, and {name} is "
                f"built into the model, the discriminators or the data; fix it under config: (allowed: "
                f"{', '.join(MUTABLE)})"
            )
        if scheduler == "pb2" and kind not in ("loguniform", "uniform", "fixed"):
            raise SpaceError(
                f"search.{name}: pb2 searches continuous ranges (loguniform, uniform), not {kind}"
            )
    if num_epochs < 2:
        raise SpaceError(f"config.num_epochs: {scheduler} needs 2 or more epochs to change anything")


def parse_pbt(raw, num_epochs: int) -> dict:
    defaults = default("pbt")
    if not isinstance(raw, dict) or set(raw) - set(defaults):
        raise SpaceError(f"pbt: {raw!r} (allowed keys: {', '.join(defaults)})")
    settings = {**defaults, **raw}
    interval, quantile = settings["perturbation_interval"], settings["quantile_fraction"]
    resample = settings["resample_probability"]
    if "perturbation_interval" not in raw:  # the default, where the run is shorter than it
        interval = settings["perturbation_interval"] = max(1, min(interval, num_epochs - 1))
    if not (isinstance(interval, int) and 1 <= interval < max(num_epochs, 2)):
        raise SpaceError(
            f"pbt.perturbation_interval: {interval!r} must be an int from 1 to num_epochs - 1 "
            f"({num_epochs - 1})"
        )
    if not (isinstance(quantile, int | float) and 0 < quantile <= 0.5):
        raise SpaceError(f"pbt.quantile_fraction: {quantile!r} must be in (0, 0.5]")
    if not (isinstance(resample, int | float) and 0 <= resample <= 1):
        raise SpaceError(f"pbt.resample_probability: {resample!r} must be in [0, 1]")
    return settings


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
    if name == "best_metric":
        raise SpaceError(f"{where}: best_metric follows the space's metric: (set that instead)")
    if not (isinstance(spec, dict) and len(spec) == 1):
        raise SpaceError(f"{where}: expected one of {{{': ..., '.join(DISTRIBUTIONS)}: ...}}, got {spec!r}")
    ((kind, arg),) = spec.items()
    if kind not in DISTRIBUTIONS:
        raise SpaceError(f"{where}: unknown distribution {kind!r} (allowed: {', '.join(DISTRIBUTIONS)})")
    if kind == "fixed":
        return kind, getattr(checked_data(name, arg, where, base), name)
    if kind == "categorical":
        if not isinstance(arg, list) or not arg:
            raise SpaceError(f"{where}: categorical needs a non-empty list of values, got {arg!r}")
        for value in arg:  # each choice must make a valid config
            checked_data(name, value, where, base)
        return kind, tuple(choice(name, value) for value in arg)
    if not (isinstance(arg, list) and len(arg) == 2 and all(isinstance(v, int | float) for v in arg)):
        raise SpaceError(f"{where}: {kind} needs [low, high] numbers, got {arg!r}")
    low, high = arg
    if not low < high:
        raise SpaceError(f"{where}: low {low} must be below high {high}")
    if kind == "loguniform" and low <= 0:
        raise SpaceError(f"{where}: loguniform needs low > 0, got {low}")
    for value in (low, high):  # both ends must make a valid config (learning_rate > 0, weights >= 0)
        checked_data(name, value, where, base)
    if kind == "int" and not all(float(v).is_integer() for v in arg):
        raise SpaceError(f"{where}: int needs whole-number bounds, got {arg!r}")
    return kind, (int(low), int(high)) if kind == "int" else (float(low), float(high))


def check_models(search: dict[str, tuple[str, object]], base: Config) -> None:
    """A model's size field in the search needs that model among the ones the search trains: in a trial of
    another model it is set back to its default (config.for_model), so alone it would change nothing."""
    kind, arg = search.get("model", ("fixed", base.model))
    models = list(arg) if kind == "categorical" else [arg]
    for name in search:
        owner = size_owner(name)
        if owner and owner not in models:
            raise SpaceError(
                f"search.{name}: a size field of model {owner}, and this search trains only "
                f"{', '.join(models)}: search model: {{categorical: [..., {owner}]}}, or set model: {owner} "
                "under config:"
            )


def data_shape(config: Config) -> tuple:
    """What the decoded data, loaded once for all trials, depends on."""
    return (config.sample_rate, config.segment_samples, config.valid_fraction, config.valid_max_seconds,
            config.silence_db)  # fmt: skip


def checked_data(name: str, value, where: str, base: Config) -> Config:
    """checked_config, and the value must leave the data all trials share as it is (strides may change if
    their hop divides the segment). A model's size field is checked on that model, as its trials build it."""
    owner = size_owner(name)
    config = checked_config(for_model({"model": owner, name: value} if owner else {name: value}), where, base)
    if data_shape(config) != data_shape(base):
        raise SpaceError(
            f"{where}: {value!r} changes the data shared by all trials ({config.segment_samples}-sample "
            f"segments at {config.sample_rate} Hz, not {base.segment_samples} at {base.sample_rate} Hz); "
            "set it under config:"
        )
    return config


def parse_start(i: int, point, searched: list[str], base: Config) -> dict:
    where = f"start[{i}]"
    if not isinstance(point, dict):
        raise SpaceError(f"{where}: expected a mapping of searched fields, got {point!r}")
    wrong = sorted(set(point) ^ set(searched))
    if wrong:
        raise SpaceError(
            f"{where}: must give exactly the searched fields {', '.join(searched)} (not {wrong})"
        )
    checked_config(for_model(point), where, base)  # as the trial builds it; Optuna keeps the point as given
    return {k: choice(k, v) for k, v in point.items()}


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
