"""A user's own codec, as README "Your own codec" describes it: `model: tests.example_codec:build`.

One strided convolution per frame in, the project's residual VQ, one transposed convolution out: the
smallest module that keeps the codec interface. The factories below it each break one part of it."""

from __future__ import annotations

from torch import nn

from tune_codec.codec.model import CodecOutput
from tune_codec.codec.quantize import ResidualVQ, stages_used


class FrameCodec(nn.Module):
    def __init__(self, config):
        super().__init__()
        hop, dim = config.hop, config.latent_dim
        self.encoder = nn.Conv1d(1, dim, hop, stride=hop)  # (B, 1, T) -> (B, D, T // hop)
        self.quantizer = ResidualVQ(dim, config.n_codebooks, config.codebook_size, kmeans_iters=2)
        self.decoder = nn.ConvTranspose1d(dim, 1, hop, stride=hop)  # (B, D, T') -> (B, 1, T' * hop)
        self.n_codebooks, self.dropout = config.n_codebooks, config.quantizer_dropout

    def forward(self, x, n_codebooks=None):
        used = stages_used(len(x), self.n_codebooks, n_codebooks, self.dropout, self.training, x.device)
        q = self.quantizer(self.encoder(x), used)
        return CodecOutput(self.decoder(q.quantized), q.codes, q.commit_loss)

    def encode(self, x):
        return self.quantizer(self.encoder(x)).codes

    def decode(self, codes):
        return self.decoder(self.quantizer.decode(codes))


def build(config):
    return FrameCodec(config)


class NoDecode(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.codec = FrameCodec(config)

    def forward(self, x, n_codebooks=None):
        return self.codec(x, n_codebooks)

    def encode(self, x):
        return self.codec.encode(x)


class HalfLength(FrameCodec):
    def forward(self, x, n_codebooks=None):
        out = super().forward(x, n_codebooks)
        return out._replace(audio=out.audio[..., : x.shape[-1] // 2])


def without_decode(config):
    return NoDecode(config)


def half_length(config):
    return HalfLength(config)


def not_a_module(config):
    return "codec"
