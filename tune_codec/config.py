"""Config: every default of a codec training run lives here and only here."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from tune_codec.cli import flag
from tune_codec.errors import ConfigError
from tune_codec.files import read_yaml
from tune_codec.names import BEST_METRICS, PERCEPTUAL

# Loss term name -> the Config field that weights it (the one place the names meet).
LOSS_WEIGHTS = {
    "rec/l1": "l1_weight",
    "rec/mel": "mel_weight",
    "amp/rms": "rms_weight",
    "amp/peak": "peak_weight",
    "vq/commit": "commit_weight",
    "rec/stft": "stft_weight",
    "rec/sisdr": "sisdr_weight",
    "adv/gen": "adv_weight",
    "adv/feat": "feat_weight",
}
# Terms whose weight above 0 builds the discriminators: they are fixed for a run (a schedule or PBT
# cannot add a network to a model being trained)
ADVERSARIAL = ("adv/gen", "adv/feat")
DISCRIMINATORS = ("msstft", "mpd")  # EnCodec's multi-scale STFT, HiFi-GAN's multi-period
ADV_LOSSES = ("hinge", "lsq")
LR_DECAYS = ("none", "exponential", "cosine")
# The built-in models -> their size fields. A config naming one model may not set another's away from its
# default (it would do nothing); a user's codec (package.module:factory) may read any field.
MODEL_SIZES = {"seanet": ("channels", "residual_layers"), "freq": ("freq_width", "freq_depth", "n_fft")}
FACTORY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")  # package.module:factory


def doc(default, help: str):
    """A field's default with its one description (unit, why), which --help shows."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Config:
    # data
    sample_rate: int = doc(16000, "Hz; audio is resampled to this")
    segment_seconds: float = doc(0.5, "length of one training example")
    random_crop: bool = doc(
        False, "new cuts each epoch: every segment moved up to half its length in its file"
    )
    gain_db: float = doc(
        0.0, "random gain per training segment, in +-gain_db dB (peak kept below 1); 0 = off"
    )
    valid_fraction: float = doc(0.1, "share of files held out for validation (split by file)")
    valid_max_seconds: float = doc(
        600.0, "cap on the validation audio (whole files, fixed order); 0 = no cap"
    )
    perceptual_segments: int = doc(
        16, "validation segments PESQ and STOI score each epoch, as one clip; 0 = off"
    )
    best_metric: str = doc(
        "val/snr_db", "best.pt keeps the epoch where this is highest (one of BEST_METRICS)"
    )
    silence_db: float = doc(-45.0, "segments with RMS below this (dBFS) are dropped")
    # model: which codec, and its size (a size field of a model not chosen must keep its default)
    model: str = doc(
        "seanet",
        "seanet (convolutions at the sample rate), freq (STFT frames, ConvNeXt at the frame rate, an "
        "iSTFT head), or package.module:factory (your own codec, README 'Your own codec')",
    )
    channels: int = doc(16, "seanet: width of the first conv; doubles at each stride")
    strides: tuple[int, ...] = doc(
        (2, 4, 8), "seanet: downsampling per block; every model's hop (samples per frame) = product"
    )
    residual_layers: int = doc(1, "seanet: residual units per block, dilations 1, 2, 4 ... (EnCodec's)")
    freq_width: int = doc(128, "freq: channels of the ConvNeXt blocks")
    freq_depth: int = doc(4, "freq: ConvNeXt blocks in the encoder, and as many in the decoder")
    n_fft: int = doc(256, "freq: STFT size, a multiple of the hop and at least 2 hops (Vocos: 4)")
    latent_dim: int = doc(64, "dimension of each latent frame (and of each codeword)")
    # residual vector quantizer
    n_codebooks: int = doc(4, "residual stages")
    codebook_size: int = doc(256, "codewords per stage; bits per code = log2(size), rounded up")
    ema_decay: float = doc(0.9, "EMA rate of the codebook updates; short runs need it fast")
    dead_code_threshold: float = doc(1.0, "codes with EMA usage (vectors per batch) below this are restarted")
    kmeans_iters: int = doc(10, "k-means steps for the codebook init on the first batch")
    quantizer_dropout: float = doc(
        0.0, "share of training segments decoded from a random 1..n_codebooks stages"
    )
    # loss weights (0 = computed and logged, not trained on)
    l1_weight: float = doc(1.0, "time-domain L1")
    mel_weight: float = doc(0.0, 'multi-scale log-mel distance ("perceptual")')
    rms_weight: float = doc(10.0, "(RMS(out) - RMS(in))^2 per segment")
    peak_weight: float = doc(5.0, "(max|out| - max|in|)^2 per segment")
    commit_weight: float = doc(1.0, "VQ commitment, encoder pulled to its codes")
    stft_weight: float = doc(0.0, "multi-resolution STFT: spectral convergence + log-magnitude L1")
    sisdr_weight: float = doc(
        0.0, "SI-SDR with the sign kept: 10 log10((1 - r) / (1 + r)), r the correlation; phase and polarity"
    )
    adv_weight: float = doc(0.0, "adv/gen, the decoder fooling the discriminators; > 0 builds them")
    feat_weight: float = doc(0.0, "adv/feat, L1 of discriminator features, input vs output; > 0 builds them")
    balancer: bool = doc(
        False, "weights become shares of one gradient norm at the output (EnCodec's balancer)"
    )
    # discriminators (built when adv_weight or feat_weight > 0)
    discriminators: str = doc("msstft,mpd", "msstft (multi-scale STFT), mpd (multi-period), or both")
    disc_channels: int = doc(16, "width of the discriminators' first layers")
    adv_loss: str = doc("hinge", "hinge or lsq (least squares)")
    adv_start_epoch: int = doc(1, "first epoch that trains the discriminators and uses their losses")
    # optimisation
    batch_size: int = doc(16, "segments per step")
    num_epochs: int = doc(100, "passes over the training segments")
    learning_rate: float = doc(1e-3, "AdamW, codec and discriminators")
    adam_beta1: float = doc(0.9, "AdamW's first-moment decay (EnCodec 0.5, DAC 0.8)")
    adam_beta2: float = doc(0.999, "AdamW's second-moment decay (EnCodec 0.9, DAC 0.99)")
    weight_decay: float = doc(0.0, "AdamW's decoupled weight decay")
    lr_warmup_steps: int = doc(0, "steps of linear warm-up from 0 to learning_rate")
    lr_decay: str = doc("none", "none, exponential or cosine, over all num_epochs' steps")
    lr_final: float = doc(0.1, "learning rate at the last step, a share of learning_rate (with lr_decay)")
    grad_clip: float = doc(1.0, "max gradient norm; 0 = off")
    max_steps_per_epoch: int = doc(0, "0 = a full pass; >0 caps an epoch (quick trials)")
    bf16: bool = doc(True, "bf16 autocast on CUDA (ignored on CPU)")
    seed: int = doc(0, "model init, shuffling, codebook restarts")

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
        (c.freq_width >= 1, "freq_width", ">= 1"),
        (c.freq_depth >= 0, "freq_depth", ">= 0"),
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
    if not problems:  # the hop is known
        problems += model_problems(c)
    if c.best_metric not in BEST_METRICS:
        problems.append(f"best_metric={c.best_metric!r} must be one of {', '.join(BEST_METRICS)}")
    elif c.best_metric in PERCEPTUAL and not c.perceptual_segments:
        problems.append(f"best_metric={c.best_metric} is scored on perceptual_segments, which is 0")
    problems += [
        f"{w}={getattr(c, w)!r} must be >= 0" for w in LOSS_WEIGHTS.values() if not getattr(c, w) >= 0
    ]
    return problems


