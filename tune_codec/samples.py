"""Listening and looking material for a checkpoint: wav clips and a waveform overlay."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402


def write_samples(folder: Path, x: np.ndarray, y: np.ndarray, sample_rate: int, title: str) -> None:
    """x, y: (K, T) input and output clips -> input_k.wav, output_k.wav, waveform.png."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (a, b) in enumerate(zip(x, y, strict=False)):
        sf.write(folder / f"input_{k}.wav", a, sample_rate, subtype="PCM_16")
        sf.write(folder / f"output_{k}.wav", np.clip(b, -1, 1), sample_rate, subtype="PCM_16")
    fig, axes = plt.subplots(len(x), 1, figsize=(10, 2.2 * len(x)), squeeze=False, sharex=True)
    t = np.arange(x.shape[1]) / sample_rate
    for ax, a, b in zip(axes[:, 0], x, y, strict=False):
        ax.plot(t, a, lw=0.6, color="tab:blue", label="input")
        ax.plot(t, b, lw=0.6, color="tab:orange", alpha=0.8, label="output")
        ax.set_ylabel("amplitude")
    axes[0, 0].set_title(title)
    axes[0, 0].legend(loc="upper right")
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    fig.savefig(folder / "waveform.png", dpi=80)
    plt.close(fig)
