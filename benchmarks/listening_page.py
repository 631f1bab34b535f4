"""What writing an epoch's samples costs: the clips, the waveform and spectrogram figures, the page.

    python benchmarks/listening_page.py [--repeats 10]

train() writes them after every epoch (tune_codec/samples.py). Clips as the default config makes them:
3 validation clips of 0.5 s at 16 kHz, here cut from the demo corpus, and an output at 0.9x plus noise.
Prints the median milliseconds of each part and of the whole write_samples call, and the folder's size.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tune_codec.config import DEFAULTS
from tune_codec.data.corpus import decode
from tune_codec.data.segments import DEMO_CORPUS
from tune_codec.training.checkpoint import N_CLIPS
from tune_codec.training.samples import (
    PAGE,
    SPECTROGRAM,
    WAVEFORM,
    plot_spectrograms,
    plot_waveforms,
    write_listening_page,
    write_samples,
)


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: fonts, colormaps
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    rate, length = DEFAULTS.sample_rate, DEFAULTS.segment_samples
    files = sorted(DEMO_CORPUS.rglob("*.flac"))[:N_CLIPS]
    x = np.stack([decode(f, rate)[:length] for f in files])
    y = (0.9 * x + 0.01 * np.random.default_rng(0).standard_normal(x.shape)).astype(np.float32)
    title = "epoch 1: range ratio 0.90, SNR 3.00 dB"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        total = median_ms(lambda: write_samples(folder, x, y, rate, title), args.repeats)
        parts = {
            WAVEFORM: median_ms(lambda: plot_waveforms(folder / WAVEFORM, x, y, rate, title), args.repeats),
            SPECTROGRAM: median_ms(
                lambda: plot_spectrograms(folder / SPECTROGRAM, x, y, rate, title), args.repeats
            ),
            PAGE: median_ms(lambda: write_listening_page(folder, len(x), title), args.repeats),
        }
        size = sum(f.stat().st_size for f in folder.iterdir())
    print(f"{N_CLIPS} clips of {length / rate:g} s at {rate} Hz, median of {args.repeats} calls")
    for name, ms in parts.items():
        print(f"    {name:<16} {ms:6.0f} ms")
    print(f"    {'write_samples':<16} {total:6.0f} ms  (clips, figures and page: {size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
