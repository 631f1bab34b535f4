"""The discriminators of adversarial codec training and their losses: EnCodec's multi-scale STFT
discriminator and HiFi-GAN's multi-period one (as DAC uses it), hinge or least-squares objectives, and
L1 feature matching. Pure torch; train.py steps their optimiser."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from tune_codec.codec.model import adamw
from tune_codec.config import Config

PERIODS = (2, 3, 5, 7, 11)  # HiFi-GAN's: primes, so no two periods see the same samples
STFT_SIZES = (1024, 2048, 512, 256, 128)  # EnCodec's five scales, those shorter than a segment


class Judgement(NamedTuple):
    logits: torch.Tensor  # real (high) or fake (low), per time-frequency cell
    features: list[torch.Tensor]  # every hidden layer's output, for feature matching


def judge(layers: nn.ModuleList, out: nn.Module, x: torch.Tensor, slope: float) -> Judgement:
    features = []
    for layer in layers:
        x = F.leaky_relu(layer(x), slope)
        features.append(x)
    return Judgement(out(x), features)


class STFTDiscriminator(nn.Module):
    """2-D convs over the complex STFT (real and imaginary parts as channels) at one FFT size."""

    def __init__(self, channels: int, n_fft: int):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        conv = [weight_norm(nn.Conv2d(2, channels, (3, 9), padding=(1, 4)))]
        for dilation in (1, 2, 4):  # (time, frequency): frequency halves, time dilates
            conv.append(
                weight_norm(
                    nn.Conv2d(
                        channels,
                        channels,
                        (3, 9),
                        stride=(1, 2),
                        dilation=(dilation, 1),
                        padding=(dilation, 4),
                    )
                )
            )
        conv.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(conv)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> Judgement:
        """x: (B, 1, T)"""
        with torch.autocast(x.device.type, enabled=False):  # the FFT in float32, the convs may autocast
            spec = torch.stft(
                x[:, 0].float(),
                self.n_fft,
                self.n_fft // 4,
                window=self.window,
                normalized=True,
                center=False,
                return_complex=True,
            )  # (B, F, frames)
        z = torch.stack([spec.real, spec.imag], 1).transpose(2, 3)  # (B, 2, frames, F)
        return judge(self.layers, self.out, z, 0.2)


class PeriodDiscriminator(nn.Module):
    """2-D convs over the waveform folded into rows of `period` samples: each column is every period-th
    sample, so periodic structure (pitch) shows as a pattern along the columns."""

    def __init__(self, channels: int, period: int):
        super().__init__()
        self.period = period
        widths = [1] + [min(channels * 4**i, 32 * channels) for i in range(5)]  # HiFi-GAN at channels=32
        conv = [
            weight_norm(nn.Conv2d(widths[i], widths[i + 1], (5, 1), (3 if i < 4 else 1, 1), padding=(2, 0)))
            for i in range(5)
        ]
        self.layers = nn.ModuleList(conv)
        self.out = weight_norm(nn.Conv2d(widths[-1], 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> Judgement:
        b, c, t = x.shape
        pad = (-t) % self.period
        x = F.pad(x, (0, pad), mode="reflect") if pad else x
        return judge(self.layers, self.out, x.view(b, c, -1, self.period), 0.1)  # (B, 1, T/p, p)


class Discriminators(nn.Module):
    """Every discriminator config.discriminators names, each judging the same audio."""

    def __init__(self, config: Config):
        super().__init__()
        kinds = config.discriminators.split(",")
        nets: list[nn.Module] = []
        if "msstft" in kinds:
            sizes = [n for n in STFT_SIZES if n <= config.segment_samples // 2] or [
                config.segment_samples // 2
            ]
            nets += [STFTDiscriminator(config.disc_channels, n) for n in sizes]
        if "mpd" in kinds:
            nets += [PeriodDiscriminator(config.disc_channels, p) for p in PERIODS]
        self.nets = nn.ModuleList(nets)
        self.kinds = ["mpd" if isinstance(net, PeriodDiscriminator) else "msstft" for net in nets]

    def forward(self, x: torch.Tensor) -> list[Judgement]:
        return [net(x) for net in self.nets]


def discriminator_losses(real: list[Judgement], fake: list[Judgement], kind: str) -> list[torch.Tensor]:
    """Each discriminator's objective: hinge (real above 1, fake below -1) or least squares (real at 1,
    fake at 0)."""
    if kind == "hinge":
        return [
            F.relu(1 - r.logits.float()).mean() + F.relu(1 + f.logits.float()).mean()
            for r, f in zip(real, fake, strict=True)
        ]
    return [
        (1 - r.logits.float()).pow(2).mean() + f.logits.float().pow(2).mean()
        for r, f in zip(real, fake, strict=True)
    ]


def generator_loss(fake: list[Judgement], kind: str) -> torch.Tensor:
    """adv/gen: the decoder's output judged real, averaged over the discriminators."""
    if kind == "hinge":
        terms = [F.relu(1 - f.logits.float()).mean() for f in fake]
    else:
        terms = [(1 - f.logits.float()).pow(2).mean() for f in fake]
    return torch.stack(terms).mean()


def feature_loss(real: list[Judgement], fake: list[Judgement]) -> torch.Tensor:
    """adv/feat: L1 between the features of input and output, each layer relative to the input's mean
    magnitude (EnCodec's normalised feature matching), averaged over the layers."""
    terms = [
        (rf.float() - ff.float()).abs().mean() / (rf.float().abs().mean() + 1e-8)
        for r, f in zip(real, fake, strict=True)
        for rf, ff in zip(r.features, f.features, strict=True)
    ]
    return torch.stack(terms).mean()


class Adversary:
    """The discriminators, their AdamW optimiser, and the two losses they give the codec."""

    def __init__(self, config: Config, device: torch.device):
        self.nets = Discriminators(config).to(device)
        self.opt = adamw(self.nets.parameters(), config)
        self.kind, self.grad_clip = config.adv_loss, config.grad_clip

    def update(self, x: torch.Tensor, y: torch.Tensor, lr: float, autocast: bool) -> dict[str, torch.Tensor]:
        """One step of the discriminators on input x (real) and output y (fake), both (B, 1, T); returns
        disc/<kind> (each kind's summed objective) and disc/total."""
        self.nets.requires_grad_(True)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            real, fake = self.nets(x), self.nets(y.detach())
        losses = discriminator_losses(real, fake, self.kind)
        total = torch.stack(losses).sum()
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.nets.parameters(), self.grad_clip)
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.opt.step()
        out = {"disc/total": total.detach()}
        for kind in dict.fromkeys(self.nets.kinds):
            out[f"disc/{kind}"] = sum(
                loss.detach() for loss, k in zip(losses, self.nets.kinds, strict=True) if k == kind
            )
        return out

    def losses(self, x: torch.Tensor, y: torch.Tensor, autocast: bool) -> dict[str, torch.Tensor]:
        """adv/gen and adv/feat of output y against input x; their gradient reaches y, not the nets."""
        self.nets.requires_grad_(False)
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            with torch.no_grad():
                real = self.nets(x)
            fake = self.nets(y)
        return {"adv/gen": generator_loss(fake, self.kind), "adv/feat": feature_loss(real, fake)}

    def state_dict(self) -> dict:
        return {"nets": self.nets.state_dict(), "optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.nets.load_state_dict(state["nets"])
        self.opt.load_state_dict(state["optimizer"])
