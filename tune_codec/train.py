"""train(config, data, report): the one training loop, called by the CLI and by every search trial."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from tune_codec.checkpoint import BEST, LAST, N_CLIPS, SAMPLES, load_state, save
from tune_codec.config import BEST_METRICS, Config, best_key, make_config
from tune_codec.data import CodecData
from tune_codec.losses import CodecLoss
from tune_codec.metrics import codebook_metrics, debug_block, perceptual, signal_metrics
from tune_codec.model import Codec
from tune_codec.samples import write_samples
from tune_codec.schedule import Schedule, at_epoch, fixed_differences, values

# report(metrics, checkpoint_dir): called once per epoch after the checkpoint is written
Report = Callable[[dict, Path], None]


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


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

    The loss weights and the learning rate are config's, changed from an epoch on by `schedule`; a resumed
    run takes them from config too, not from last.pt (Population Based Training hands a trial another
    trial's checkpoint with new weights). Each epoch's values are kept in last.pt as its `history`."""
    if data.sample_rate != config.sample_rate or data.train.length != config.segment_samples:
        raise ValueError(
            f"data has {data.train.length}-sample segments at {data.sample_rate} Hz; config wants "
            f"{config.segment_samples} at {config.sample_rate} Hz"
        )
    # model, losses and optimiser; a resumed run takes their state, its epoch and its bests from last.pt
    device = device or pick_device()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = Codec(config).to(device)
    loss_fn = CodecLoss(config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    start, best, train_s, metrics, history = 0, {}, 0.0, {}, []  # best: metric -> its best value so far
    if resume_from is not None:
        state = load_state(resume_from)
        differ = fixed_differences(config, make_config(state["config"]))
        if differ:
            raise ValueError(
                f"{resume_from} was trained with other {', '.join(differ)}; only the "
                "loss weights and the learning rate may change when a run is resumed"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        start, best, train_s = state["epoch"], state["best"], state["train_s"]
        metrics = state["metrics"]  # what a run that has no epoch left returns
        history = state.get("history") or [values(make_config(state["config"]))] * start  # older runs

    # training batches are read from the cache per step, the validation set once as one tensor; an epoch
    # is a full pass unless max_steps_per_epoch caps it
    valid_x = torch.from_numpy(data.valid.read())
    steps = math.ceil(len(data.train) / config.batch_size)
    if config.max_steps_per_epoch:
        steps = min(steps, config.max_steps_per_epoch)
    autocast = config.bf16 and device.type == "cuda"
    for epoch in range(start, config.num_epochs):
        now = at_epoch(config, schedule, epoch + 1)
        loss_fn.reweigh(now)
        for group in opt.param_groups:
            group["lr"] = now.learning_rate
        history.append(values(now))
        model.train()
        # shuffling depends on (seed, epoch) only, so a resumed run sees the same batches
        order = torch.randperm(
            len(data.train), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        ).numpy()
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.num_epochs}", disable=quiet, leave=False)
        for step in bar:  # one step: forward, the weighted losses, a clipped gradient step
            x = data.train.read(order[step * config.batch_size : (step + 1) * config.batch_size])
            x = torch.from_numpy(x).to(device)[:, None]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(x)
            loss = loss_fn(x, out.audio.float(), out.commit_loss)
            if not torch.isfinite(loss.total):
                terms = ", ".join(f"{k}={v.item():.3g}" for k, v in loss.terms.items())
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step + 1}: {terms}")
            opt.zero_grad(set_to_none=True)
            loss.total.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            for k, v in {"total": loss.total, **loss.terms}.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            bar.set_postfix(loss=f"{loss.total.item():.4f}")
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s

        # validate, then write last.pt (and best.pt at the best epoch by config.best_metric), the clips, the
        # metrics; an epoch without the metric (a PESQ that found no speech) is not a best one
        val, clips_out = validate(model, loss_fn, valid_x, config, device, autocast)
        metrics = {
            "epoch": epoch + 1,
            **{f"loss/{k}": v / steps for k, v in sums.items()},
            **val,
            "time/train_s": train_s,
            "time/audio_s_per_s": steps * config.batch_size * config.segment_seconds / epoch_s,
            **{f"schedule/{k}": v for k, v in history[-1].items()},
            "codec/kbps": config.bitrate / 1000,
        }
        improved = val.get(config.best_metric, -math.inf) > best.get(config.best_metric, -math.inf)
        best.update({k: max(best.get(k, -math.inf), val[k]) for k in BEST_METRICS if k in val})
        metrics.update({best_key(k): v for k, v in best.items()})
        state = {
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "rng": torch.get_rng_state(),
            "epoch": epoch + 1,
            "best": best,
            "train_s": train_s,
            "config": dataclasses.asdict(now),
            "metrics": metrics,
            "history": history,
        }
        if improved or not (checkpoint_dir / BEST).exists():
            save({k: state[k] for k in ("model", "config", "metrics")}, checkpoint_dir / BEST)
        save(state, checkpoint_dir / LAST)
        title = f"epoch {epoch + 1}: range ratio {val['val/range_ratio']:.2f}, SNR {val['val/snr_db']:.2f} dB"
        clips_in = valid_x[:N_CLIPS].numpy()
        write_samples(checkpoint_dir / SAMPLES, clips_in, clips_out, config.sample_rate, title)
        (checkpoint_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
        # tell the console and the caller (MLflow for a single run, Tune for a trial)
        if not quiet:
            print(f"{format_epoch(metrics)}\n{debug_block(metrics)}")
        if report is not None:
            report(metrics, checkpoint_dir)
    return metrics


@torch.no_grad()
def validate(model, loss_fn, valid_x, config, device, autocast) -> tuple[dict, np.ndarray]:
    """Metrics over the whole validation set, and the first clips' outputs as numpy."""
    model.eval()
    outs, codes = [], []
    for i in range(0, len(valid_x), 2 * config.batch_size):
        x = valid_x[i : i + 2 * config.batch_size].to(device)[:, None]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        outs.append(out.audio.float()[:, 0].cpu())
        codes.append(out.codes.cpu())
    y, codes = torch.cat(outs), torch.cat(codes)
    mel = sum(
        loss_fn.mel(y[i : i + 64, None].to(device), valid_x[i : i + 64, None].to(device)).item()
        * len(y[i : i + 64])
        for i in range(0, len(y), 64)
    ) / len(y)
    metrics = {
        **signal_metrics(valid_x, y),
        "val/mel_distance": mel,
        **codebook_metrics(codes, config.codebook_size),
    }
    if config.perceptual_segments:  # the first segments, end to end: one clip, the same every epoch
        n = config.perceptual_segments
        heard = perceptual(valid_x[:n].flatten().numpy(), y[:n].flatten().numpy(), config.sample_rate)
        # a PESQ that found no speech is left out, not reported as a non-finite metric (a fault)
        metrics.update({f"val/{k}": v for k, v in heard.items() if math.isfinite(v)})
    return metrics, y[:N_CLIPS].numpy()


def format_epoch(m: dict) -> str:
    return (
        f"epoch {m['epoch']}: loss {m['loss/total']:.4f} | range ratio {m['val/range_ratio']:.3f} "
        f"RMS ratio {m['val/rms_ratio']:.3f} SNR {m['val/snr_db']:.2f} dB SI-SDR {m['val/si_sdr_db']:.2f} dB "
        + (f" PESQ {m['val/pesq']:.2f}" if "val/pesq" in m else "")
        + (f" STOI {m['val/stoi']:.3f}" if "val/stoi" in m else "")
        + f" | {m['time/audio_s_per_s']:.1f} audio s/s"
    )
