"""What PESQ and STOI cost in validation, per segment and beside the rest of a validation pass.

    python3 benchmarks/perceptual_cost.py [--data-dir speech/train] [--repeats 5]

Each epoch, validation scores PESQ and STOI on the first `perceptual_segments` validation segments,
heard as one clip (train.validate, metrics.perceptual). For several segment counts this times PESQ and
STOI on the segments of the data (the bundled demo corpus by default) against a decoding 6 dB below
them, the median of --repeats, and sets it beside one validation pass of the default codec without them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from common import table
from pesq import pesq
from pystoi import stoi

from tune_codec.codec.losses import CodecLoss
from tune_codec.codec.model import Codec
from tune_codec.config import DEFAULTS
from tune_codec.data.segments import load_data
from tune_codec.training.train import validate

COUNTS = (4, 16, 64)


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, help="audio to score (default: the bundled demo corpus)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    config = replace(DEFAULTS, perceptual_segments=0)
    with tempfile.TemporaryDirectory() as cache:
        valid_x = torch.from_numpy(load_data(args.data_dir, config, Path(cache)).valid.read())
    torch.manual_seed(0)
    model, loss_fn = Codec(config), CodecLoss(config)
    device = torch.device("cpu")
    validate(model, loss_fn, valid_x, config, device, autocast=False)  # warm-up
    pass_s = median_s(lambda: validate(model, loss_fn, valid_x, config, device, False), args.repeats)
    rate = config.sample_rate
    print(
        f"{len(valid_x)} validation segments of {config.segment_seconds:g} s at {rate} Hz "
        f"({len(valid_x) * config.segment_seconds:.0f} s); a validation pass without PESQ and STOI: "
        f"{pass_s:.2f} s (median of {args.repeats}, {torch.get_num_threads()} threads)\n"
    )
    rng = np.random.default_rng(0)
    rows = []
    for n in (c for c in COUNTS if c <= len(valid_x)):
        x = valid_x[:n].flatten().numpy()
        y = (x + rng.normal(0, x.std() / 2, x.shape)).astype(np.float32)  # 6 dB SNR
        pesq_s = median_s(lambda: pesq(rate, x, y, "wb"), args.repeats)  # noqa: B023
        stoi_s = median_s(lambda: stoi(x, y, rate, extended=False), args.repeats)  # noqa: B023
        both = pesq_s + stoi_s
        rows.append(
            (
                n,
                f"{n * config.segment_seconds:g}",
                f"{pesq_s:.3f}",
                f"{stoi_s:.3f}",
                f"{1000 * both / n:.1f}",
                f"{100 * both / pass_s:.0f}%",
            )
        )
    header = ("segments", "audio s", "PESQ s", "STOI s", "ms per segment", "of a validation pass")
    print(table(header, rows))
    print(f"\nthe default is perceptual_segments {DEFAULTS.perceptual_segments}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
