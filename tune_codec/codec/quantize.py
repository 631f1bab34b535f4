"""Residual vector quantizer: k-means init, EMA codebooks, dead-code restart."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


class QuantizedResult(NamedTuple):
    quantized: torch.Tensor  # (B, D, T), straight-through to the input
    codes: torch.Tensor  # (B, n_codebooks, T) int64
    commit_loss: torch.Tensor  # scalar, summed over stages


def kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means with k-means++ seeding on (N, D) -> centroids (k, D), cluster sizes (k,)."""
    centroids = x[torch.randint(len(x), (k,), device=x.device)].clone()
    dist = (x - centroids[0]).pow(2).sum(1)
    for i in range(1, k):  # each new seed drawn in proportion to its squared distance from the others
        pick = torch.multinomial(dist, 1) if dist.sum() > 0 else torch.randint(len(x), (1,), device=x.device)
        centroids[i] = x[pick[0]]
        dist = torch.minimum(dist, (x - centroids[i]).pow(2).sum(1))
    counts = torch.zeros(k, device=x.device)
    for _ in range(iters + 1):
        assign = torch.cdist(x, centroids).argmin(dim=1)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        used = counts > 0
        centroids[used] = sums[used] / counts[used, None]
    return centroids, counts


class Codebook(nn.Module):
    """One VQ stage whose codewords follow an EMA of the vectors assigned to them."""

    def __init__(self, dim: int, size: int, decay: float, dead_threshold: float, kmeans_iters: int):
        super().__init__()
        self.decay, self.dead_threshold, self.kmeans_iters = decay, dead_threshold, kmeans_iters
        self.register_buffer("codewords", torch.randn(size, dim))
        self.register_buffer("cluster_size", torch.ones(size))  # EMA of assignments per code
        self.register_buffer("embed_sum", self.codewords.clone())  # EMA of assigned vectors
        self.register_buffer("initialised", torch.tensor(False))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) index of the nearest codeword."""
        dist = x.pow(2).sum(1, keepdim=True) - 2 * x @ self.codewords.T + self.codewords.pow(2).sum(1)
        return dist.argmin(dim=1)

    @torch.no_grad()
    def init_kmeans(self, x: torch.Tensor) -> None:
        centroids, counts = kmeans(x, len(self.codewords), self.kmeans_iters)
        self.codewords.copy_(centroids)
        self.cluster_size.copy_(counts)
        self.embed_sum.copy_(centroids * counts[:, None])
        self.initialised.fill_(True)

    @torch.no_grad()
    def update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """EMA step on the batch (N, D) and its codes, then restart the codes nobody uses."""
        counts = torch.bincount(codes, minlength=len(self.codewords)).float()
        sums = torch.zeros_like(self.embed_sum).index_add_(0, codes, x)
        self.cluster_size.lerp_(counts, 1 - self.decay)
        self.embed_sum.lerp_(sums, 1 - self.decay)
        dead = self.cluster_size < self.dead_threshold
        if dead.any():  # restart on random vectors of this batch, with unit usage
            picks = x[torch.randint(len(x), (int(dead.sum()),), device=x.device)]
            self.embed_sum[dead] = picks
            self.cluster_size[dead] = 1.0
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + 1e-5) / (n + len(self.codewords) * 1e-5) * n  # Laplace
        self.codewords.copy_(self.embed_sum / smoothed[:, None])

    def dead_codes(self) -> int:
        return int((self.cluster_size < self.dead_threshold).sum())


def stages_used(
    batch: int, total: int, n_codebooks: int | None, dropout: float, training: bool, device
) -> torch.Tensor | None:
    """(B,) how many stages each item is decoded from: n_codebooks when given; in training, a `dropout`
    share of the items from a random 1..total instead (DAC's quantizer dropout: one model then serves every
    bitrate up to its full one); None = all, for every item."""
    if n_codebooks is not None:
        return torch.full((batch,), n_codebooks, device=device)
    if not (training and dropout):
        return None
    drop = torch.rand(batch, device=device) < dropout
    fewer = torch.randint(1, total + 1, (batch,), device=device)
    return torch.where(drop, fewer, total)


class ResidualVQ(nn.Module):
    """Each stage quantizes what the previous stages left over."""

    def __init__(self, dim, n_codebooks, size, decay=0.99, dead_threshold=0.5, kmeans_iters=10):
        super().__init__()
        self.stages = nn.ModuleList(
            Codebook(dim, size, decay, dead_threshold, kmeans_iters) for _ in range(n_codebooks)
        )

    def forward(self, z: torch.Tensor, used: torch.Tensor | None = None) -> QuantizedResult:
        """z: (B, D, T); used: (B,) how many stages each item's output sums (all by default). Every stage
        quantizes (and learns) the residual all the same: codes do not depend on `used`."""
        b, d, t = z.shape
        x = z.float().transpose(1, 2).reshape(-1, d)  # (B*T, D); codebooks stay fp32
        residual, quantized, codes, commit = x, torch.zeros_like(x), [], x.new_zeros(())
        keep = None if used is None else used.repeat_interleave(t)[:, None]  # (B*T, 1)
        for i, stage in enumerate(self.stages):
            if self.training and not stage.initialised:
                stage.init_kmeans(residual.detach())
            idx = stage.nearest(residual.detach())
            q = stage.codewords[idx]  # gathered before the EMA step moves the codewords
            if self.training:
                stage.update(residual.detach(), idx)
            commit = commit + F.mse_loss(residual, q)  # codewords are buffers: pulls the encoder
            quantized = quantized + (q if keep is None else q * (keep > i))
            residual = residual - q
            codes.append(idx)
        straight = x + (quantized - x).detach()  # identity gradient to the encoder
        return QuantizedResult(
            quantized=straight.reshape(b, t, d).transpose(1, 2).to(z.dtype),
            codes=torch.stack(codes, 1).reshape(b, t, -1).transpose(1, 2),
            commit_loss=commit,
        )

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, K, T) -> (B, D, T), from the first K <= n_codebooks stages"""
        q = sum(self.stages[i].codewords[codes[:, i]] for i in range(codes.shape[1]))
        return q.transpose(1, 2)
