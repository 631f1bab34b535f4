"""Why the codec's conv biases start at zero: with PyTorch's default bias init, amplitude losses
amplify an input-independent pattern instead of the speech.

    python benchmarks/amplitude_trap.py [--steps 300]

Trains the default codec on the demo corpus for a few hundred steps in four variants (bias init x
loss) and prints validation SNR, SI-SDR, range ratio and the share of the output that is the same
for every input (the energy of the mean output over the mean energy; 1.0 = ignores its input).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch
from torch import nn

from tune_codec.codec.losses import CodecLoss
from tune_codec.codec.model import Codec
from tune_codec.config import DEFAULTS, make_config
from tune_codec.data.segments import load_data
from tune_codec.metrics import signal_metrics
from tune_codec.names import LAST
from tune_codec.training.checkpoint import save
from tune_codec.training.train import TrainState


def default_biases(model: nn.Module) -> None:
    """PyTorch's own init for conv biases: uniform(+-1/sqrt(fan_in))."""
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.ConvTranspose1d):
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
            nn.init.uniform_(m.bias, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))


def start_with_default_biases(config, folder: Path) -> Path:
    """folder/last.pt at epoch 0 holding a codec with PyTorch's default biases: train(resume_from=folder)
    then falls into the trap with the trainer itself (the doctor's fixed-pattern case)."""
    torch.manual_seed(config.seed)
    state = TrainState.new(config, torch.device("cpu"))
    default_biases(state.model)
    Path(folder).mkdir(parents=True, exist_ok=True)
    save(state.checkpoint(config), Path(folder) / LAST)
    return Path(folder)


def run(config, data, steps: int, biases: str) -> dict:
    torch.manual_seed(0)
    model, loss_fn = Codec(config), CodecLoss(config)
    if biases == "PyTorch default":
        default_biases(model)
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    train_x, valid_x = torch.from_numpy(data.train.read()), torch.from_numpy(data.valid.read())
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = train_x[torch.randint(len(train_x), (config.batch_size,), generator=g)][:, None]
        out = model(x)
        loss = loss_fn(x, out.audio, out.commit_loss)
        opt.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
    model.eval()
    with torch.no_grad():
        y = model(valid_x[:, None]).audio[:, 0]
    m = signal_metrics(valid_x, y)
    m["fixed share"] = (y.mean(0).pow(2).sum() / y.pow(2).sum(1).mean()).item()
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300, help="training steps per variant (default: 300)")
    args = p.parse_args(argv)
    data = load_data(None, DEFAULTS)
    losses = {
        "L1 + VQ": {"rms_weight": 0.0, "peak_weight": 0.0},
        f"L1 + VQ + rms {DEFAULTS.rms_weight:g} + peak {DEFAULTS.peak_weight:g}": {},
    }
    print(f"{args.steps} steps, batch {DEFAULTS.batch_size}, lr {DEFAULTS.learning_rate:g}, demo corpus\n")
    header = f"{'bias init':<16} {'loss':<32} {'SNR dB':>7} {'SI-SDR dB':>9} {'range':>6} {'fixed share':>11}"
    print(header)
    for biases in ("PyTorch default", "zero"):
        for name, changes in losses.items():
            m = run(make_config(changes), data, args.steps, biases)
            print(
                f"{biases:<16} {name:<32} {m['val/snr_db']:>7.2f} {m['val/si_sdr_db']:>9.2f} "
                f"{m['val/range_ratio']:>6.2f} {m['fixed share']:>11.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
