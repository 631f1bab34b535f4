"""Trainer throughput (audio seconds per second, training and validation) and data loading's share.

    python benchmarks/trainer_throughput.py [--steps 30] [--threads 2]

For each model size: seconds per training step (forward, loss, backward, Adam), audio seconds per
second, and the share of a step spent fetching its batch; then audio seconds per second of the
trainer's validation pass (train.validate: the codec in eval mode over the validation set, SNR,
mel distance, codebook use). Then the cost of decoding the corpus from scratch vs reading the cache.
All rows come from one run, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import table

from tune_codec.codec.losses import CodecLoss
from tune_codec.codec.model import Codec
from tune_codec.config import DEFAULTS
from tune_codec.data.segments import Segments, load_data
from tune_codec.training.train import validate

SIZES = {  # name -> config changes
    "default (channels 16, 1 residual unit)": {},
    "narrow (channels 8)": {"channels": 8},
    "deeper (3 residual units, dilations 1,2,4)": {"residual_layers": 3},
    "wide (channels 32)": {"channels": 32},
}


def step_times(config, train: Segments, steps: int) -> tuple[Codec, CodecLoss, float, float]:
    """The trained model and its loss; mean seconds per step, and of that the seconds spent fetching the
    batch (read from the cache file, as train() does)."""
    torch.manual_seed(0)
    model, loss_fn = Codec(config), CodecLoss(config)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    fetch = total = 0.0
    for i in range(steps + 3):  # 3 warm-up steps (k-means init, allocator)
        t0 = time.perf_counter()
        idx = torch.randint(len(train), (config.batch_size,))
        x = torch.from_numpy(train.read(idx.numpy()))[:, None]
        t1 = time.perf_counter()
        out = model(x)
        loss = loss_fn(x, out.audio, out.commit_loss)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        opt.step()
        t2 = time.perf_counter()
        if i >= 3:
            fetch, total = fetch + t1 - t0, total + t2 - t0
    return model, loss_fn, total / steps, fetch / steps


def validation_time(model, loss_fn, config, valid_x: torch.Tensor) -> float:
    """Seconds for one validation pass (after one untimed pass)."""
    validate(model, loss_fn, valid_x, config, torch.device("cpu"), autocast=False)
    t0 = time.perf_counter()
    validate(model, loss_fn, valid_x, config, torch.device("cpu"), autocast=False)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30, help="timed steps per row (default: 30)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, batch {DEFAULTS.batch_size} x "
        f"{DEFAULTS.segment_seconds} s at {DEFAULTS.sample_rate} Hz, {args.steps} steps a row\n"
    )

    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        data = load_data(None, DEFAULTS, Path(cache))
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_data(None, DEFAULTS, Path(cache))
        warm = time.perf_counter() - t0
        valid_x = torch.from_numpy(data.valid.read())
        valid_audio = len(valid_x) * DEFAULTS.segment_seconds
        rows = []
        for name, changes in SIZES.items():
            config = replace(DEFAULTS, **changes)
            params = sum(p.numel() for p in Codec(config).parameters())
            model, loss_fn, step, fetch = step_times(config, data.train, args.steps)
            audio = config.batch_size * config.segment_samples / config.sample_rate
            valid_s = validation_time(model, loss_fn, config, valid_x)
            rows.append(
                (
                    name,
                    f"{params / 1e6:.2f}M",
                    f"{step:.3f}",
                    f"{audio / step:.1f}",
                    f"{100 * fetch / step:.2f}%",
                    f"{valid_audio / valid_s:.1f}",
                )
            )
    header = ("model", "params", "train s/step", "train audio s/s", "batch fetch", "validation audio s/s")
    print(table(header, rows))

    corpus_s = (len(data.train) + len(data.valid)) * DEFAULTS.segment_seconds
    print(
        f"\ndemo corpus ({corpus_s:.0f} s of segments): decode + resample + segment {cold:.2f} s, "
        f"from the cache {warm:.3f} s ({cold / warm:.0f}x faster)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
