"""A codec scored on the whole validation set at the end of each epoch."""

from __future__ import annotations

import math

import numpy as np
import torch

from tune_codec.metrics import codebook_metrics, perceptual, signal_metrics
from tune_codec.names import BEST_METRICS, at_codebooks
from tune_codec.training.checkpoint import N_CLIPS


@torch.no_grad()
def validate(model, loss_fn, valid_x, config, device, autocast) -> tuple[dict, np.ndarray]:
    """Metrics over the whole validation set, and the first clips' outputs as numpy. A codec trained with
    quantizer dropout is also scored from each fewer number of codebooks (val/codebooks_K/...)."""
    model.eval()

    def decoded(n_codebooks=None) -> tuple[torch.Tensor, torch.Tensor]:
        outs, codes = [], []
        for i in range(0, len(valid_x), 2 * config.batch_size):
            x = valid_x[i : i + 2 * config.batch_size].to(device)[:, None]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                out = model(x, n_codebooks)
            outs.append(out.audio.float()[:, 0].cpu())
            codes.append(out.codes.cpu())
        return torch.cat(outs), torch.cat(codes)

    def heard(y: torch.Tensor) -> dict:  # the first segments, end to end: one clip, the same every epoch
        if not config.perceptual_segments:
            return {}
        n = config.perceptual_segments
        scores = perceptual(valid_x[:n].flatten().numpy(), y[:n].flatten().numpy(), config.sample_rate)
        # a PESQ that found no speech is left out, not reported as a non-finite metric (a fault)
        return {f"val/{k}": v for k, v in scores.items() if math.isfinite(v)}

    y, codes = decoded()
    mel = sum(
        loss_fn.mel(y[i : i + 64, None].to(device), valid_x[i : i + 64, None].to(device)).item()
        * len(y[i : i + 64])
        for i in range(0, len(y), 64)
    ) / len(y)
    metrics = {
        **signal_metrics(valid_x, y),
        "val/mel_distance": mel,
        **codebook_metrics(codes, config.codebook_size),
        **heard(y),
    }
    for n in range(1, config.n_codebooks) if config.quantizer_dropout else ():
        fewer, _ = decoded(n)
        scores = {k: v for k, v in signal_metrics(valid_x, fewer).items() if k in BEST_METRICS}
        metrics.update({at_codebooks(k, n): v for k, v in {**scores, **heard(fewer)}.items()})
    return metrics, y[:N_CLIPS].numpy()
