"""The GPU check: bf16 on and off with the discriminators, peak memory, and trials per GPU.

    python benchmarks/gpu.py [--config speech16k-8kbps] [--steps 50] [--data-dir D] [--device cuda]

Rows 1-2: the trainer's own loop (train(), validation excluded) for --steps steps of --config with bf16
autocast on and off: seconds a step, training audio seconds per second, peak GPU memory. Then trials
sharing one GPU as `--gpus-per-trial 0.5` and `0.25` place them: 2 and 4 train_codec.py processes at once,
each --steps steps, their summed audio seconds per second against one alone. One short run, meant for a
lent GPU machine (about 5 minutes on an H100 with the defaults); `--device cpu` checks it runs anywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from common import ROOT, table

from tune_codec.config import load_config
from tune_codec.data.segments import load_data
from tune_codec.training.train import train


def one_process(config_name: str, steps: int, data_dir: Path | None, device: str, work: Path) -> dict:
    """train_codec.py --steps steps in its own process; its last metrics."""
    ckpt = work / f"run-{time.monotonic_ns()}"
    cmd = [
        sys.executable, str(ROOT / "train_codec.py"), "--config", config_name, "--num_epochs", "1",
        "--max_steps_per_epoch", str(steps), "--valid_max_seconds", "5", "--perceptual_segments", "0",
        "--checkpoint_dir", str(ckpt), "--device", device, "--cache_dir", str(work / "cache"),
        "--tracking_uri", str(work / "mlflow.db"), *(["--data_dir", str(data_dir)] if data_dir else []),
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True)
    return json.loads((ckpt / "metrics.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="speech16k-8kbps")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--data-dir", type=Path, help="corpus (default: the bundled demo corpus)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("gpu.py: no CUDA device here (--device cpu runs the same rows on the CPU)")
    device = torch.device(args.device)
    base = dataclasses.replace(
        load_config(args.config), num_epochs=1, max_steps_per_epoch=args.steps, perceptual_segments=0,
        valid_max_seconds=5,
    )  # fmt: skip
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{name}, torch {torch.__version__}, {args.config}: {base.describe()}, {args.steps} steps a row\n")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = load_data(args.data_dir, base, work / "cache")
        rows = []
        for bf16 in (True, False):
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            m = train(dataclasses.replace(base, bf16=bf16), data, checkpoint_dir=work / f"bf16-{bf16}",
                      device=device, quiet=True)  # fmt: skip
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
            rows.append((f"bf16 {'on' if bf16 else 'off'}", f"{m['time/train_s'] / args.steps:.3f}",
                         f"{m['time/audio_s_per_s']:.1f}", f"{peak:.2f}"))  # fmt: skip
        print(table(("one trial", "s/step", "audio s/s", "peak GiB"), rows), "\n")
        shared = []
        for n in (1, 2, 4):  # n processes on the one device: what --gpus-per-trial 1 / n places together
            t0 = time.monotonic()
            with ThreadPoolExecutor(n) as pool:
                runs = list(
                    pool.map(
                        lambda _: one_process(args.config, args.steps, args.data_dir, args.device, work),
                        range(n),
                    )
                )
            total = sum(r["time/audio_s_per_s"] for r in runs)
            shared.append((n, f"{1 / n:g}", f"{time.monotonic() - t0:.0f}", total))
        print(
            table(
                ("trials", "GPU each", "wall s", "summed audio s/s", "against one"),
                [(*row[:3], f"{row[3]:.1f}", f"{row[3] / shared[0][3]:.2f}x") for row in shared],
            )
        )


if __name__ == "__main__":
    main()
