"""The codec a config names, built: every caller (training, checkpoints, the codes command) asks here.

A user's codec (model: package.module:factory) is factory(config) -> an nn.Module that keeps the
interface the built-in ones keep (README "Your own codec"), checked here before it is trained:
    forward(x, n_codebooks=None) -> .audio (B, 1, T), .codes (B, n_codebooks, T // hop) integers,
                                    .commit_loss a scalar tensor (CodecOutput is one such result)
    encode(x) -> codes;  decode(codes) -> (B, 1, T)"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from tune_codec.codec.freq import FreqCodec
from tune_codec.codec.model import Codec
from tune_codec.config import Config, codec_factory
from tune_codec.errors import ConfigError

BUILT_IN = {"seanet": Codec, "freq": FreqCodec}


def build_codec(config: Config) -> nn.Module:
    """The codec of config: (B, 1, T) -> CodecOutput, with encode(x) -> codes and decode(codes) -> audio."""
    if config.model in BUILT_IN:
        return BUILT_IN[config.model](config)
    model = codec_factory(config.model)(config)
    check_interface(model, config)
    return model


def check_interface(model, config: Config) -> None:
    """A ConfigError naming the first part of the codec interface that `model` lacks: its methods, then
    (unless built on the meta device, which holds no values) what one forward pass at the segment length
    returns."""

    def broken(what: str) -> ConfigError:
        return ConfigError(f"model={config.model!r} does not follow the codec interface: {what}")

    if not isinstance(model, nn.Module):
        raise broken(f"the factory returned a {type(model).__name__}, not a torch.nn.Module")
    for method in ("encode", "decode"):
        if not callable(getattr(model, method, None)):
            raise broken(f"it has no {method}() method")
    if "n_codebooks" not in inspect.signature(model.forward).parameters:
        raise broken("forward(x, n_codebooks=None) takes no n_codebooks")
    if not any(True for _ in model.parameters()):
        raise broken("it has no parameters to train")
    if any(p.is_meta for p in model.parameters()):
        return
    x = torch.zeros(2, 1, config.segment_samples)
    frames = (2, config.n_codebooks, config.segment_samples // config.hop)
    was_training = model.training
    with torch.no_grad():
        out = model.eval()(x)
        model.train(was_training)
    for field in ("audio", "codes", "commit_loss"):
        if not isinstance(getattr(out, field, None), torch.Tensor):
            raise broken(f"forward() returned no tensor .{field} (return a CodecOutput)")
    if out.audio.shape != x.shape:
        raise broken(f"forward() turned audio of shape {tuple(x.shape)} into {tuple(out.audio.shape)}")
    if out.codes.shape != frames or out.codes.is_floating_point():
        raise broken(
            f"forward() gave codes {out.codes.dtype} {tuple(out.codes.shape)}; wanted integers of shape "
            f"(batch, n_codebooks, samples // hop) = {frames}"
        )
    if out.commit_loss.dim() != 0:
        raise broken(f"forward() gave a commit_loss of shape {tuple(out.commit_loss.shape)}, not a scalar")
