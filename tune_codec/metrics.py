"""Validation metrics: SNR, SI-SDR, range/RMS ratio, codebook usage, PESQ and STOI."""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.functional as AF
from pesq import pesq
from pystoi import stoi

from tune_codec.config import LOSS_WEIGHTS


def snr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """10 log10(signal power / noise power) over all samples; y is the estimate of x."""
    noise = (x - y).pow(2).sum().item()
    signal = x.pow(2).sum().item()
    return 10 * math.log10(signal / noise) if noise > 0 else math.inf


def si_sdr_db(x: torch.Tensor, y: torch.Tensor) -> float:
    """Scale-invariant SDR, mean over segments; x, y: (N, T)."""
    x, y = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    alpha = (y * x).sum(-1, keepdim=True) / (x.pow(2).sum(-1, keepdim=True) + 1e-12)
    target = alpha * x
    ratio = target.pow(2).sum(-1) / ((y - target).pow(2).sum(-1) + 1e-12)
    return (10 * torch.log10(ratio + 1e-12)).mean().item()


def perplexity(codes: torch.Tensor, size: int) -> float:
    """exp(entropy) of the code histogram: how many codes are used, effectively."""
    p = torch.bincount(codes.flatten(), minlength=size).float()
    p = p[p > 0] / p.sum()
    return math.exp(-(p * p.log()).sum().item())


def signal_metrics(x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The debug block's numbers (and SI-SDR) for input x and output y, (N, T)."""
    in_range, out_range = x.abs().max().item(), y.abs().max().item()
    signal, noise = x.pow(2).mean().item(), (x - y).pow(2).mean().item()
    return {
        "val/in_range": in_range,
        "val/out_range": out_range,
        "val/range_ratio": out_range / in_range,
        "val/rms_ratio": math.sqrt(y.pow(2).mean().item() / signal),
        "val/signal_power": signal,
        "val/noise_power": noise,
        "val/snr_db": snr_db(x, y),
        "val/si_sdr_db": si_sdr_db(x, y),
    }


def codebook_metrics(codes: torch.Tensor, size: int) -> dict[str, float]:
    """codes: (N, n_codebooks, T') -> mean perplexity and share of codes never used."""
    stages = codes.transpose(0, 1).reshape(codes.shape[1], -1)
    used = [len(torch.unique(s)) for s in stages]
    return {
        "vq/perplexity": sum(perplexity(s, size) for s in stages) / len(stages),
        "vq/dead_fraction": 1 - sum(used) / (size * len(stages)),
    }


def debug_block(m: dict[str, float]) -> str:
    """The validation printout, one number a line, then the epoch's training losses."""
    return "\n".join(
        [
            f"  input range     [{-m['val/in_range']:.4f}, {m['val/in_range']:.4f}]",
            f"  output range    [{-m['val/out_range']:.4f}, {m['val/out_range']:.4f}]",
            f"  range ratio     {m['val/range_ratio']:.3f}",
            f"  RMS ratio       {m['val/rms_ratio']:.3f}",
            f"  signal power    {m['val/signal_power']:.3e}",
            f"  noise power     {m['val/noise_power']:.3e}",
            f"  SNR             {m['val/snr_db']:.2f} dB",
            f"  SI-SDR          {m['val/si_sdr_db']:.2f} dB",
            f"  mel distance    {m['val/mel_distance']:.3f}",
            f"  codebooks       perplexity {m['vq/perplexity']:.1f}, "
            f"{100 * m['vq/dead_fraction']:.0f}% codes unused",
            *loss_lines(m),
        ]
    )


def loss_lines(m: dict[str, float]) -> list[str]:
    """The epoch's mean training losses: each term trained on, with its weight where the metrics carry it
    (schedule/<field>; the adversarial terms are there only while the discriminators train, so only when
    on), the discriminators' objectives (disc/*) and the balancer's gradient norms; weight-0 terms, only
    logged, on one line."""
    if "loss/total" not in m:
        return []
    lines, logged = [f"  {'loss':<16}{m['loss/total']:.4g} in all"], []
    for term, field in LOSS_WEIGHTS.items():
        if f"loss/{term}" not in m:
            continue
        value, weight = m[f"loss/{term}"], m.get(f"schedule/{field}")
        if weight == 0:
            logged.append(f"{term} {value:.4g}")
        else:
            lines.append(f"  {term:<16}{value:.4g}" + ("" if weight is None else f" x {weight:g}"))
    lines += [f"  {k:<16}{v:.4g}" for k, v in m.items() if k.startswith("disc/")]
    if norms := [f"{k.removeprefix('balancer/')} {v:.3g}" for k, v in m.items() if k.startswith("balancer/")]:
        lines.append(f"  {'balancer norms':<16}{', '.join(norms)}")
    if logged:
        lines.append(f"  {'logged only':<16}{', '.join(logged)}")
    return lines


def perceptual(reference: np.ndarray, decoded: np.ndarray, rate: int) -> dict[str, float]:
    """PESQ (wideband at 16 kHz and above, narrowband below, resampled to the rate it is defined at) and
    STOI of decoded against reference, both (T,) float at `rate`. PESQ is NaN where it finds no speech."""
    pesq_rate = 16000 if rate >= 16000 else 8000
    x, y = reference, decoded
    if pesq_rate != rate:
        x, y = (AF.resample(torch.from_numpy(a), rate, pesq_rate).numpy() for a in (reference, decoded))
    try:
        quality = pesq(pesq_rate, x, y, "wb" if pesq_rate == 16000 else "nb")
    except Exception:  # the pesq package's own errors: no utterances, too short
        quality = math.nan
    return {"pesq": quality, "stoi": float(stoi(reference, decoded, rate, extended=False))}
