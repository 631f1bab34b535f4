"""Opus at a given bitrate, through opus-tools (opusenc --hard-cbr, opusdec): the reference codec."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

MIN_KBPS = 6.0  # the lowest bitrate opusenc takes
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)  # what opusdec writes; other rates are resampled
MAX_LAG_S = 0.02  # how far opusdec's output may be shifted from its input, at most


def missing() -> str | None:
    """Why Opus cannot be run here, or None."""
    if shutil.which("opusenc") and shutil.which("opusdec"):
        return None
    return "opus-tools is not installed (apt-get install opus-tools)"


def roundtrip(audio: np.ndarray, rate: int, kbps: float) -> tuple[np.ndarray, int]:
    """(T,) float audio at `rate` through Opus at `kbps` (constant bitrate) -> the decoded audio at
    `rate`, as long as the input and aligned with it, and the size of the .opus file in bytes."""
    with tempfile.TemporaryDirectory(prefix="tune-codec-opus-") as tmp:
        wav, coded, decoded = (Path(tmp, name) for name in ("in.wav", "coded.opus", "out.wav"))
        sf.write(wav, np.clip(audio, -1, 1), rate, subtype="PCM_16")
        run(["opusenc", "--quiet", "--hard-cbr", "--bitrate", f"{kbps:g}", str(wav), str(coded)])
        out_rate = rate if rate in OPUS_RATES else 48000
        run(["opusdec", "--quiet", "--rate", str(out_rate), str(coded), str(decoded)])
        out = sf.read(decoded, dtype="float32", always_2d=True)[0]
        size = coded.stat().st_size
    out = out.mean(axis=1)
    if out_rate != rate:
        out = AF.resample(torch.from_numpy(out), out_rate, rate).numpy()
    return align(audio, out, round(MAX_LAG_S * rate)), size


def run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{argv[0]} exited {done.returncode}: {done.stderr.strip()[-300:]}")


def align(reference: np.ndarray, estimate: np.ndarray, max_lag: int) -> np.ndarray:
    """estimate shifted by the lag (within +-max_lag samples) that best matches reference, cut or
    zero-padded to reference's length."""
    n = len(reference) + len(estimate)
    spectrum = np.fft.rfft(estimate, n) * np.conj(np.fft.rfft(reference, n))
    correlation = np.fft.irfft(spectrum, n)  # correlation[k]: estimate[t + k] against reference[t]
    lags = np.r_[0 : max_lag + 1, -max_lag:0]
    lag = int(lags[np.argmax(correlation[lags])])
    shifted = estimate[lag:] if lag >= 0 else np.concatenate([np.zeros(-lag, estimate.dtype), estimate])
    out = np.zeros(len(reference), dtype=np.float32)
    out[: min(len(shifted), len(out))] = shifted[: len(out)]
    return out
