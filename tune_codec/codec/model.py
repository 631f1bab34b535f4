"""The codec interface (CodecOutput), the encoder -> residual VQ -> decoder codec every built-in model
is, and SEANet, its convolutional encoder/decoder."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tune_codec.codec.quantize import ResidualVQ, stages_used
from tune_codec.config import Config


class CodecOutput(NamedTuple):
    audio: torch.Tensor  # (B, 1, T)
    codes: torch.Tensor  # (B, n_codebooks, T // hop)
    commit_loss: torch.Tensor  # scalar


def zero_bias(layer: nn.Module) -> nn.Module:
    """Weight-normed, bias starting at 0. Speech is quiet (RMS ~0.05); PyTorch's default bias init
    outweighs it, so an untrained codec emits the same pattern for every input, and amplitude losses
    then amplify that pattern instead of the speech (benchmarks/amplitude_trap.py)."""
    nn.init.zeros_(layer.bias)
    return weight_norm(layer)


def conv(cin: int, cout: int, kernel: int, dilation: int = 1) -> nn.Module:
    """Length-preserving conv (odd kernel)."""
    return zero_bias(nn.Conv1d(cin, cout, kernel, dilation=dilation, padding=dilation * (kernel - 1) // 2))


class Resample(nn.Module):
    """Strided conv down (or transposed conv up) by `stride`, exactly T -> T / stride (or T * stride)."""

    def __init__(self, cin: int, cout: int, stride: int, up: bool):
        super().__init__()
        layer = nn.ConvTranspose1d if up else nn.Conv1d
        self.conv = zero_bias(layer(cin, cout, 2 * stride, stride=stride))
        self.up, self.trim = up, stride  # kernel - stride extra samples
        self.left = stride // 2

    def forward(self, x):
        if self.up:
            y = self.conv(x)
            return y[..., self.left : y.shape[-1] - (self.trim - self.left)]
        return self.conv(F.pad(x, (self.left, self.trim - self.left)))


class ResidualUnit(nn.Module):
    def __init__(self, channels: int, dilation: int):
        super().__init__()
        hidden = max(1, channels // 2)
        self.block = nn.Sequential(
            nn.ELU(), conv(channels, hidden, 3, dilation), nn.ELU(), conv(hidden, channels, 1)
        )

    def forward(self, x):
        return x + self.block(x)


def residual_units(channels: int, layers: int) -> list[nn.Module]:
    return [ResidualUnit(channels, 2**j) for j in range(layers)]


class QuantizedCodec(nn.Module):
    """(B, 1, T) -> self.encoder -> (B, D, T // hop) -> RVQ -> self.decoder -> (B, 1, T), T a multiple of
    the hop: what every built-in model shares; a subclass builds the encoder and the decoder."""

    def __init__(self, c: Config, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder  # (B, 1, T) -> (B, D, T // hop) and back
        self.quantizer = ResidualVQ(
            c.latent_dim, c.n_codebooks, c.codebook_size, c.ema_decay, c.dead_code_threshold, c.kmeans_iters
        )
        self.hop, self.n_codebooks, self.dropout = c.hop, c.n_codebooks, c.quantizer_dropout

    def forward(self, x: torch.Tensor, n_codebooks: int | None = None) -> CodecOutput:
        """x: (B, 1, T), decoded from the first n_codebooks stages (all by default; in training a
        quantizer_dropout share of the items from a random 1..n_codebooks)."""
        used = stages_used(len(x), self.n_codebooks, n_codebooks, self.dropout, self.training, x.device)
        q = self.quantizer(self.encoder(x), used)
        return CodecOutput(self.decoder(q.quantized), q.codes, q.commit_loss)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> codes (B, n_codebooks, T // hop)"""
        return self.quantizer(self.encoder(x)).codes

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, K, T') -> (B, 1, T' * hop), from the first K <= n_codebooks stages"""
        return self.decoder(self.quantizer.decode(codes))


class Codec(QuantizedCodec):
    """SEANet: strided convolutions at the sample rate down to the frames, transposed ones back up."""

    def __init__(self, c: Config):
        widths = [c.channels * 2**i for i in range(len(c.strides) + 1)]
        enc = [conv(1, widths[0], 7)]
        for i, s in enumerate(c.strides):
            enc += [
                *residual_units(widths[i], c.residual_layers),
                nn.ELU(),
                Resample(widths[i], widths[i + 1], s, up=False),
            ]
        enc += [nn.ELU(), conv(widths[-1], c.latent_dim, 3)]

        dec = [conv(c.latent_dim, widths[-1], 7)]
        for i, s in reversed(list(enumerate(c.strides))):
            dec += [
                nn.ELU(),
                Resample(widths[i + 1], widths[i], s, up=True),
                *residual_units(widths[i], c.residual_layers),
            ]
        dec += [nn.ELU(), conv(widths[0], 1, 7)]
        super().__init__(c, nn.Sequential(*enc), nn.Sequential(*dec))


def adamw(parameters, config: Config) -> torch.optim.AdamW:
    """The optimiser of the codec and of the discriminators: AdamW with config's betas and decay."""
    return torch.optim.AdamW(
        parameters,
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.weight_decay,
    )
