"""Use a trained codec: python -m tune_codec.codec encode CHECKPOINT in.wav out.codes
                    python -m tune_codec.codec decode CHECKPOINT in.codes out.wav

CHECKPOINT is a best.pt / last.pt file or an MLflow artifact URI (runs:/RUN_ID/checkpoint/best.pt, with
--tracking-uri). A .codes file is a numpy .npz: the codes (n_codebooks, frames), packed at log2(codebook
size) bits each, and a JSON header with the sample rate, hop, codebook size, the clip's length and a hash of
the model's weights, so decoding with another checkpoint is refused rather than turned into noise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import pickle
import re
import sys
import zipfile
from pathlib import Path

import mlflow.artifacts
import numpy as np
import soundfile as sf
import torch
from mlflow.exceptions import MlflowException
from torch import nn

from tune_codec.cli import flag
from tune_codec.config import Config
from tune_codec.data.corpus import decode as read_audio
from tune_codec.errors import DataError, UsageError
from tune_codec.tracking import URI_HELP, resolve_tracking_uri
from tune_codec.training.checkpoint import load_codec

FORMAT = "tune-codec codes 1"
CHUNK_SECONDS = 30  # encode and decode long files in pieces of this length: bounded memory


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="python -m tune_codec.codec", description="Encode audio to a trained codec's codes and back."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, src, dst in (
        (
            "encode",
            "audio file to encode (any format soundfile reads; resampled, mixed to mono)",
            "codes file",
        ),
        ("decode", "codes file written by encode", "wav file to write"),
    ):
        c = sub.add_parser(name, help=f"{src} -> {dst}")
        c.add_argument("checkpoint", help="best.pt / last.pt, or runs:/RUN_ID/checkpoint/best.pt")
        c.add_argument("input", type=Path, help=src)
        c.add_argument("output", type=Path, help=dst)
        c.add_argument(*flag("--tracking-uri"), help=f"for a runs:/ checkpoint: {URI_HELP}")
        if name == "encode":
            c.add_argument(
                *flag("--codebooks"),
                type=int,
                metavar="K",
                help="keep the first K codebooks: a lower bitrate, for a codec trained with quantizer "
                "dropout (default: all)",
            )
    return p.parse_args(argv)


def open_checkpoint(checkpoint: str, tracking_uri: str | None) -> tuple[nn.Module, Config]:
    """The codec in a checkpoint file, or in an MLflow artifact (downloaded first)."""
    path = Path(checkpoint)
    if re.match(r"[a-z][a-z0-9+.-]+:/", checkpoint):  # runs:/..., mlflow-artifacts:/..., s3://...
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one line of output
        try:
            path = Path(
                mlflow.artifacts.download_artifacts(
                    checkpoint, tracking_uri=resolve_tracking_uri(tracking_uri)
                )
            )
        except (MlflowException, OSError) as e:
            raise UsageError(f"checkpoint {checkpoint!r}: {str(e).splitlines()[0]}") from None
    if not path.is_file():
        raise UsageError(f"checkpoint {checkpoint!r} does not exist")
    try:
        return load_codec(path)
    except (pickle.UnpicklingError, RuntimeError, KeyError, EOFError):
        raise UsageError(f"checkpoint {checkpoint!r} is not a tune-codec best.pt or last.pt") from None


def model_hash(model: nn.Module) -> str:
    """Of every weight and buffer: codes are only meaningful to the very model that made them."""
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """(n, frames) ints below 2**bits -> bytes holding `bits` bits per code."""
    return np.packbits(((codes[..., None] >> np.arange(bits)) & 1).astype(np.uint8))


def unpack(packed: np.ndarray, bits: int, shape: tuple[int, int]) -> np.ndarray:
    flat = np.unpackbits(packed)[: math.prod(shape) * bits].reshape(*shape, bits).astype(np.int64)
    return (flat << np.arange(bits)).sum(-1)


def check_codebooks(config: Config, k: int) -> int:
    """k, if the codec can decode from its first k codebooks; a UsageError naming --codebooks if not."""
    if not 1 <= k <= config.n_codebooks:
        raise UsageError(f"--codebooks {k}: this codec has 1 to {config.n_codebooks} codebooks")
    return k


def describe(config: Config, codes: int, frames: int, samples: int) -> str:
    kbps = config.kbps_at(codes)
    return (
        f"{samples / config.sample_rate:.2f} s at {config.sample_rate} Hz, {codes} x {frames} codes; bitrate "
        f"{kbps:g} kbps ({16 * config.sample_rate / 1000 / kbps:g}x compression of 16-bit PCM)"
    )


@torch.no_grad()
def codes_of(model: nn.Module, config: Config, audio: np.ndarray) -> torch.Tensor:
    """(T,) audio at the codec's rate -> (n_codebooks, frames) codes, in pieces of bounded memory."""
    frames = math.ceil(len(audio) / config.hop)
    x = torch.zeros(1, 1, frames * config.hop)  # padded to whole frames
    x[0, 0, : len(audio)] = torch.from_numpy(audio)
    chunk = CHUNK_SECONDS * config.sample_rate // config.hop * config.hop
    return torch.cat([model.encode(x[..., i : i + chunk]) for i in range(0, x.shape[-1], chunk)], -1)[0]


