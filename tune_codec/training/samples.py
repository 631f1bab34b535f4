"""Listening and looking material for a checkpoint: wav clips, waveform and spectrogram figures, and a
page (index.html) that plays the input and output clips side by side above the figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # trials and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from tune_codec.pages import data_uri, write_page  # noqa: E402

WAVEFORM, SPECTROGRAM, PAGE = "waveform.png", "spectrogram.png", "index.html"
DB_RANGE = 80  # dB below the input's loudest bin shown in the spectrograms


def write_samples(folder: Path, x: np.ndarray, y: np.ndarray, sample_rate: int, title: str) -> None:
    """x, y: (K, T) input and output clips -> input_k.wav, output_k.wav, waveform.png, spectrogram.png,
    index.html."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, (a, b) in enumerate(zip(x, y, strict=False)):
        sf.write(folder / f"input_{k}.wav", a, sample_rate, subtype="PCM_16")
        sf.write(folder / f"output_{k}.wav", np.clip(b, -1, 1), sample_rate, subtype="PCM_16")
    plot_waveforms(folder / WAVEFORM, x, y, sample_rate, title)
    plot_spectrograms(folder / SPECTROGRAM, x, y, sample_rate, title)
    write_listening_page(folder, len(x), title)


def plot_waveforms(path: Path, x: np.ndarray, y: np.ndarray, sample_rate: int, title: str) -> None:
    """Input and output overlaid, one clip a row: an output too quiet or too loud shows at a glance."""
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
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_spectrograms(path: Path, x: np.ndarray, y: np.ndarray, sample_rate: int, title: str) -> None:
    """Input | output, one clip a row, both on the input's dB scale, so a quiet output looks dark."""
    fig, axes = plt.subplots(len(x), 2, figsize=(10, 1.8 * len(x)), squeeze=False, sharex=True, sharey=True)
    extent = (0, x.shape[1] / sample_rate, 0, sample_rate / 2000)
    for row, a, b in zip(axes, x, y, strict=False):
        db_in, db_out = log_power(a), log_power(b)
        top = db_in.max()
        for ax, db in zip(row, (db_in, db_out), strict=True):
            ax.imshow(
                db, origin="lower", aspect="auto", extent=extent, cmap="magma", vmin=top - DB_RANGE, vmax=top
            )
        row[0].set_ylabel("kHz")
    axes[0, 0].set_title(f"input ({title})", fontsize=9)
    axes[0, 1].set_title("output", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("seconds")
    inch = 1 / fig.get_figheight()  # fixed margins: tight_layout makes this figure 1.5x slower
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.5 * inch, top=1 - 0.3 * inch, wspace=0.04, hspace=0.1)
    fig.savefig(path, dpi=72, pil_kwargs={"compress_level": 1})  # zlib's default took a third of the time
    plt.close(fig)


def log_power(clip: np.ndarray, nfft: int = 256) -> np.ndarray:
    """(T,) -> (nfft // 2 + 1, frames) power in dB, Hann window, hop nfft // 4."""
    nfft = min(nfft, len(clip))
    frames = np.lib.stride_tricks.sliding_window_view(clip, nfft)[:: max(1, nfft // 4)] * np.hanning(nfft)
    return 10 * np.log10(np.abs(np.fft.rfft(frames, axis=-1)).T ** 2 + 1e-10)


def write_listening_page(folder: Path, clips: int, title: str) -> None:
    """index.html: input and output players side by side, then the waveform and spectrogram figures."""
    rows = "\n".join(
        f'<tr><td>{k}</td><td><audio controls preload="metadata" src="{data_uri(folder / f"input_{k}.wav")}">'
        f'</audio></td><td><audio controls preload="metadata" src="{data_uri(folder / f"output_{k}.wav")}">'
        "</audio></td></tr>"
        for k in range(clips)
    )
    body = (
        f'<table><tr><th>clip</th><th class="text">input</th><th class="text">output</th></tr>\n{rows}\n'
        f"</table>\n<h3>Waveforms: input (blue) and output (orange)</h3>\n"
        f'<img alt="waveforms" src="{data_uri(folder / WAVEFORM)}">\n'
        f"<h3>Spectrograms, both on the input's dB scale</h3>\n"
        f'<img alt="spectrograms" src="{data_uri(folder / SPECTROGRAM)}">'
    )
    write_page(folder / PAGE, title, body)
