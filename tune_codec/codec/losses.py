"""Named loss terms and their weighted sum; a term with weight 0 is computed and logged only."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torchaudio
from torch import nn

from tune_codec.config import ADVERSARIAL, LOSS_WEIGHTS, Config

EPS = 1e-5


class MultiScaleMel(nn.Module):
    """Mean L1 distance of log-mel spectrograms at several FFT sizes (those that fit `max_len`)."""

    def __init__(self, sample_rate: int, max_len: int, sizes=(256, 512, 1024, 2048), n_mels: int = 64):
        super().__init__()
        sizes = [n for n in sizes if n < max_len] or [2 ** (max_len.bit_length() - 2)]
        self.specs = nn.ModuleList(
            torchaudio.transforms.MelSpectrogram(
                sample_rate, n_fft=n, hop_length=n // 4, n_mels=min(n_mels, n // 8), power=1.0
            )
            for n in sizes
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: (B, 1, T) -> scalar"""
        dist = [(torch.log(s(x) + EPS) - torch.log(s(y) + EPS)).abs().mean() for s in self.specs]
        return torch.stack(dist).mean()


class MultiResolutionSTFT(nn.Module):
    """Spectral convergence plus log-magnitude L1 of linear STFTs at several FFT sizes (those shorter than
    `max_len`): Parallel WaveGAN's multi-resolution STFT loss."""

    def __init__(self, max_len: int, sizes=(512, 1024, 2048)):
        super().__init__()
        self.sizes = [n for n in sizes if n < max_len] or [2 ** (max_len.bit_length() - 2)]
        for n in self.sizes:
            self.register_buffer(f"window{n}", torch.hann_window(n), persistent=False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x: the reference, y: the output, both (B, 1, T) -> scalar"""
        dist = []
        for n in self.sizes:
            window = getattr(self, f"window{n}")
            mx, my = (
                torch.stft(a[:, 0], n, n // 4, window=window, return_complex=True).abs() for a in (x, y)
            )
            convergence = (mx - my).norm(dim=(1, 2)) / (mx.norm(dim=(1, 2)) + EPS)
            dist.append(convergence.mean() + (torch.log(mx + EPS) - torch.log(my + EPS)).abs().mean())
        return torch.stack(dist).mean()


def squared_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean (a - b)^2 of per-segment statistics: its pull fades as the levels meet, leaving L1 to shape
    the waveform."""
    return (a - b).pow(2).mean()


def signed_sisdr_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x, y: (B, 1, T) -> 10 log10((1 - r) / (1 + r)), mean over segments, r the correlation of y with x:
    scale-invariant as SI-SDR, whose minus it equals less 6 dB near a match (SI-SDR = 10 log10(r^2 / (1 -
    r^2))). SI-SDR itself is blind to the sign, so a codec trained on it alone may learn an inverted
    output (measured: SI-SDR +8 dB, SNR -6 dB); here r = -1 is the worst and the gradient points to +1
    from every r."""
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    r = (x * y).sum(-1) / (x.norm(dim=-1) * y.norm(dim=-1) + EPS**2)
    return (10 * torch.log10((1 - r + EPS) / (1 + r + EPS))).mean()


class LossResult(NamedTuple):
    total: torch.Tensor  # weighted sum, the thing to minimise
    terms: dict[str, torch.Tensor]  # every named term, weighted or not


class CodecLoss(nn.Module):
    def __init__(self, config: Config):
        super().__init__()
        self.reweigh(config)
        self.mel = MultiScaleMel(config.sample_rate, config.segment_samples)
        self.stft = MultiResolutionSTFT(config.segment_samples)

    def reweigh(self, config: Config) -> None:
        """Take config's loss weights (a schedule, or PBT, changes them between epochs)."""
        self.weights = {name: getattr(config, field) for name, field in LOSS_WEIGHTS.items()}

    def forward(
        self, x: torch.Tensor, y: torch.Tensor, commit_loss: torch.Tensor, adversarial: dict | None = None
    ) -> LossResult:
        """x: input, y: output, both (B, 1, T) float32; adversarial: the adv/ terms, while the
        discriminators train."""
        fns = {
            "rec/l1": lambda: (y - x).abs().mean(),
            "rec/mel": lambda: self.mel(y, x),
            "rec/stft": lambda: self.stft(x, y),
            "rec/sisdr": lambda: signed_sisdr_loss(x, y),
            "amp/rms": lambda: squared_gap(y.pow(2).mean(-1).sqrt(), x.pow(2).mean(-1).sqrt()),
            "amp/peak": lambda: squared_gap(y.abs().amax(-1), x.abs().amax(-1)),
            "vq/commit": lambda: commit_loss,
        }
        if fns.keys() | set(ADVERSARIAL) != self.weights.keys():
            raise KeyError(f"loss terms {sorted(fns)} do not match weights {sorted(self.weights)}")
        terms = {}
        for name, fn in fns.items():
            # a term that is only logged needs no graph
            with torch.set_grad_enabled(torch.is_grad_enabled() and self.weights[name] > 0):
                terms[name] = fn()
        terms.update(adversarial or {})
        total = sum(self.weights[n] * t for n, t in terms.items() if self.weights[n] > 0)
        return LossResult(torch.as_tensor(total, device=x.device), terms)

    def trained(self, terms: dict) -> list[str]:
        """The terms of `terms` that are trained on (weight > 0)."""
        return [name for name in terms if self.weights[name] > 0]