def model_problems(c: Config) -> list[str]:
    """What is wrong with the model a config names and its size fields."""
    if c.model not in MODEL_SIZES:
        try:
            codec_factory(c.model)
        except ConfigError as e:
            return [str(e)]
        return []
    problems = [
        f"{name}={getattr(c, name)!r} is a size field of model {other}, not of {c.model} (whose size "
        f"fields are {', '.join(MODEL_SIZES[c.model])}); leave it out"
        for other, names in MODEL_SIZES.items()
        if other != c.model
        for name in names
        if getattr(c, name) != FIELDS[name].default
    ]
    if c.model == "freq" and (c.n_fft % c.hop or c.n_fft < 2 * c.hop):
        problems.append(
            f"n_fft={c.n_fft} must be a multiple of the hop ({c.hop}, the product of strides) and at least "
            f"2 hops: {', '.join(str(k * c.hop) for k in (2, 3, 4))}, ..."
        )
    return problems


def size_owner(name: str) -> str | None:
    """The built-in model whose size field `name` is, if any."""
    return next((model for model, names in MODEL_SIZES.items() if name in names), None)


def for_model(params: dict) -> dict:
    """A search's proposal with the size fields of the built-in models it does not choose at their
    defaults: a search of `model` proposes every model's size fields in each trial, and only the chosen
    model's apply (a user's codec keeps them all: it may read any field)."""
    model = params.get("model")
    if model not in MODEL_SIZES:
        return params
    others = [name for other, names in MODEL_SIZES.items() if other != model for name in names]
    return {**params, **{name: FIELDS[name].default for name in others}}


def codec_factory(model: str):
    """The callable a `package.module:factory` model names (imported), or a ConfigError saying why not."""
    if not FACTORY.fullmatch(model):
        raise ConfigError(f"model={model!r} must be {', '.join(MODEL_SIZES)}, or package.module:factory")
    module, name = model.split(":")
    try:
        found = getattr(importlib.import_module(module), name, None)
    except ImportError as e:
        raise ConfigError(f"model={model!r}: cannot import {module} ({e})") from None
    if not callable(found):
        raise ConfigError(f"model={model!r}: {module} has no callable {name}")
    return found


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


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One --field flag per Config field, with the field's comment and default as help."""
    group = parser.add_argument_group("config (every field of the training config)")
    for name in FIELDS:
        default = getattr(DEFAULTS, name)
        group.add_argument(
            *flag(f"--{name}"),
            metavar=type(default).__name__.upper(),
            help=f"{FIELDS[name].metadata['help']} (default: {flag_text(default)})",
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
