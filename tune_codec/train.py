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

from tune_codec.balancer import Balancer
from tune_codec.checkpoint import BEST, LAST, N_CLIPS, SAMPLES, load_state, save
from tune_codec.config import BEST_METRICS, Config, at_codebooks, best_key, make_config
from tune_codec.data import CodecData
from tune_codec.discriminators import Adversary
from tune_codec.losses import CodecLoss
from tune_codec.metrics import codebook_metrics, debug_block, perceptual, signal_metrics
from tune_codec.model import Codec, adamw
from tune_codec.samples import write_samples
from tune_codec.schedule import Schedule, at_epoch, fixed_differences, lr_factor, values

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
    # model, losses and optimisers (the discriminators' too, when an adversarial weight is above 0); a
    # resumed run takes their state, its epoch and its bests from last.pt
    device = device or pick_device()
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = Codec(config).to(device)
    loss_fn = CodecLoss(config).to(device)
    opt = adamw(model.parameters(), config)
    adversary = Adversary(config, device) if config.adversarial else None
    balancer = Balancer() if config.balancer else None
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
        for part, key in ((adversary, "adversary"), (balancer, "balancer")):
            if part is not None and key in state:
                part.load_state_dict(state[key])
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
        history.append(values(now))
        model.train()
        # shuffling and crops depend on (seed, epoch) only, so a resumed run sees the same batches
        rng = np.random.default_rng((config.seed, epoch))
        order = torch.randperm(
            len(data.train), generator=torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        ).numpy()
        adversarial = adversary is not None and epoch + 1 >= config.adv_start_epoch
        sums: dict[str, float] = {}
        t0 = time.perf_counter()
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.num_epochs}", disable=quiet, leave=False)
        for step in bar:  # one step: the discriminators', then the codec's on the weighted losses
            index = order[step * config.batch_size : (step + 1) * config.batch_size]
            half = data.train.length // 2
            shift = rng.integers(-half, half + 1, len(index)) if config.random_crop else None
            x = data.train.read(index, shift)
            x = with_gain(torch.from_numpy(x).to(device)[:, None], config.gain_db)  # (B, 1, T)
            lr = now.learning_rate * lr_factor(config, epoch * steps + step, config.num_epochs * steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(x)
            y = out.audio.float()
            logged = adversary.update(x, y, lr, autocast) if adversarial else {}
            loss = loss_fn(x, y, out.commit_loss, adversary.losses(x, y, autocast) if adversarial else None)
            if not torch.isfinite(loss.total):
                terms = ", ".join(f"{k}={v.item():.3g}" for k, v in loss.terms.items())
                raise FloatingPointError(f"non-finite loss at epoch {epoch + 1} step {step + 1}: {terms}")
            opt.zero_grad(set_to_none=True)
            if balancer is None:
                loss.total.backward()
            else:  # every trained term acting through the output shares one gradient norm; commitment apart
                balanced = {k: loss.terms[k] for k in loss_fn.trained(loss.terms) if k != "vq/commit"}
                commit = loss_fn.weights["vq/commit"] * loss.terms["vq/commit"]
                norms = balancer.backward(balanced, loss_fn.weights, y, commit)
                logged.update({f"balancer/{k}": v for k, v in norms.items()})
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            for k, v in {"loss/total": loss.total, **{f"loss/{k}": v for k, v in loss.terms.items()}}.items():
                sums[k] = sums.get(k, 0.0) + v.item()
            for k, v in logged.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            bar.set_postfix(loss=f"{loss.total.item():.4f}")
        epoch_s = time.perf_counter() - t0
        train_s += epoch_s

        # validate, then write last.pt (and best.pt at the best epoch by config.best_metric), the clips, the
        # metrics; an epoch without the metric (a PESQ that found no speech) is not a best one
        val, clips_out = validate(model, loss_fn, valid_x, config, device, autocast)
        metrics = {
            "epoch": epoch + 1,
            **{k: v / steps for k, v in sums.items()},
            **val,
            "time/train_s": train_s,
            "time/audio_s_per_s": steps * config.batch_size * config.segment_seconds / epoch_s,
            "opt/lr": lr,  # at the epoch's last step
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
            **({"adversary": adversary.state_dict()} if adversary else {}),
            **({"balancer": balancer.state_dict()} if balancer else {}),
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


def with_gain(x: torch.Tensor, db: float) -> torch.Tensor:
    """(B, 1, T) each scaled by a random gain, uniform in +-db dB, no more than keeps its peak below 1."""
    if not db:
        return x
    gain = 10 ** ((torch.rand(len(x), 1, 1, device=x.device) * 2 - 1) * db / 20)
    ceiling = 0.99 / x.abs().amax(-1, keepdim=True).clamp_min(1e-8)
    return x * torch.minimum(gain, ceiling)


@torch.no_grad()
def validate(model, loss_fn, valid_x, config, device, autocast) -> tuple[dict, np.ndarray]:
    """Metrics over the whole validation set, and the first clips' outputs as numpy. A codec trained with
    quantizer dropout is also scored from each fewer number of codebooks (val/codebooks_K/...)."""
    model.eval()

    def decoded(n_codebooks=None) -> tuple[torch.Tensor, torch.Tensor]:
        outs, codes = [], []
        for i in range(0, len(valid_x), 2 * config.batch_size):
            x = valid_x[i : i + 2 * config.batch_size].to(device)[:, None]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(x, n_codebooks)
            outs.append(out.audio.float()[:, 0].cpu())
            codes.append(out.codes.cpu())
        return torch.cat(outs), torch.cat(codes)

    def heard(y: torch.Tensor) -> dict:  # the first segments, end to end: one clip, the same every epoch
        if not config.perceptual_segments:
            return {}
        n = config.perceptual_segments
        scores = perceptual(valid_x[:n].flatten().numpy(), y[:n].flatten().numpy(), config.sample_rate)
        # a PESQ that found no speech is left out, not reported as a non-finite metric (a fault)
        return {f"val/{k}": v for k, v in scores.items() if math.isfinite(v)}

    y, codes = decoded()
    mel = sum(
        loss_fn.mel(y[i : i + 64, None].to(device), valid_x[i : i + 64, None].to(device)).item()
        * len(y[i : i + 64])
        for i in range(0, len(y), 64)
    ) / len(y)
    metrics = {
        **signal_metrics(valid_x, y),
        "val/mel_distance": mel,
        **codebook_metrics(codes, config.codebook_size),
        **heard(y),
    }
    for n in range(1, config.n_codebooks) if config.quantizer_dropout else ():
        fewer, _ = decoded(n)
        scores = {k: v for k, v in signal_metrics(valid_x, fewer).items() if k in BEST_METRICS}
        metrics.update({at_codebooks(k, n): v for k, v in {**scores, **heard(fewer)}.items()})
    return metrics, y[:N_CLIPS].numpy()


def format_epoch(m: dict) -> str:
    return (
        f"epoch {m['epoch']}: loss {m['loss/total']:.4f} | range ratio {m['val/range_ratio']:.3f} "
        f"RMS ratio {m['val/rms_ratio']:.3f} SNR {m['val/snr_db']:.2f} dB SI-SDR {m['val/si_sdr_db']:.2f} dB "
        + (f" PESQ {m['val/pesq']:.2f}" if "val/pesq" in m else "")
        + (f" STOI {m['val/stoi']:.3f}" if "val/stoi" in m else "")
        + f" | {m['time/audio_s_per_s']:.1f} audio s/s"
    )
