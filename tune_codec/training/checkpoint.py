"""What a training run leaves on disk: last.pt, best.pt and the samples, written atomically."""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from tune_codec.codec.build import build_codec
from tune_codec.codec.discriminators import Discriminators
from tune_codec.config import Config, make_config
from tune_codec.errors import UsageError
from tune_codec.files import atomic_write
from tune_codec.names import LAST

N_CLIPS = 3  # validation clips written with each checkpoint


def save(obj, path: Path) -> None:
    """torch.save, atomically."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def load_state(checkpoint_dir: Path) -> dict:
    """last.pt's training state; a UsageError naming the file if it is not a whole checkpoint."""
    path = Path(checkpoint_dir) / LAST
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise UsageError(f"{str(path)!r} is incomplete or corrupt ({str(e).splitlines()[0]})") from None


def load_codec(path: Path, device: torch.device | None = None) -> tuple[torch.nn.Module, Config]:
    """A trained codec from best.pt or last.pt, in eval mode."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    config = make_config(state["config"])
    model = build_codec(config)
    model.load_state_dict(state["model"])
    return model.to(device or "cpu").eval(), config


def checkpoint_bytes(config: Config) -> int:
    """About what one trial's checkpoint holds: last.pt (weights and AdamW's two moments, the
    discriminators' too), best.pt (weights), the clips (input and output, 16-bit) and the figures."""
    with torch.device("meta"):  # counts the parameters without allocating them
        params = sum(p.numel() for p in build_codec(config).parameters())
        critics = sum(p.numel() for p in Discriminators(config).parameters()) if config.adversarial else 0
    clips = N_CLIPS * 2 * config.segment_samples * 2 + 2**17
    return params * 4 * 4 + critics * 4 * 3 + clips
