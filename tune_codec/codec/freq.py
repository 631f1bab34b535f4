"""The frequency-domain codec (model: freq): STFT frames in, ConvNeXt blocks at the frame rate, the
residual VQ, ConvNeXt blocks, and a Vocos-style iSTFT head out (a magnitude and a phase per bin).

Every layer runs at the frame rate (sample_rate / hop), none at the sample rate as SEANet's first and last
convolutions do: wide matrix products that a CPU runs near its peak, and about 10x fewer operations per
parameter than SEANet's. The STFT's hop is the codec's hop (the product of strides), so the bitrate, the
segment length and the codes files are the same as a SEANet codec's of the same strides. Both transforms
use "same" padding ((n_fft - hop) / 2 on each side, as Vocos's ISTFT): T samples give exactly T / hop
frames, one code per frame as SEANet's, and the frames give back exactly T samples (torch.stft with
center=True gives T / hop + 1)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tune_codec.codec.model import QuantizedCodec
from tune_codec.config import Config

LOG_EPS = 1e-5  # floor of the magnitudes the encoder sees in log, about -100 dB of a full-scale bin


class Spectra(nn.Module):
    """The STFT with hop `hop` and a periodic Hann window of n_fft, padded so that T samples are T / hop
    frames, and its exact inverse (window-squared overlap-add). Always in float32: bf16 autocast would run
    the FFTs at 8 bits of mantissa (as discriminators.py's STFTs)."""

    def __init__(self, n_fft: int, hop: int):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        self.left = (n_fft - hop) // 2
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> complex (B, n_fft // 2 + 1, T // hop)"""
        with torch.autocast(x.device.type, enabled=False):
            padded = F.pad(x[:, 0].float(), (self.left, self.n_fft - self.hop - self.left))
            return torch.stft(
                padded, self.n_fft, self.hop, window=self.window, center=False, return_complex=True
            )

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        """complex (B, F, T') -> (B, 1, T' * hop)"""
        with torch.autocast(spec.device.type, enabled=False):
            frames = torch.fft.irfft(spec, self.n_fft, dim=1) * self.window[:, None]  # (B, n_fft, T')
            n = frames.shape[-1]
            span = (n - 1) * self.hop + self.n_fft

            def overlap_add(f: torch.Tensor) -> torch.Tensor:  # (B, n_fft, T') -> (B, span)
                return F.fold(f, (1, span), (1, self.n_fft), stride=(1, self.hop))[:, 0, 0]

            envelope = overlap_add(self.window.square()[None, :, None].expand(1, -1, n))  # (1, span)
            keep = slice(self.left, self.left + n * self.hop)  # where >= 2 windows overlap: no zeros
            return (overlap_add(frames)[:, keep] / envelope[:, keep])[:, None]


class ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channels of (B, C, T')."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvNeXt(nn.Module):
    """Depthwise conv (7 frames), LayerNorm, a 3x wider pointwise MLP, a learned per-channel scale, and
    the residual (ConvNeXt as Vocos uses it, in 1-D)."""

    def __init__(self, dim: int, scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.up, self.down = nn.Linear(dim, 3 * dim), nn.Linear(3 * dim, dim)
        self.scale = nn.Parameter(torch.full((dim,), scale))  # small: each block starts near identity

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T') -> (B, C, T')"""
        y = self.norm(self.depthwise(x).transpose(1, 2))  # (B, T', C)
        y = self.down(F.gelu(self.up(y)))
        return x + (self.scale * y).transpose(1, 2)


def trunk(cin: int, width: int, depth: int, cout: int) -> nn.Sequential:
    """(B, cin, T') -> (B, cout, T'): an embedding conv, `depth` ConvNeXt blocks between LayerNorms, and a
    pointwise projection."""
    return nn.Sequential(
        nn.Conv1d(cin, width, 7, padding=3),
        ChannelNorm(width),
        *[ConvNeXt(width, 1 / max(1, depth)) for _ in range(depth)],
        ChannelNorm(width),
        nn.Conv1d(width, cout, 1),
    )


class FreqEncoder(nn.Module):
    """(B, 1, T) -> log-magnitude and the phase's (cos, sin) per bin -> (B, latent_dim, T // hop)"""

    def __init__(self, spectra: Spectra, c: Config):
        super().__init__()
        self.spectra = spectra
        self.net = trunk(3 * (c.n_fft // 2 + 1), c.freq_width, c.freq_depth, c.latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spec = self.spectra(x)  # (B, F, T')
        mag = spec.abs() + LOG_EPS
        # the phase as a unit vector; (near) silent bins give (0, 0), not a random angle
        features = torch.cat([torch.log(mag), spec.real / mag, spec.imag / mag], 1)  # (B, 3F, T')
        return self.net(features)  # (B, D, T')


class FreqDecoder(nn.Module):
    """(B, latent_dim, T') -> per bin a log-magnitude and two numbers whose angle is the phase -> the
    iSTFT -> (B, 1, T' * hop) (Vocos's head, with atan2 for the phase)."""

    def __init__(self, spectra: Spectra, c: Config):
        super().__init__()
        self.spectra, self.bins = spectra, c.n_fft // 2 + 1
        self.net = trunk(c.latent_dim, c.freq_width, c.freq_depth, 3 * self.bins)
        # a full-scale sine puts n_fft / 4 in its bin: louder is never speech, and exp() would overflow
        self.max_log = math.log(c.n_fft)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        log_mag, re, im = self.net(z).float().split(self.bins, 1)  # each (B, F, T')
        mag = torch.exp(log_mag.clamp(max=self.max_log))
        phase = torch.atan2(im, re)
        return self.spectra.inverse(torch.polar(mag, phase))


class FreqCodec(QuantizedCodec):
    """The frequency-domain codec: FreqEncoder -> RVQ -> FreqDecoder, sharing one Spectra."""

    def __init__(self, c: Config):
        spectra = Spectra(c.n_fft, c.hop)
        super().__init__(c, FreqEncoder(spectra, c), FreqDecoder(spectra, c))