@torch.no_grad()
def audio_of(model: nn.Module, config: Config, codes: torch.Tensor, samples: int) -> np.ndarray:
    """(K, frames) codes of the first K codebooks -> the first `samples` samples decoded, (T,)."""
    chunk = CHUNK_SECONDS * config.sample_rate // config.hop
    frames = codes.shape[-1]
    y = torch.cat([model.decode(codes[None, :, i : i + chunk]) for i in range(0, frames, chunk)], -1)
    return y[0, 0, :samples].numpy()


@torch.no_grad()
def encode(model: nn.Module, config: Config, source: Path, target: Path, codebooks: int | None = None) -> str:
    """source audio -> target codes file (of the first `codebooks` codebooks, all by default); returns what
    was done, for the console."""
    codebooks = check_codebooks(config, codebooks or config.n_codebooks)
    try:
        audio = read_audio(source, config.sample_rate)  # (T,) mono at the codec's rate
    except DataError as e:
        raise DataError(f"{str(source)!r}: {e}") from None
    info = sf.info(str(source))
    samples = len(audio)
    codes = codes_of(model, config, audio)[:codebooks]
    frames = codes.shape[-1]
    header = {
        "format": FORMAT,
        "model": model_hash(model),
        "sample_rate": config.sample_rate,
        "hop": config.hop,
        "n_codebooks": codebooks,
        "codebook_size": config.codebook_size,
        "samples": samples,
        "frames": frames,
    }
    with open(target, "wb") as f:  # np.savez would append .npz to the name
        np.savez(f, codes=pack(codes.numpy(), config.bits_per_code), header=json.dumps(header))
    size = target.stat().st_size
    return (
        f"encoded {source} ({info.samplerate} Hz, {info.channels}-channel) -> {target}: "
        f"{describe(config, codebooks, frames, samples)}; {size} bytes, "
        f"{8 * size / (samples / config.sample_rate) / 1000:.1f} kbps with the file's header"
    )


@torch.no_grad()
def decode(model: nn.Module, config: Config, source: Path, target: Path) -> str:
    """source codes file -> target wav at the codec's sample rate."""
    try:
        with np.load(source) as z:
            header, packed = json.loads(str(z["header"])), z["codes"]
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        raise UsageError(f"{str(source)!r} is not a codes file written by `encode`") from None
    if header.get("format") != FORMAT:
        raise UsageError(f"{str(source)!r}: format {header.get('format')!r}, expected {FORMAT!r}")
    if header["model"] != model_hash(model):
        raise UsageError(
            f"{str(source)!r} was encoded by model {header['model']}, not by this checkpoint "
            f"(model {model_hash(model)}, {config.describe()}): decode it with the checkpoint that encoded it"
        )
    frames, codebooks = header["frames"], header["n_codebooks"]
    codes = torch.from_numpy(unpack(packed, config.bits_per_code, (codebooks, frames)))
    audio = audio_of(model, config, codes, header["samples"])
    sf.write(target, np.clip(audio, -1, 1), config.sample_rate, subtype="PCM_16")
    return f"decoded {source} -> {target}: {describe(config, codebooks, frames, header['samples'])}"


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not args.output.parent.is_dir():
            raise UsageError(f"output folder {str(args.output.parent)!r} does not exist")
        model, config = open_checkpoint(args.checkpoint, args.tracking_uri)
        if args.command == "encode":
            print(encode(model, config, args.input, args.output, args.codebooks))
        else:
            print(decode(model, config, args.input, args.output))
    except (UsageError, OSError) as e:  # a bug keeps its traceback
        print(f"tune_codec.codec: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
