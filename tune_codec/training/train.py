"""train(config, data, report): the one training loop, called by the CLI and by every search trial.

A run is a TrainState (the codec, its optimiser, the discriminators and balancer when on, the epoch, the
bests and the history) moved forward by step() on each batch and end_epoch() after each pass; last.pt is
TrainState.checkpoint(), and a resumed run is TrainState.resume(last.pt)."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from tune_codec.codec.balancer import Balancer
from tune_codec.codec.build import build_codec
from tune_codec.codec.discriminators import Adversary
from tune_codec.codec.losses import CodecLoss
from tune_codec.codec.model import adamw
from tune_codec.config import Config, make_config
from tune_codec.data.segments import CodecData
from tune_codec.files import atomic_write
from tune_codec.metrics import debug_block
from tune_codec.names import BEST, BEST_METRICS, LAST, SAMPLES, best_key
from tune_codec.training.checkpoint import N_CLIPS, load_state, save
from tune_codec.training.samples import write_samples
from tune_codec.training.schedule import Schedule, at_epoch, fixed_differences, lr_factor, values
from tune_codec.training.validate import validate

# report(metrics, checkpoint_dir): called once per epoch after the checkpoint is written
Report = Callable[[dict, Path], None]


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


@dataclass
class TrainState:
    """What a run carries from one epoch to the next, saved and restored only here."""

    model: nn.Module
    opt: torch.optim.Optimizer
    adversary: Adversary | None  # the discriminators and their optimiser, when an adversarial weight > 0
    balancer: Balancer | None
    epoch: int = 0  # epochs done
    best: dict = field(default_factory=dict)  # metric -> its best value so far
    train_s: float = 0.0  # seconds spent in training steps
    metrics: dict = field(default_factory=dict)  # the last epoch's
    history: list = field(default_factory=list)  # each epoch's loss weights and learning rate

    @classmethod
    def new(cls, config: Config, device: torch.device) -> TrainState:
        model = build_codec(config).to(device)
        return cls(
            model,
            adamw(model.parameters(), config),
            Adversary(config, device) if config.adversarial else None,
            Balancer() if config.balancer else None,
        )

    def checkpoint(self, config: Config) -> dict:
        """last.pt's contents; `config` is the epoch's (a schedule's weights included)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": self.epoch,
            "best": self.best,
            "train_s": self.train_s,
            "config": dataclasses.asdict(config),
            "metrics": self.metrics,
            "history": self.history,
            **({"adversary": self.adversary.state_dict()} if self.adversary else {}),
            **({"balancer": self.balancer.state_dict()} if self.balancer else {}),
        }

    def resume(self, saved: dict, config: Config, source: Path) -> None:
        """Continue from last.pt's contents. Only the loss weights and the learning rate may differ from
        config: they are config's from here on (Population Based Training hands a trial another trial's
        checkpoint with new weights)."""
        was = make_config(saved["config"])
        differ = fixed_differences(config, was)
        if differ:
            raise ValueError(
                f"{source} was trained with other {', '.join(differ)}; only the "
                "loss weights and the learning rate may change when a run is resumed"
            )
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["optimizer"])
        for part, key in ((self.adversary, "adversary"), (self.balancer, "balancer")):
            if part is not None and key in saved:
                part.load_state_dict(saved[key])
        torch.set_rng_state(saved["rng"])
        self.epoch, self.best, self.train_s = saved["epoch"], saved["best"], saved["train_s"]
        self.metrics = saved["metrics"]  # what a run that has no epoch left returns
        self.history = saved.get("history") or [values(was)] * self.epoch  # runs saved before history


@dataclass(frozen=True)
class Run:
    """What stays the same through a run: its config, losses, validation audio, device and folder."""

    config: Config
    loss_fn: CodecLoss
    valid_x: torch.Tensor  # (N, T), the whole validation set
    device: torch.device
    autocast: bool  # bf16, on CUDA only
    checkpoint_dir: Path


