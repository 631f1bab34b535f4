"""Config: every default of a codec training run lives here and only here."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path


class UsageError(ValueError):
    """An error the user caused (a bad flag, file, space or setting): the command lines print it as one
    line and exit 2. Anything else keeps its traceback."""


class ConfigError(UsageError):
    """A config value that is not allowed; the message names the field and what is allowed."""


# Loss term name -> the Config field that weights it (the one place the names meet).
LOSS_WEIGHTS = {
    "rec/l1": "l1_weight",
    "rec/mel": "mel_weight",
    "amp/rms": "rms_weight",
    "amp/peak": "peak_weight",
    "vq/commit": "commit_weight",
    "rec/stft": "stft_weight",
    "adv/gen": "adv_weight",
    "adv/feat": "feat_weight",
}
# Terms whose weight above 0 builds the discriminators: they are fixed for a run (a schedule or PBT
# cannot add a network to a model being trained)
ADVERSARIAL = ("adv/gen", "adv/feat")
DISCRIMINATORS = ("msstft", "mpd")  # EnCodec's multi-scale STFT, HiFi-GAN's multi-period
ADV_LOSSES = ("hinge", "lsq")
LR_DECAYS = ("none", "exponential", "cosine")

# The validation metrics a run keeps the best epoch of (higher is better); PESQ and STOI are scored on
# perceptual_segments segments.
BEST_METRICS = ("val/snr_db", "val/si_sdr_db", "val/pesq", "val/stoi")
PERCEPTUAL = ("val/pesq", "val/stoi")


def best_key(metric: str) -> str:
    """The running best of a validation metric, as logged: val/pesq -> val/best_pesq."""
    return metric.replace("val/", "val/best_", 1)


def at_codebooks(metric: str, n: int) -> str:
    """A validation metric scored from the first n codebooks: val/snr_db -> val/codebooks_2/snr_db."""
    return metric.replace("val/", f"val/codebooks_{n}/", 1)


@dataclass(frozen=True)
class Config:
    # data
    sample_rate: int = 16000  # Hz; audio is resampled to this
    segment_seconds: float = 0.5  # length of one training example
    random_crop: bool = False  # new cuts each epoch: every segment moved up to half its length in its file
    gain_db: float = 0.0  # random gain per training segment, in +-gain_db dB (peak kept below 1); 0 = off
    valid_fraction: float = 0.1  # share of files held out for validation (split by file)
    valid_max_seconds: float = 600.0  # cap on the validation audio (whole files, fixed order); 0 = no cap
    perceptual_segments: int = 16  # validation segments PESQ and STOI score each epoch, as one clip; 0 = off
    best_metric: str = "val/snr_db"  # best.pt keeps the epoch where this is highest (one of BEST_METRICS)
    silence_db: float = -45.0  # segments with RMS below this (dBFS) are dropped
    # model (SEANet-style encoder/decoder)
    channels: int = 16  # width of the first conv; doubles at each stride
    strides: tuple[int, ...] = (2, 4, 8)  # downsampling per block; hop = product
    residual_layers: int = 1  # residual units per block, dilations 1, 2, 4 ... (EnCodec's SEANet)
    latent_dim: int = 64  # dimension of each latent frame (and of each codeword)
    # residual vector quantizer
    n_codebooks: int = 4  # residual stages
    codebook_size: int = 256  # codewords per stage; bits per code = log2(size), rounded up
    ema_decay: float = 0.9  # EMA rate of the codebook updates; short runs need it fast
    dead_code_threshold: float = 1.0  # codes with EMA usage (vectors per batch) below this are restarted
    kmeans_iters: int = 10  # k-means steps for the codebook init on the first batch
    quantizer_dropout: float = 0.0  # share of training segments decoded from a random 1..n_codebooks stages
    # loss weights (0 = computed and logged, not trained on)
    l1_weight: float = 1.0  # time-domain L1
    mel_weight: float = 0.0  # multi-scale log-mel distance ("perceptual")
    rms_weight: float = 10.0  # (RMS(out) - RMS(in))^2 per segment
    peak_weight: float = 5.0  # (max|out| - max|in|)^2 per segment
    commit_weight: float = 1.0  # VQ commitment, encoder pulled to its codes
    stft_weight: float = 0.0  # multi-resolution STFT: spectral convergence + log-magnitude L1
    adv_weight: float = 0.0  # adv/gen, the decoder fooling the discriminators; > 0 builds them
    feat_weight: float = 0.0  # adv/feat, L1 of discriminator features, input vs output; > 0 builds them
    balancer: bool = False  # weights become shares of one gradient norm at the output (EnCodec's balancer)
    # discriminators (built when adv_weight or feat_weight > 0)
    discriminators: str = "msstft,mpd"  # msstft (multi-scale STFT), mpd (multi-period), or both
    disc_channels: int = 16  # width of the discriminators' first layers
    adv_loss: str = "hinge"  # hinge or lsq (least squares)
    adv_start_epoch: int = 1  # first epoch that trains the discriminators and uses their losses
    # optimisation
    batch_size: int = 16  # segments per step
    num_epochs: int = 100  # passes over the training segments
    learning_rate: float = 1e-3  # AdamW, codec and discriminators
    adam_beta1: float = 0.9  # AdamW's first-moment decay (EnCodec 0.5, DAC 0.8)
    adam_beta2: float = 0.999  # AdamW's second-moment decay (EnCodec 0.9, DAC 0.99)
    weight_decay: float = 0.0  # AdamW's decoupled weight decay
    lr_warmup_steps: int = 0  # steps of linear warm-up from 0 to learning_rate
    lr_decay: str = "none"  # none, exponential or cosine, over all num_epochs' steps
    lr_final: float = 0.1  # learning rate at the last step, a share of learning_rate (with lr_decay)
    grad_clip: float = 1.0  # max gradient norm; 0 = off
    max_steps_per_epoch: int = 0  # 0 = a full pass; >0 caps an epoch (quick trials)
    bf16: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    seed: int = 0  # model init, shuffling, codebook restarts

    def __post_init__(self):
        problems = _problems(self)
        if problems:
            raise ConfigError("; ".join(problems))

    @property
    def hop(self) -> int:
        """Samples per latent frame."""
        return math.prod(self.strides)

    @property
    def bits_per_code(self) -> int:
        """Bits each code is stored in: log2(codebook_size), rounded up."""
        return math.ceil(math.log2(self.codebook_size))

    @property
    def bitrate(self) -> float:
        """Bits per second of the codes as stored."""
        return self.sample_rate / self.hop * self.n_codebooks * self.bits_per_code

    @property
    def compression(self) -> float:
        """16-bit PCM bitrate over the codec bitrate."""
        return 16 * self.sample_rate / self.bitrate

    @property
    def segment_samples(self) -> int:
        # a whole number of frames, so the decoder output matches the input length
        return max(1, round(self.segment_seconds * self.sample_rate / self.hop)) * self.hop

    @property
    def adversarial(self) -> bool:
        """Whether the run builds and trains discriminators."""
        return any(getattr(self, LOSS_WEIGHTS[name]) > 0 for name in ADVERSARIAL)

    def kbps_at(self, n_codebooks: int) -> float:
        """The bitrate decoded from the first n_codebooks stages."""
        return self.bitrate / self.n_codebooks * n_codebooks / 1000

    def describe(self) -> str:
        return (
            f"{self.bitrate / 1000:g} kbps ({self.n_codebooks} x {self.bits_per_code}"
            f" bits at {self.sample_rate / self.hop:g} frames/s), "
            f"{self.compression:g}x compression of 16-bit {self.sample_rate} Hz PCM"
        )


def _problems(c: Config) -> list[str]:
    checks = [
        (c.sample_rate >= 1000, "sample_rate", "an int >= 1000"),
        (c.segment_seconds > 0, "segment_seconds", "> 0"),
        (0 < c.valid_fraction < 1, "valid_fraction", "between 0 and 1"),
        (c.valid_max_seconds >= 0, "valid_max_seconds", ">= 0"),
        (c.perceptual_segments >= 0, "perceptual_segments", ">= 0"),
        (c.channels >= 1, "channels", ">= 1"),
        (len(c.strides) >= 1 and all(s >= 1 for s in c.strides), "strides", "ints >= 1"),
        (c.residual_layers >= 0, "residual_layers", ">= 0"),
        (c.latent_dim >= 1, "latent_dim", ">= 1"),
        (c.n_codebooks >= 1, "n_codebooks", ">= 1"),
        (c.codebook_size >= 2, "codebook_size", ">= 2"),
        (0 <= c.ema_decay < 1, "ema_decay", "in [0, 1)"),
        (c.dead_code_threshold >= 0, "dead_code_threshold", ">= 0"),
        (c.kmeans_iters >= 0, "kmeans_iters", ">= 0"),
        (c.batch_size >= 1, "batch_size", ">= 1"),
        (c.num_epochs >= 1, "num_epochs", ">= 1"),
        (c.learning_rate > 0 and math.isfinite(c.learning_rate), "learning_rate", "> 0"),
        (c.grad_clip >= 0, "grad_clip", ">= 0"),
        (c.max_steps_per_epoch >= 0, "max_steps_per_epoch", ">= 0"),
        (c.gain_db >= 0, "gain_db", ">= 0"),
        (0 <= c.quantizer_dropout <= 1, "quantizer_dropout", "in [0, 1]"),
        (c.disc_channels >= 1, "disc_channels", ">= 1"),
        (c.adv_start_epoch >= 1, "adv_start_epoch", ">= 1"),
        (0 <= c.adam_beta1 < 1, "adam_beta1", "in [0, 1)"),
        (0 <= c.adam_beta2 < 1, "adam_beta2", "in [0, 1)"),
        (c.weight_decay >= 0, "weight_decay", ">= 0"),
        (c.lr_warmup_steps >= 0, "lr_warmup_steps", ">= 0"),
        (0 < c.lr_final <= 1, "lr_final", "in (0, 1]"),
        (c.adv_loss in ADV_LOSSES, "adv_loss", f"one of {', '.join(ADV_LOSSES)}"),
        (c.lr_decay in LR_DECAYS, "lr_decay", f"one of {', '.join(LR_DECAYS)}"),
        (
            bool(c.discriminators) and set(c.discriminators.split(",")) <= set(DISCRIMINATORS),
            "discriminators",
            f"{' or '.join(DISCRIMINATORS)}, or both comma-separated",
        ),
    ]
    problems = [f"{name}={getattr(c, name)!r} must be {rule}" for ok, name, rule in checks if not ok]
    if c.best_metric not in BEST_METRICS:
        problems.append(f"best_metric={c.best_metric!r} must be one of {', '.join(BEST_METRICS)}")
    elif c.best_metric in PERCEPTUAL and not c.perceptual_segments:
        problems.append(f"best_metric={c.best_metric} is scored on perceptual_segments, which is 0")
    problems += [
        f"{w}={getattr(c, w)!r} must be >= 0" for w in LOSS_WEIGHTS.values() if not getattr(c, w) >= 0
    ]
    return problems


FIELDS = {f.name: f for f in fields(Config)}
DEFAULTS = Config()


def make_config(params: dict) -> Config:
    """Config from a dict; unknown keys are errors naming the allowed ones."""
    unknown = sorted(set(params) - set(FIELDS))
    if unknown:
        raise ConfigError(f"unknown config field {', '.join(unknown)} (allowed: {', '.join(FIELDS)})")
    coerced = {k: coerce(k, v) for k, v in params.items()}
    return dataclasses.replace(DEFAULTS, **coerced)


CONFIGS = Path(__file__).parent / "configs"  # the named configs: NAME.yaml, a mapping of fields


def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def load_config(name_or_path: str | Path, relative_to: Path | None = None) -> Config:
    """A named config (cpu-demo, speech16k-8kbps, ...) or a YAML file of config fields (a relative path
    from relative_to's folder when given); the defaults fill the fields it leaves out."""
    from tune_codec.files import read_yaml  # files imports this module

    path = CONFIGS / f"{name_or_path}.yaml"
    if not path.is_file():
        path = Path(name_or_path)
        if relative_to is not None and not path.is_absolute():
            path = relative_to.parent / path
        if not path.is_file():
            raise ConfigError(
                f"config {str(name_or_path)!r} is neither a named config ({', '.join(named_configs())}) "
                "nor a YAML file"
            )

    def parse(raw) -> Config:
        if not isinstance(raw, dict):
            raise ConfigError(f"expected a mapping of config fields, got {raw!r}")
        return make_config(raw)

    return read_yaml(path, parse, ConfigError, f"config {str(name_or_path)!r}")


def coerce(name: str, value):
    """Value of field `name` converted to its type (from a CLI string, YAML or a sampler)."""
    default = getattr(DEFAULTS, name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(default, tuple):
            items = value.split(",") if isinstance(value, str) else value
            return tuple(int(v) for v in items)
        if isinstance(default, int):
            if float(value) != int(float(value)):
                raise ValueError
            return int(float(value))
        return type(default)(value)
    except (TypeError, ValueError):
        kind = "comma-separated ints" if isinstance(default, tuple) else type(default).__name__
        raise ConfigError(f"{name}={value!r} is not a valid {kind}") from None


def flag_text(value) -> str:
    """A field's value as a flag, a CLI default or an MLflow param writes it: tuples as 2,4,8."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def field_help() -> dict[str, str]:
    """Each field's trailing comment in this file: the one description, shown by --help."""
    src = inspect.getsource(Config)
    return dict(re.findall(r"^\s+(\w+): [^=]+= .*?#\s*(.+)$", src, flags=re.M))


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One --field flag per Config field, with the field's comment and default as help."""
    group = parser.add_argument_group("config (every field of the training config)")
    notes = field_help()
    for name in FIELDS:
        default = getattr(DEFAULTS, name)
        group.add_argument(
            f"--{name}",
            metavar=type(default).__name__.upper(),
            help=f"{notes.get(name, '')} (default: {flag_text(default)})",
        )


def config_from_args(args: argparse.Namespace, base: Config = DEFAULTS) -> Config:
    """base with every config flag that was given on the command line."""
    given = {k: getattr(args, k) for k in FIELDS if getattr(args, k, None) is not None}
    return dataclasses.replace(base, **{k: coerce(k, v) for k, v in given.items()})


def to_flags(config: Config) -> list[str]:
    """The train_codec.py flags that rebuild config (fields that differ from the defaults)."""
    flags = []
    for name in FIELDS:
        value = getattr(config, name)
        if value != getattr(DEFAULTS, name):
            flags += [f"--{name}", flag_text(value)]
    return flags
