"""What a codec costs to train on this CPU: parameters, FLOPs per audio second and training throughput.

    python benchmarks/codec_cost.py [--steps 20] [--threads 2] [--configs cpu-freq-8kbps ...]

For the default SEANet codec and each freq size (and each named config given): the parameters, the
GFLOPs one audio second costs through the codec forward and backward (torch.utils.flop_counter: the
matrix products and convolutions; the FFTs, O(n log n), are not counted), and the audio seconds a second
of full training steps (forward, the config's losses, backward, AdamW) on random speech-level batches,
the best of several rounds that take every config in turn (the machine is shared). All rows come from
one run, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import torch
from common import table
from torch.utils.flop_counter import FlopCounterMode

from tune_codec.codec.build import build_codec
from tune_codec.codec.losses import CodecLoss
from tune_codec.codec.model import adamw
from tune_codec.config import DEFAULTS, load_config

MEL = dict(l1_weight=0.1, mel_weight=15.0)  # the loss a freq codec trains on here: the mel is most of it
SIZES = {  # name -> config changes
    "seanet (defaults)": {},
    "seanet, mel 15": MEL,
    "freq width 64, depth 2": dict(model="freq", freq_width=64, freq_depth=2, **MEL),
    "freq width 128, depth 4 (default)": dict(model="freq", **MEL),
    "freq width 192, depth 6": dict(model="freq", freq_width=192, freq_depth=6, **MEL),
    "freq width 256, depth 8": dict(model="freq", freq_width=256, freq_depth=8, **MEL),
}


def flops_per_second(config) -> float:
    """Codec FLOPs (forward and backward) per audio second, on one batch."""
    model = build_codec(config)
    x = torch.randn(config.batch_size, 1, config.segment_samples) * 0.1
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        (out.audio.square().mean() + out.commit_loss).backward()
    return counter.get_total_flops() / (config.batch_size * config.segment_seconds)


class Trainer:
    """A codec, its losses and AdamW on one random speech-level batch, stepped as train() steps."""

    def __init__(self, config):
        torch.manual_seed(0)
        self.config, self.model, self.loss_fn = config, build_codec(config), CodecLoss(config)
        self.opt = adamw(self.model.parameters(), config)
        self.x = torch.randn(config.batch_size, 1, config.segment_samples) * 0.1
        self.steps(3)  # untimed: k-means init, the allocator

    def steps(self, n: int) -> float:
        """Training audio seconds per second over n steps."""
        t0 = time.perf_counter()
        for _ in range(n):
            out = self.model(self.x)
            loss = self.loss_fn(self.x, out.audio, out.commit_loss)
            self.opt.zero_grad(set_to_none=True)
            loss.total.backward()
            self.opt.step()
        return n * self.config.batch_size * self.config.segment_seconds / (time.perf_counter() - t0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=5, help="timed steps per round (default: 5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each config's best is kept (default: 3)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    p.add_argument("--configs", nargs="*", default=[], help="named configs (or YAML files) to add")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {args.threads} CPU threads, batch {DEFAULTS.batch_size} x "
        f"{DEFAULTS.segment_seconds} s at {DEFAULTS.sample_rate} Hz, the best of {args.rounds} rounds of "
        f"{args.steps} steps; load average {os.getloadavg()[0]:.2f} at the start\n"
    )
    configs = {name: replace(DEFAULTS, **changes) for name, changes in SIZES.items()}
    configs.update({name: load_config(name) for name in args.configs})
    # rounds of every config in turn, each config's best round kept: the machine is shared, and a round
    # slowed by other work says nothing about the codec
    trainers = {name: Trainer(config) for name, config in configs.items()}
    speed = {name: 0.0 for name in configs}
    for _ in range(args.rounds):
        for name, trainer in trainers.items():
            speed[name] = max(speed[name], trainer.steps(args.steps))
    rows = []
    for name, config in configs.items():
        params = sum(p.numel() for p in trainers[name].model.parameters())
        flops = flops_per_second(config)
        rows.append(
            (
                name,
                f"{config.bitrate / 1000:g}",
                f"{params / 1e6:.2f}M",
                f"{flops / 1e9:.3f}",
                f"{speed[name]:.1f}",
            )
        )
    print(table(("codec", "kbps", "params", "GFLOP per audio s", "train audio s/s"), rows))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