def train(
    config: Config,
    data: CodecData,
    report: Report | None = None,
    *,
    checkpoint_dir: Path,
    resume_from: Path | None = None,
    device: torch.device | None = None,
    quiet: bool = False,
    schedule: Schedule = (),
) -> dict:
    """Train for config.num_epochs (continuing resume_from's last.pt if given); returns the last metrics.

    The loss weights and the learning rate are config's, changed from an epoch on by `schedule`. Each
    epoch's values are kept in last.pt as its `history`."""
    if data.sample_rate != config.sample_rate or data.train.length != config.segment_samples:
        raise ValueError(
            f"data has {data.train.length}-sample segments at {data.sample_rate} Hz; config wants "
            f"{config.segment_samples} at {config.sample_rate} Hz"
        )
    device = device or pick_device()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    state = TrainState.new(config, device)
    if resume_from is not None:
        state.resume(load_state(resume_from), config, resume_from)
    # training batches are read from the cache per step, the validation set once as one tensor
    valid_x = torch.from_numpy(data.valid.read())
    run = Run(
        config,
        CodecLoss(config).to(device),
        valid_x,
        device,
        config.bf16 and device.type == "cuda",
        checkpoint_dir,
    )

    steps = math.ceil(len(data.train) / config.batch_size)  # a full pass unless max_steps_per_epoch caps it
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    for epoch in range(state.epoch, config.num_epochs):
        now = at_epoch(config, schedule, epoch + 1)
        run.loss_fn.reweigh(now)
        state.history.append(values(now))
        state.model.train()
        # shuffling and crops depend on (seed, epoch) only, so a resumed run sees the same batches
        rng = np.random.default_rng((config.seed, epoch))
        order = torch.randperm(
            len(data.train), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        ).numpy()
        adversarial = state.adversary is not None and epoch + 1 >= config.adv_start_epoch
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.num_epochs}", disable=quiet, leave=False)
        for i in bar:
            index = order[i * config.batch_size : (i + 1) * config.batch_size]
            half = data.train.length // 2
            shift = rng.integers(-half, half + 1, len(index)) if config.random_crop else None
            x = with_gain(torch.from_numpy(data.train.read(index, shift)).to(device)[:, None], config.gain_db)
            lr = now.learning_rate * lr_factor(config, epoch * steps + i, config.num_epochs * steps)
            logged = step(state, run, x, lr, adversarial, where=(epoch + 1, i + 1))
            for k, v in logged.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{logged['loss/total']:.4f}")
        epoch_s = time.perf_counter() - t0
        state.train_s += epoch_s
        state.epoch = epoch + 1
        trained = {
            **{k: v / steps for k, v in sums.items()},
            "time/audio_s_per_s": steps * config.batch_size * config.segment_seconds / epoch_s,
            "opt/lr": lr,  # at the epoch's last step
        }
        metrics = end_epoch(state, run, now, trained)
        # tell the console and the caller (MLflow for a single run, Tune for a trial)
        if not quiet:
            print(f"{format_epoch(metrics)}\n{debug_block(metrics)}")
        if report is not None:
            report(metrics, checkpoint_dir)
    return state.metrics


