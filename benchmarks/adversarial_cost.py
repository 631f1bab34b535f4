"""What each of the field's training terms costs a step: the trainer's own loop (train()) for a fixed number
of steps per recipe, on one corpus, one after another in one run.

    python benchmarks/adversarial_cost.py [--data-dir D] [--steps 20] [--threads 2] [--set FIELD=V ...]

Rows: the CPU demo's losses (L1, RMS, peak, commitment), then each addition on its own: the multi-scale
mel loss, the multi-resolution STFT loss, the balancer, each discriminator at each width, both; seconds
per training step (validation excluded), training audio seconds per second, and the cost against the
first row, with the discriminators' parameter count.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import torch
from common import table

from tune_codec.codec.discriminators import Discriminators
from tune_codec.config import DEFAULTS, coerce
from tune_codec.data.segments import load_data
from tune_codec.training.train import train

GAN = {"adv_weight": 1.0, "feat_weight": 1.0}
RECIPES = {  # name -> config changes
    "L1 + RMS + peak + VQ (cpu-demo)": {},
    "+ mel 1": {"mel_weight": 1.0},
    "+ rec/stft 1": {"stft_weight": 1.0},
    "+ balancer": {"balancer": True},
    "+ msstft, width 8": {**GAN, "discriminators": "msstft", "disc_channels": 8},
    "+ msstft, width 16": {**GAN, "discriminators": "msstft", "disc_channels": 16},
    "+ mpd, width 4": {**GAN, "discriminators": "mpd", "disc_channels": 4},
    "+ mpd, width 8": {**GAN, "discriminators": "mpd", "disc_channels": 8},
    "+ msstft + mpd, width 8": {**GAN, "disc_channels": 8},
    "+ msstft + mpd, width 8, balancer": {**GAN, "disc_channels": 8, "balancer": True},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="corpus (default: the bundled demo corpus)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=V", help="config changes for every row")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    common = {k: coerce(k, v) for k, v in (item.split("=", 1) for item in args.set)}
    base = dataclasses.replace(
        DEFAULTS,
        num_epochs=1,
        max_steps_per_epoch=args.steps,
        perceptual_segments=0,
        valid_max_seconds=5,
        **common,
    )
    with tempfile.TemporaryDirectory() as work:
        data = load_data(args.data_dir, base, Path(work) / "cache")
        print(
            f"torch {torch.__version__}, {args.threads} CPU threads, batch {base.batch_size} x "
            f"{base.segment_seconds} s at {base.sample_rate} Hz, {args.steps} steps a row; {data.summary()}\n"
        )
        rows, first = [], None
        for name, changes in RECIPES.items():
            config = dataclasses.replace(base, **changes)
            metrics = train(config, data, checkpoint_dir=Path(work) / name.replace(" ", "_"), quiet=True)
            seconds = metrics["time/train_s"] / args.steps
            first = first or seconds
            params = sum(p.numel() for p in Discriminators(config).parameters()) if config.adversarial else 0
            rows.append(
                (name, f"{seconds:.3f}", f"{metrics['time/audio_s_per_s']:.1f}", f"{seconds / first:.2f}x",
                 f"{params / 1e6:.2f}M" if params else "-")
            )  # fmt: skip
        print(table(("losses", "s/step", "audio s/s", "cost", "discriminator params"), rows))


if __name__ == "__main__":
    main()