def step(state: TrainState, run: Run, x: torch.Tensor, lr: float, adversarial: bool, where: tuple) -> dict:
    """One optimisation step on the batch x (B, 1, T): the discriminators', then the codec's on the
    weighted losses. Returns what it logs (loss/*, disc/*, balancer/*); raises on a non-finite loss, naming
    `where` (epoch, step)."""
    loss_fn, autocast = run.loss_fn, run.autocast
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
        out = state.model(x)
    y = out.audio.float()
    logged = state.adversary.update(x, y, lr, autocast) if adversarial else {}
    loss = loss_fn(x, y, out.commit_loss, state.adversary.losses(x, y, autocast) if adversarial else None)
    if not torch.isfinite(loss.total):
        terms = ", ".join(f"{k}={v.item():.3g}" for k, v in loss.terms.items())
        raise FloatingPointError(f"non-finite loss at epoch {where[0]} step {where[1]}: {terms}")
    state.opt.zero_grad(set_to_none=True)
    if state.balancer is None:
        loss.total.backward()
    else:  # every trained term acting through the output shares one gradient norm; commitment apart
        balanced = {k: loss.terms[k] for k in loss_fn.trained(loss.terms) if k != "vq/commit"}
        commit = loss_fn.weights["vq/commit"] * loss.terms["vq/commit"]
        norms = state.balancer.backward(balanced, loss_fn.weights, y, commit)
        logged.update({f"balancer/{k}": v for k, v in norms.items()})
    if run.config.grad_clip:
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), run.config.grad_clip)
    for group in state.opt.param_groups:
        group["lr"] = lr
    state.opt.step()
    losses = {"loss/total": loss.total, **{f"loss/{k}": v for k, v in loss.terms.items()}}
    return {k: v.item() for k, v in losses.items()} | {k: float(v) for k, v in logged.items()}


def end_epoch(state: TrainState, run: Run, now: Config, trained: dict) -> dict:
    """Validate, then write last.pt (and best.pt at the best epoch by config.best_metric), the clips and
    metrics.json; returns the epoch's metrics: `trained` (the epoch's mean losses, speed, learning rate)
    and the validation's. `now` is the epoch's config (a schedule's weights). An epoch without the metric
    (a PESQ that found no speech) is not a best one."""
    config, folder = run.config, run.checkpoint_dir
    val, clips_out = validate(state.model, run.loss_fn, run.valid_x, config, run.device, run.autocast)
    state.metrics = {
        "epoch": state.epoch,
        **trained,
        **val,
        "time/train_s": state.train_s,
        **{f"schedule/{k}": v for k, v in state.history[-1].items()},
        "codec/kbps": config.bitrate / 1000,
    }
    improved = val.get(config.best_metric, -math.inf) > state.best.get(config.best_metric, -math.inf)
    state.best.update({k: max(state.best.get(k, -math.inf), val[k]) for k in BEST_METRICS if k in val})
    state.metrics.update({best_key(k): v for k, v in state.best.items()})
    saved = state.checkpoint(now)
    if improved or not (folder / BEST).exists():
        save({k: saved[k] for k in ("model", "config", "metrics")}, folder / BEST)
    save(saved, folder / LAST)
    title = f"epoch {state.epoch}: range ratio {val['val/range_ratio']:.2f}, SNR {val['val/snr_db']:.2f} dB"
    write_samples(folder / SAMPLES, run.valid_x[:N_CLIPS].numpy(), clips_out, config.sample_rate, title)
    atomic_write(folder / "metrics.json", lambda tmp: tmp.write_text(json.dumps(state.metrics, indent=1)))
    return state.metrics


def with_gain(x: torch.Tensor, db: float) -> torch.Tensor:
    """(B, 1, T) each scaled by a random gain, uniform in +-db dB, no more than keeps its peak below 1."""
    if not db:
        return x
    gain = 10 ** ((torch.rand(len(x), 1, 1, device=x.device) * 2 - 1) * db / 20)
    ceiling = 0.99 / x.abs().amax(-1, keepdim=True).clamp_min(1e-8)
    return x * torch.minimum(gain, ceiling)


def format_epoch(m: dict) -> str:
    return (
        f"epoch {m['epoch']}: loss {m['loss/total']:.4f} | range ratio {m['val/range_ratio']:.3f} "
        f"RMS ratio {m['val/rms_ratio']:.3f} SNR {m['val/snr_db']:.2f} dB SI-SDR {m['val/si_sdr_db']:.2f} dB "
        + (f" PESQ {m['val/pesq']:.2f}" if "val/pesq" in m else "")
        + (f" STOI {m['val/stoi']:.3f}" if "val/stoi" in m else "")
        + f" | {m['time/audio_s_per_s']:.1f} audio s/s"
    )
